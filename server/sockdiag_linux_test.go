package server

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// listenLoopback listens on a free port of the loopback address of network
// (tcp4, tcp6), skipping when the host has no such address.
func listenLoopback(t *testing.T, network string) net.Listener {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "tcp6" {
		addr = "[::1]:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		if network == "tcp6" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// The uid found for a loopback TCP connection is the connecting user's:
// root, and uid 65534 from a process of its own, over IPv4 and IPv6.
func TestIdentifyLoopbackTCPUser(t *testing.T) {
	bin := childBin(t)
	for _, network := range []string{"tcp4", "tcp6"} {
		for _, uid := range []uint32{0, 65534} {
			ln := listenLoopback(t, network)
			c := dialAs(t, bin, uid, ln)
			got, err := Identify(c)
			if err != nil {
				t.Fatalf("%s uid %d: %v", network, uid, err)
			}
			if got.UID != uid || got.HasGroups {
				t.Errorf("%s: connection of uid %d identified as %+v", network, uid, got)
			}
		}
	}
}

// Connections of this process (whatever user runs the tests) are its own
// uid's, also when two of them are open at once on neighbouring ports.
func TestIdentifyLoopbackTCPSelf(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		ln := listenLoopback(t, network)
		var conns []net.Conn
		for range 2 {
			d, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		for _, c := range conns {
			got, err := Identify(c)
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			if got.UID != uint32(os.Getuid()) {
				t.Errorf("%s: own connection identified as uid %d, want %d", network, got.UID, os.Getuid())
			}
		}
	}
}

// A peer that has closed its socket names nobody: the kernel keeps its
// connection as a TIME_WAIT or orphan without an owner (and reports uid 0
// for it), which must not pass for root.
func TestIdentifyClosedPeerRefused(t *testing.T) {
	ln := listenLoopback(t, "tcp4")
	d, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := Identify(c); err == nil {
		t.Fatalf("a closed peer was identified as %+v", got)
	}
}

// Addresses that are not loopback are never looked up.
func TestLoopbackPeerUIDRefusesOtherAddresses(t *testing.T) {
	ln := listenLoopback(t, "tcp4")
	la := ln.Addr().(*net.TCPAddr).AddrPort()
	other := netipAddrPort("192.0.2.1", 40000)
	if _, err := loopbackPeerUID(la, other); err == nil {
		t.Error("a remote address was looked up")
	}
}

func netipAddrPort(ip string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), port)
}

// A user who is not root can ask: tokend proxy runs as its user.
func TestIdentifyAsUnprivilegedUser(t *testing.T) {
	bin := childBin(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{childEnv + "=identify tcp4 127.0.0.1:0"}
	testutil.AsUser(cmd, 65534)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	rd := bufio.NewReader(out)
	addr, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp4", strings.TrimSpace(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, _ := rd.ReadString('\n')
	if want := strconv.Itoa(os.Getuid()); strings.TrimSpace(got) != want {
		t.Errorf("uid 65534 identified this process's connection as %q, want %s", got, want)
	}
}
