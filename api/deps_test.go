package api

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOnlyTheStandardLibrary: a program that only wants a token
// imports api alone, and gets neither the daemon's packages nor their
// dependencies (bbolt, x/oauth2, Prometheus) with it.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", ".").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	const self = "github.com/tokend/tokend/api"
	forbidden := []string{"go.etcd.io/bbolt", "golang.org/x/oauth2", "github.com/prometheus/client_golang", "github.com/tokend/tokend/"}
	seen := false
	for line := range strings.Lines(string(out)) {
		path, std, _ := strings.Cut(strings.TrimSpace(line), " ")
		if path == self {
			seen = true
			continue
		}
		for _, f := range forbidden {
			if path == strings.TrimSuffix(f, "/") || strings.HasPrefix(path, strings.TrimSuffix(f, "/")+"/") {
				t.Errorf("api depends on %s", path)
			}
		}
		if std != "true" {
			t.Errorf("api depends on %s, which is not in the standard library", path)
		}
	}
	if !seen {
		t.Fatalf("go list -deps does not list %s:\n%s", self, out)
	}
}
