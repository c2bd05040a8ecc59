package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

var (
	// tokendBin is the tokend binary built once by TestMain.
	tokendBin string
	// tokendBuildErr is why the build failed; tests that need the binary
	// fail with it (the harness self-tests still run).
	tokendBuildErr error
	// nodeErr says why oidc-provider cannot run here, if it cannot.
	nodeErr error
)

func TestMain(m *testing.M) {
	if err := oidcop.Check(""); err != nil {
		nodeErr = fmt.Errorf("e2e: %w", err)
	}
	// The race detector watches the daemon under real traffic too; the
	// tests fail on its reports. E2E_RACE=0 builds without it.
	os.Exit(testutil.MainWithTokend(m, "e2e", os.Getenv("E2E_RACE") != "0", &tokendBin, &tokendBuildErr))
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
