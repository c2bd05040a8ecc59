package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// self is this package's import path.
const self = "github.com/tokend/tokend/internal/testutil"

// TestOnlyTestsImport: no package of the module but testutil's own
// packages (oidcop) and their tests depends on testutil or oidcop. `go list` reports the dependencies of the packages
// without their tests.
func TestOnlyTestsImport(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Deps " "}}`, "github.com/tokend/tokend/...").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	seen := false
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == self {
			seen = true
		}
		if fields[0] == self || strings.HasPrefix(fields[0], self+"/") {
			continue
		}
		for _, dep := range fields[1:] {
			if dep == self || strings.HasPrefix(dep, self+"/") {
				t.Errorf("%s, which is not a test, depends on %s", fields[0], self)
			}
		}
	}
	if !seen {
		t.Fatalf("go list does not list %s: is self still its import path?\n%s", self, out)
	}
}
