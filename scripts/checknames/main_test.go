package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// plant writes files (slash-separated name -> content) under a new
// directory and returns it with the names.
func plant(t *testing.T, files map[string]string) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	var names []string
	for name, text := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return dir, names
}

func problems(t *testing.T, files map[string]string) []string {
	t.Helper()
	dir, names := plant(t, files)
	ps, err := Check(dir, names)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func TestRefusesIssueNumbers(t *testing.T) {
	got := problems(t, map[string]string{
		"a.go": "package a\n\n// issue 12\nfunc f() {}\n",
		"b.go": "package a\n\n// Sticky does not help (see\n// issue\n// 10).\n" +
			"func Setup0() {}\n\nfunc TestHarness14DPoP() {}\n\ntype Introspection14 struct{}\n\n" +
			"const grants14Base = \"\"\n\nvar (\n\tx = 1\n\tTestDiscoveryOfIssue3 = 2\n)\n\n/* Finding #4: a block comment. */\n",
		"config/grants14.go":    "package config\n",
		"daemon/issue2_test.go": "package daemon\n",
		"Makefile":              "lint:\n\t# review 3\n\ttrue\n",
		"x.yaml":                "a: 1 # findings 4, 8 and 11\n",
		"scripts/run":           "#!/bin/sh\n# issue-7\n",
	})
	want := []string{
		"Makefile:2:", "a.go:3:", "b.go:4:", "b.go:6:", "b.go:8:", "b.go:10:", "b.go:12:", "b.go:16:", "b.go:19:",
		"config/grants14.go: file name", "daemon/issue2_test.go: file name", "scripts/run:2:", "x.yaml:1:",
	}
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("nothing reported at %s; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
}

func TestAllowsRealNames(t *testing.T) {
	got := problems(t, map[string]string{
		"oauth2.go":      "package a\n\n// A provider issues 30-second tokens; RFC 8414 §3, issued 5 minutes ago.\n",
		"sha256.go":      "package a\n\nfunc TestKill9Torture() {}\nfunc TestDPoPNonce401() {}\nfunc fromXOAuth2() {}\nvar t0, k1 = 0, 1\n",
		"x509_test.go":   "package a\n\nfunc b2f() {}\nfunc isB64token() {}\nfunc parseUint64() {}\ntype APIV2 struct{}\nfunc BenchmarkStartup100k() {}\n",
		"e2e/ed25519.go": "package e2e\n\nfunc f() { tok2 := 1; _ = tok2 }\n",
		"utf8.sh":        "# utf8 and int64 and base64 are words\n",
		"README.md":      "issue 12 is prose in Markdown and not checked\n",
	})
	if len(got) != 0 {
		t.Errorf("refused:\n%s", strings.Join(got, "\n"))
	}
}

// TestMain runs the command instead of the tests when asked to (see
// TestCommand).
func TestMain(m *testing.M) {
	if os.Getenv("CHECKNAMES_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run runs the command on dir and returns its exit code and output.
func run(t *testing.T, dir string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], dir)
	cmd.Env = append(os.Environ(), "CHECKNAMES_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestCommand: the command fails, naming file and line, on a comment that
// names an issue by number in a tracked file, and passes once it is gone.
func TestCommand(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	dir, _ := plant(t, map[string]string{"a/a.go": "package a\n\n// issue 12\nfunc f() {}\n"})
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	code, out := run(t, dir)
	if code != 1 || !strings.Contains(out, "a/a.go:3: \"issue 12\"") {
		t.Fatalf("planted comment: exit %d, output:\n%s", code, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "a.go"), []byte("package a\n\n// f does nothing.\nfunc f() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, dir); code != 0 || out != "" {
		t.Fatalf("clean tree: exit %d, output:\n%s", code, out)
	}
}

// TestTree: this repository passes.
func TestTree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := run(t, root); code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}
