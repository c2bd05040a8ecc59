package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	tmp, err := os.MkdirTemp("", "tokend-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	oidcDir, _ = filepath.Abs("oidc")
	nodeErr = checkNode()
	tokendBin = filepath.Join(tmp, "tokend")
	tokendBuildErr = buildTokend(tokendBin)
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
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

func buildTokend(out string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out}
	// The race detector watches the daemon under real traffic too; the
	// tests fail on its reports. E2E_RACE=0 builds without it.
	if os.Getenv("E2E_RACE") != "0" {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/tokend")
	cmd := exec.CommandContext(ctx, "go", args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("e2e: go build ./cmd/tokend: %w\n%s", err, b)
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

// freePort returns a loopback TCP port that was free a moment ago. Another
// process could take it before the caller binds it; on a test machine that
// is rare enough.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually calls f every interval until it returns nil or timeout passes,
// then fails the test with f's last error. It waits on real time: the
// processes under test run on their own clocks.
func eventually(t testing.TB, timeout, interval time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// syncBuffer collects a child process's output; safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
