package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

var (
	// tokendBin is the tokend binary built once by TestMain.
	tokendBin string
	// tokendBuildErr is why the build failed; tests that need the binary
	// fail with it (the harness self-tests still run).
	tokendBuildErr error
	// oidcDir is the Node project holding server.mjs.
	oidcDir string
	// nodeErr says why oidc-provider cannot run here, if it cannot.
	nodeErr error
)

func TestMain(m *testing.M) {
	oidcDir, _ = filepath.Abs("oidc")
	nodeErr = checkNode()
	// The race detector watches the daemon under real traffic too; the
	// tests fail on its reports. E2E_RACE=0 builds without it.
	os.Exit(testutil.MainWithTokend(m, "e2e", os.Getenv("E2E_RACE") != "0", &tokendBin, &tokendBuildErr))
}

func checkNode() error {
	const hint = "run `make test` or scripts/test-deps (npm ci --prefix e2e/oidc) first"
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("e2e: node is not installed (Node.js >= 20.19 runs oidc-provider): %w", err)
	}
	if _, err := os.Stat(filepath.Join(oidcDir, "node_modules", "oidc-provider", "package.json")); err != nil {
		return fmt.Errorf("e2e: oidc-provider is not installed in e2e/oidc/node_modules: %s", hint)
	}
	return nil
}

// requireNode fails the test when oidc-provider cannot run: the e2e tests are
// part of `make test` and CI, so a missing dependency must be seen.
func requireNode(t testing.TB) {
	t.Helper()
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
}

// requireTokend fails the test when the tokend binary did not build.
func requireTokend(t testing.TB) {
	t.Helper()
	requireNode(t)
	if tokendBuildErr != nil {
		t.Fatal(tokendBuildErr)
	}
}

// exitCode returns a finished command's exit code, -1 when killed by a signal.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// eventually is testutil.Eventually: real-time waits on processes.
var eventually = testutil.Eventually
