// Package testutil holds what several test packages need and used to copy:
// a buffer a child process writes while the test reads it ([SyncBuffer]), a
// child process killed when the test ends ([StartProc]) and a tokend one
// waited for until it serves ([WaitTokend]) or, its output in a log file,
// until it is ready ([ServeTokendLogged]), its configuration file
// ([TokendConfig]), building the tokend binary in TestMain
// ([BuildTokend]), a free loopback port ([FreePort], [LowPort] below the
// ephemeral range), a short directory for unix sockets
// ([ShortDir]), an HTTP handler served on one ([ServeUnix]) and a client of
// one ([UnixHTTPClient]), and what running a process as another user takes:
// a directory that user may enter ([SharedDir]), a copy of the test binary
// they may run ([CopySelf]) and their credentials ([AsUser]), such a
// child's connection accepted ([AcceptChild]), and waiting on real time for
// a process to reach a condition ([Eventually]), the size knobs of long
// runs read from the environment ([EnvInt]), counters for fake metrics
// ([Counts]), signing keys ([ECKey], [Ed25519Key], [RSAKey]) and JWTs
// signed by hand as assertions and proofs ([SignJWT]), and a person's
// browser reduced to cookies, redirects and self-submitting forms
// ([Browser]) and the redirect of tokend's start page
// ([StartPageRedirect]). Its package oidcop runs oidc-provider, the
// end-to-end tests' authorization server.
//
// Only tests import it: TestOnlyTestsImport fails when a package that is
// not a test depends on it.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SyncBuffer collects a child process's output (or a logger's) while the
// test reads it; safe for concurrent use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process could take it before the caller binds it; on a test machine that
// is rare enough.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tokendPkg is what BuildTokend builds.
const tokendPkg = "github.com/tokend/tokend/cmd/tokend"

// BuildTokend builds cmd/tokend, with the race detector when race is set,
// into a new temporary directory and returns the binary's path and a
// function that removes the directory (never nil, also after an error).
// It is meant for TestMain, which
// has no testing.TB: the caller decides whether a failed build ends the
// run or fails the tests that need the binary.
//
// The directory has mode 0755, so that tests may run the binary (and
// whatever else they put beside it) as other users.
func BuildTokend(race bool) (bin string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "tokend-test-bin-")
	if err != nil {
		return "", func() {}, err
	}
	remove = func() { os.RemoveAll(dir) }
	// MkdirTemp makes 0700.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", remove, err
	}
	bin = filepath.Join(dir, "tokend")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, tokendPkg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err != nil {
		return "", remove, fmt.Errorf("go build %s: %w\n%s", tokendPkg, err, out)
	}
	return bin, remove, nil
}

// SharedDir returns a new temporary directory that every user may enter
// (0755), removed when the test ends. The directories of t.TempDir sit in
// one only the test's own user may enter.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tokend-test-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// StickyDir returns a new 1777 directory, as /tmp, inside a SharedDir, so
// that another user (uid 65534, see AsNobody) can create files in it. It
// skips the test unless it runs as root, who alone can play another user.
func StickyDir(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to play another user")
	}
	dir := filepath.Join(SharedDir(t), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	return dir
}

// AsNobody runs the shell script (sh -e) as uid 65534 in dir, failing the
// test if it fails.
func AsNobody(t testing.TB, dir, script string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-ec", script)
	cmd.Dir = dir
	AsUser(cmd, 65534)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
}

// CopySelf copies the running test binary into dir, mode 0755, and returns
// the copy's path. The go tool builds test binaries in a directory only
// its user may enter; a test that runs itself as another user (a child
// playing a part) runs the copy, from a directory such as SharedDir's.
func CopySelf(dir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(self))
	if err := os.WriteFile(path, b, 0o755); err != nil {
		return "", err
	}
	// Explicitly: the umask (077 once a test ran tokend serve or dev in
	// process) takes the others' bits off the file's mode.
	return path, os.Chmod(path, 0o755)
}

// AsUser makes cmd run as uid, with gid uid and exactly the supplementary
// groups given (none when there are none). Only root may start it so.
func AsUser(cmd *exec.Cmd, uid uint32, groups ...uint32) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: groups}}
}

// MainWithTokend is a TestMain that builds tokend once (with the race
// detector when race is set), stores its path in *bin, runs the tests and
// removes the build. If the build fails and buildErr is not nil, the error
// (prefixed with pkg) goes there and the tests run, each failing with it;
// with a nil buildErr the run ends at once with exit status 2. It returns
// the exit status for os.Exit.
func MainWithTokend(m *testing.M, pkg string, race bool, bin *string, buildErr *error) int {
	b, remove, err := BuildTokend(race)
	defer remove()
	if err != nil {
		err = fmt.Errorf("%s: %w", pkg, err)
		if buildErr == nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		*buildErr = err
	}
	*bin = b
	return m.Run()
}

// Eventually calls f every interval until it returns nil or timeout passes,
// then fails the test with f's last error. It waits on real time: the
// processes under test run on their own clocks.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, f func() error) {
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

// EnvInt reads a positive integer from the environment variable name, or
// returns def when it is unset: long soaks and torture runs default to a
// short form and take their long form from the environment. Anything else
// fails the test, so that a mistyped value is not silently the default.
func EnvInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("$%s=%q: want a positive integer", name, v)
	}
	return n
}

// LowPort returns a loopback TCP port below the ephemeral range
// (32768-60999) that was free a moment ago, for a process that binds it
// later: ports of the ephemeral range are handed to outgoing connections,
// which on a busy machine took a port checked free (FreePort) before the
// process meant for it bound it.
func LowPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free loopback port between 20000 and 32000")
	return 0
}

// ShortDir returns a new directory with a short path, removed when the
// test ends: a unix socket's path is at most 107 bytes, and t.TempDir's
// (named after the test) can be longer.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// ServeUnix serves h on a unix socket in a ShortDir until the test ends
// and returns the socket's path.
func ServeUnix(t testing.TB, h http.Handler) string {
	t.Helper()
	path := filepath.Join(ShortDir(t), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return path
}

// UnixHTTPClient returns an HTTP client that sends every request, whatever
// its host, to the unix socket at path; timeout 0 is none.
func UnixHTTPClient(path string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}
