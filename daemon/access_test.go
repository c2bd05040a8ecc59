package daemon

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
)

// peerChildEnv makes the test binary a socket client (peerChild) instead
// of running tests: the peer tests need processes with other groups.
const peerChildEnv = "TOKEND_DAEMON_TEST_PEER_CHILD"

func init() {
	if sock := os.Getenv(peerChildEnv); sock != "" {
		peerChild(sock)
		os.Exit(0)
	}
}

// peerChild connects to sock and writes "c". On "setgroups N,M" from
// stdin it takes those supplementary groups and writes "g". It exits when
// stdin closes.
func peerChild(sock string) {
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	_, _ = io.WriteString(c, "c")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "setgroups "); ok {
			var gs []int
			for _, f := range strings.Split(rest, ",") {
				n, _ := strconv.Atoi(f)
				gs = append(gs, n)
			}
			if err := syscall.Setgroups(gs); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			_, _ = io.WriteString(c, "g")
		}
	}
}

type peerChildProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	conn  net.Conn // the server's end of the child's connection
}

// sharedDir returns a directory every user may traverse, holding a copy of
// the test binary (the go tool builds it in a private directory).
func sharedDir(t *testing.T) (dir, bin string) {
	t.Helper()
	dir = testutil.SharedDir(t)
	bin, err := testutil.CopySelf(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// startPeerChild runs peerChild (bin) with cred and returns once its
// connection has been accepted on ln.
func startPeerChild(t *testing.T, bin string, ln net.Listener, cred *syscall.Credential) *peerChildProc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{peerChildEnv + "=" + ln.Addr().String()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	conn, stdin := testutil.AcceptChild(t, cmd, ln)
	return &peerChildProc{cmd: cmd, stdin: stdin, conn: conn}
}

// procGroups reads the Groups: line of /proc/pid/status: what the old
// per-request check used.
func procGroups(t *testing.T, pid int) []uint32 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var gs []uint32
			for _, f := range strings.Fields(rest) {
				n, _ := strconv.ParseUint(f, 10, 32)
				gs = append(gs, uint32(n))
			}
			return gs
		}
	}
	return nil
}

// A caller is judged by the groups it had when it connected: groups its
// process (or whatever process has its pid by now) gains later grant
// nothing. The old check re-read /proc/<pid>/status on every request.
func TestPeerGroupsAreThoseAtConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the clients run with other groups")
	}
	dir, bin := sharedDir(t)
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chmod(filepath.Join(dir, "s"), 0o777); err != nil {
		t.Fatal(err)
	}
	readers, err := resolveAccess(config.Readers{GIDs: []int{4100}})
	if err != nil {
		t.Fatal(err)
	}

	// Root with no supplementary group connects, then takes group 4100.
	pc := startPeerChild(t, bin, ln, &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}})
	if _, err := io.WriteString(pc.stdin, "setgroups 4100\n"); err != nil {
		t.Fatal(err)
	}
	testutil.ExpectByte(t, pc.conn, 'g')
	if gs := procGroups(t, pc.cmd.Process.Pid); !slices.Contains(gs, 4100) {
		t.Fatalf("the child did not take group 4100: /proc says %v", gs)
	}
	p := connPeer(pc.conn)
	if !p.ok || p.uid != 0 {
		t.Fatalf("peer %+v, want uid 0", p)
	}
	if len(p.groups) != 0 || readers.allows(p) {
		t.Fatalf("a group taken after connect counts: peer groups %v, allowed %v", p.groups, readers.allows(p))
	}

	// A member of many groups (more than the first buffer holds) connects:
	// every one of them is recorded.
	var many []uint32
	for g := uint32(5000); g < 5100; g++ {
		many = append(many, g)
	}
	many = append(many, 4100)
	pc = startPeerChild(t, bin, ln, &syscall.Credential{Uid: 4000, Gid: 4000, Groups: many})
	p = connPeer(pc.conn)
	got := slices.Clone(p.groups)
	slices.Sort(got)
	want := slices.Clone(many)
	slices.Sort(want)
	if !p.ok || p.uid != 4000 || p.gid != 4000 || !slices.Equal(got, want) {
		t.Fatalf("peer %+v, want uid/gid 4000 with groups %v", p, want)
	}
	if !readers.allows(p) {
		t.Fatal("a member of group 4100 at connect is not allowed")
	}
	// The process is gone; its record stays what it was.
	pc.stdin.Close()
	_ = pc.cmd.Wait()
	if p2 := connPeer(pc.conn); !slices.Equal(p2.groups, p.groups) {
		t.Fatalf("groups after the client exited: %v, want %v", p2.groups, p.groups)
	}
}

// Without the connect-time list (SO_PEERGROUPS failed, which package
// server's tests check) no group grants anything, whatever /proc says of
// the pid.
func TestPeerGroupsFailClosed(t *testing.T) {
	own := procGroups(t, os.Getpid())
	own = append(own, uint32(os.Getgid()))
	a := access{gids: map[uint32]bool{}}
	for _, g := range own {
		a.gids[g] = true
	}
	p := peer{ok: true, uid: 4000, gid: 4000}
	if a.allows(p) {
		t.Fatal("a peer without recorded groups was allowed by the groups of the process with its pid")
	}
}

func TestAccessRules(t *testing.T) {
	a, err := resolveAccess(config.Readers{UIDs: []int{1000}, GIDs: []int{50}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p    peer
		want bool
	}{
		{peer{ok: true, uid: 1000, gid: 1000}, true},
		{peer{ok: true, uid: 1001, gid: 50}, true},
		{peer{ok: true, uid: 1001, gid: 1001}, false},
		{peer{ok: false, uid: 1000}, false},
	}
	for _, c := range cases {
		if got := a.allows(c.p); got != c.want {
			t.Errorf("allows(%+v) = %v", c.p, got)
		}
	}
	d := &Daemon{selfUID: 4242}
	if !d.isOperator(peer{ok: true, uid: 0}) || !d.isOperator(peer{ok: true, uid: 4242}) || d.isOperator(peer{ok: true, uid: 1000}) {
		t.Fatal("operator rules")
	}
}
