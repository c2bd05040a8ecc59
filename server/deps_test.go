package server

import (
	"os/exec"
	"strings"
	"testing"
)

// The servers know neither the store (bbolt, etcd) nor the engine's
// package: they reach the engine through the Engine and TokenSource
// interfaces they declare.
func TestDoesNotImportStoreOrEngine(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, f := range []string{"go.etcd.io/bbolt", "go.etcd.io/etcd", "github.com/tokend/tokend/daemon", "github.com/tokend/tokend/store"} {
		for line := range strings.Lines(string(out)) {
			if p := strings.TrimSpace(line); p == f || strings.HasPrefix(p, f+"/") {
				t.Errorf("server depends on %s", p)
			}
		}
	}
}
