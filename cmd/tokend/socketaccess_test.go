package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// TestChildCLI is not a test: it is the tokend client run as another
// user by runCLIAs, its arguments in TOKEND_CHILD_ARGS (separated by newlines).
func TestChildCLI(t *testing.T) {
	args := os.Getenv("TOKEND_CHILD_ARGS")
	if args == "" {
		t.Skip("run by runCLIAs only")
	}
	c := newCLI()
	var stderr bytes.Buffer
	c.stderr = &stderr
	code := c.run(context.Background(), strings.Split(args, "\n"))
	fmt.Printf("exit=%d\n%s", code, stderr.String())
	os.Exit(0)
}

// runCLIAs runs `tokend ARGS...` as uid (a copy of the test binary in a
// directory every user may enter) and returns its exit code and stderr.
func runCLIAs(t *testing.T, uid uint32, args ...string) (int, string) {
	t.Helper()
	bin, err := testutil.CopySelf(testutil.SharedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestChildCLI$")
	cmd.Dir = "/"
	cmd.Env = []string{"TOKEND_CHILD_ARGS=" + strings.Join(args, "\n"), "PATH=/usr/bin:/bin"}
	testutil.AsUser(cmd, uid)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var code int
	first, rest, _ := strings.Cut(string(out), "\n")
	if _, err := fmt.Sscanf(first, "exit=%d", &code); err != nil {
		t.Fatalf("child output %q", out)
	}
	return code, rest
}

// A socket another user cannot reach exits 4 (permission denied), as a
// 403 does, and the message names the real cause: a directory closed to
// the caller, or the socket's group.
func TestSocketPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the client as another user")
	}
	const nobody = 65534
	listen := func(t *testing.T, dirMode, sockMode os.FileMode) (dir, sock string) {
		dir = testutil.ShortDir(t)
		sock = filepath.Join(dir, "tokend.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		os.Chmod(sock, sockMode)
		os.Chmod(dir, dirMode)
		return dir, sock
	}

	t.Run("directory closed", func(t *testing.T) {
		dir, sock := listen(t, 0o700, 0o666)
		code, stderr := runCLIAs(t, nobody, "status", "--socket", sock)
		if code != exitForbidden {
			t.Errorf("exit %d, want %d; stderr %q", code, exitForbidden, stderr)
		}
		if !strings.Contains(stderr, "you may not enter the directory "+dir+" (mode 0700, owner root") {
			t.Errorf("stderr %q does not blame the directory", stderr)
		}
	})
	t.Run("socket group", func(t *testing.T) {
		_, sock := listen(t, 0o755, 0o660)
		code, stderr := runCLIAs(t, nobody, "token", "demo", "--socket", sock)
		if code != exitForbidden {
			t.Errorf("exit %d, want %d; stderr %q", code, exitForbidden, stderr)
		}
		if !strings.Contains(stderr, "add you to group root (listen.socket_group)") || strings.Contains(stderr, "directory") {
			t.Errorf("stderr %q does not blame the socket's group", stderr)
		}
	})
}
