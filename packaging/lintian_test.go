package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Lintian, Debian's package checker, finds no error and no warning in the
// package `make deb` builds; what it reports below that (info, pedantic,
// the tags packaging/lintian-overrides overrides with their reason) is
// logged. About 10 s on a warm build cache: the build, then lintian on the
// one .deb.
//
// Until the binary has its `man` command, run it with a stand-in page:
// MANPAGE_CMD='printf ".TH TOKEND 1\n"' go test -run TestLintian ./packaging/
func TestLintian(t *testing.T) {
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Fatal("lintian not found (Debian's lintian package; scripts/test-deps installs it)")
	}
	dir := t.TempDir()
	deb := makeDeb(t, dir)

	out, err := exec.Command("lintian", "--display-info", "--pedantic", "--show-overrides", deb).CombinedOutput()
	t.Logf("lintian %s:\n%s", filepath.Base(deb), out)
	var bad []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			bad = append(bad, l)
		}
	}
	if len(bad) > 0 {
		t.Errorf("lintian reports errors or warnings:\n%s", strings.Join(bad, "\n"))
	}
	if err != nil && len(bad) == 0 {
		t.Errorf("lintian: %v", err)
	}

	// What lintian does not require but the package promises: the man
	// page, the examples, and the reasons of its overrides.
	list, err := exec.Command("dpkg-deb", "--contents", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v\n%s", err, list)
	}
	want := []string{
		"./usr/share/man/man1/tokend.1.gz",
		"./usr/share/doc/tokend/copyright",
		"./usr/share/doc/tokend/changelog.gz",
		"./usr/share/lintian/overrides/tokend",
		"./usr/share/doc/tokend/examples/reference.yaml",
	}
	examples, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples/*.yaml: %v", err)
	}
	for _, e := range examples {
		want = append(want, "./usr/share/doc/tokend/examples/"+filepath.Base(e))
	}
	for _, w := range want {
		if !strings.Contains(string(list), " "+w+"\n") {
			t.Errorf("the package does not ship %s", w)
		}
	}
}

// Every override in packaging/lintian-overrides comes after a comment
// giving its reason.
func TestLintianOverridesExplained(t *testing.T) {
	b, err := os.ReadFile("lintian-overrides")
	if err != nil {
		t.Fatal(err)
	}
	comment := false
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			comment = true
		case strings.TrimSpace(l) == "":
			comment = false
		default:
			if !comment {
				t.Errorf("lintian-overrides:%d: %q has no comment giving its reason", i+1, l)
			}
		}
	}
}

// makeDeb runs `make deb` into dir and returns the package's path.
func makeDeb(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("make", "-s", "-C", "..", "deb", "DEBDIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "tokend_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("make deb wrote %d packages in %s, want 1", len(debs), dir)
	}
	return debs[0]
}
