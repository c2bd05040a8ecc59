package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The package version `make deb` gives a tree (packaging/debversion, as
// the Makefile calls it) increases with every commit and every tag,
// whatever the commit hashes: each version sorts after the one before by
// dpkg's rules.
func TestDebVersionIncreases(t *testing.T) {
	for _, tool := range []string{"git", "dpkg"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found", tool)
		}
	}
	makefile, err := filepath.Abs("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile("debversion")
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := os.MkdirAll(filepath.Join(repo, "packaging"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "packaging", "debversion"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	git := func(date string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(),
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
			"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date,
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// version is what the Makefile's DEBVERSION is in the repository.
	version := func() string {
		t.Helper()
		out, err := exec.Command("make", "-s", "-C", repo, "-f", makefile,
			"--eval", "print-debversion: ; @echo '$(DEBVERSION)'", "print-debversion").CombinedOutput()
		if err != nil {
			t.Fatalf("make: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	n := 0
	commit := func(date string) string {
		n++
		if err := os.WriteFile(filepath.Join(repo, "file"), []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
		git(date, "add", "file")
		git(date, "commit", "-q", "-m", "change")
		return git(date, "rev-parse", "--short=12", "HEAD")
	}
	git("2026-01-01T00:00:00Z", "init", "-q", "-b", "main")

	var got []string
	step := func(want string) {
		t.Helper()
		v := version()
		if !regexp.MustCompile(`^` + want + `$`).MatchString(v) {
			t.Fatalf("version %q, want %q", v, want)
		}
		got = append(got, v)
	}
	// Untagged commits: the commit date orders them, not the hash.
	sha := commit("2026-01-02T01:04:05Z")
	step(regexp.QuoteMeta("0.0.0~git20260102010405." + sha))
	for s := 6; s <= 8; s++ {
		// An offset: the date is taken in UTC.
		sha = commit(fmt.Sprintf("2026-01-02T03:04:%02d+02:00", s))
		step(regexp.QuoteMeta(fmt.Sprintf("0.0.0~git202601020104%02d.%s", s, sha)))
	}
	// Uncommitted changes sort after their commit.
	if err := os.WriteFile(filepath.Join(repo, "file"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	step(regexp.QuoteMeta("0.0.0~git20260102010408."+sha) + `\.dirty`)
	git("2026-01-02T03:05:00Z", "checkout", "-q", "file")
	// A release, then commits after it, a pre-release, the next release.
	git("2026-01-03T00:00:00Z", "tag", "v0.1.0")
	step(`0\.1\.0`)
	sha = commit("2026-01-04T00:00:00Z")
	step(regexp.QuoteMeta("0.1.0+git20260104000000." + sha))
	commit("2026-01-05T00:00:00Z")
	git("2026-01-05T00:00:00Z", "tag", "v0.2.0-rc1")
	step(`0\.2\.0~rc1`)
	commit("2026-01-06T00:00:00Z")
	step(`0\.2\.0~rc1\+git20260106000000\.[0-9a-f]{12}`)
	git("2026-01-06T00:00:00Z", "tag", "v0.2.0")
	step(`0\.2\.0`)

	for i := 1; i < len(got); i++ {
		if err := exec.Command("dpkg", "--compare-versions", got[i], "gt", got[i-1]).Run(); err != nil {
			t.Errorf("version %s does not sort after %s", got[i], got[i-1])
		}
	}
	t.Logf("versions: %s", strings.Join(got, " < "))
}
