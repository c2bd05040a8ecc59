package oidcop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirHoldsServer: Dir finds server.mjs from a package directory two
// levels below the module root, as it does from e2e/fleet and e2e/mcp.
func TestDirHoldsServer(t *testing.T) {
	d, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "server.mjs")); err != nil {
		t.Fatalf("Dir() = %s: %v", d, err)
	}
}

// TestCheckNamesMissingNode: without node the reason says what to install.
func TestCheckNamesMissingNode(t *testing.T) {
	err := Check(filepath.Join(t.TempDir(), "no-node"))
	if err == nil || !strings.Contains(err.Error(), "node is not installed") {
		t.Fatalf("Check(missing node) = %v, want node is not installed", err)
	}
}
