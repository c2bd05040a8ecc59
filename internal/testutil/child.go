package testutil

import (
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// AcceptChild starts cmd, a client that connects to ln, writes the byte
// 'c' and holds the connection until its stdin closes: a copy of the test
// binary playing a client, often as another user (see CopySelf and
// AsUser). It returns the listener's end of the connection once the 'c'
// arrived, and the child's stdin; both are closed, and the child waited
// for, when the test ends. The child's stderr is the test's unless cmd
// sets one.
func AcceptChild(t testing.TB, cmd *exec.Cmd, ln net.Listener) (net.Conn, io.WriteCloser) {
	t.Helper()
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ExpectByte(t, c, 'c')
	return c, stdin
}

// ExpectByte reads one byte from c, waiting 20 s at most, and fails the
// test unless it is b: how a child process says it got somewhere.
func ExpectByte(t testing.TB, c net.Conn, b byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got [1]byte
	if _, err := io.ReadFull(c, got[:]); err != nil || got[0] != b {
		t.Fatalf("child: want %q, got %q (%v)", b, got[0], err)
	}
	_ = c.SetReadDeadline(time.Time{})
}
