package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// childEnv makes the test binary a client playing another user instead of
// running tests: "dial NET ADDR" connects, writes "c" and holds the
// connection until stdin closes; "identify NET ADDR" listens and prints
// the uid found for the first connection; "get NET ADDR" sends one GET
// through a proxy and prints the answer's status and body.
const childEnv = "TOKEND_SERVER_TEST_CHILD"

func init() {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(strings.Fields(v)))
	}
}

func child(args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "child: want MODE NET ADDR")
		return 2
	}
	mode, network, addr := args[0], args[1], args[2]
	switch mode {
	case "dial":
		c, err := net.Dial(network, addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		_, _ = io.WriteString(c, "c")
		_, _ = io.Copy(io.Discard, os.Stdin)
		c.Close()
		return 0
	case "identify":
		// Listens, prints its address, and prints the uid found for the
		// first connection: sock_diag asked by a user who is not root.
		ln, err := net.Listen(network, addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println(ln.Addr().String())
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		caller, err := Identify(c)
		if err != nil {
			fmt.Println("error:", err)
			return 0
		}
		fmt.Println(caller.UID)
		return 0
	case "get":
		var d net.Dialer
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, network, addr) }
		hc := &http.Client{Transport: &http.Transport{DialContext: dial}}
		resp, err := hc.Get("http://proxy/")
		if err != nil {
			fmt.Println("error:", err)
			return 0
		}
		b, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s", resp.StatusCode, b)
		return 0
	}
	return 2
}

// childBin returns a copy of the test binary that other users may run,
// skipping the test unless it runs as root, who alone can start them.
func childBin(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to play another user")
	}
	bin, err := testutil.CopySelf(testutil.SharedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// dialAs connects to ln as uid from a child process and returns the
// server's end of that connection; the child holds its end until the test
// ends.
func dialAs(t *testing.T, bin string, uid uint32, ln net.Listener) net.Conn {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{childEnv + "=dial " + ln.Addr().Network() + " " + ln.Addr().String()}
	testutil.AsUser(cmd, uid)
	c, _ := testutil.AcceptChild(t, cmd, ln)
	return c
}

// getAs sends one GET to the proxy at addr as uid and returns what the
// child printed.
func getAs(t *testing.T, bin string, uid uint32, network, addr string) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{childEnv + "=get " + network + " " + addr}
	testutil.AsUser(cmd, uid)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child as %d: %v", uid, err)
	}
	return strings.TrimSpace(string(out))
}
