package security

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

// childRoleEnv makes the test binary play a part (a client of tokend's
// socket running as another user) instead of running tests: see init.
const childRoleEnv = "TOKEND_SECURITY_CHILD"

func init() {
	switch os.Getenv(childRoleEnv) {
	case "":
		return
	case "pass-conn":
		childPassConn()
	case "hold":
		// Stay alive, with the credentials the parent gave, until told.
		_, _ = io.Copy(io.Discard, os.Stdin)
	case "flood":
		childFlood()
	case "flood-tcp":
		childFloodTCP()
	default:
		fmt.Fprintln(os.Stderr, "security: unknown child role", os.Getenv(childRoleEnv))
		os.Exit(2)
	}
	os.Exit(0)
}

// childPassConn connects to $TOKEND_SOCK and hands the connection to its
// parent over fd 3 (SCM_RIGHTS), then exits: the connection outlives the
// process whose credentials the kernel recorded for it.
func childPassConn() {
	c, err := net.Dial("unix", os.Getenv("TOKEND_SOCK"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "security: child connect:", err)
		os.Exit(2)
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		fmt.Fprintln(os.Stderr, "security: child:", err)
		os.Exit(2)
	}
	if err := unix.Sendmsg(3, []byte{'c'}, unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		fmt.Fprintln(os.Stderr, "security: child sendmsg:", err)
		os.Exit(2)
	}
}

// copySelf copies this test binary beside tokendBin, where other users
// may run it, once: the go tool builds it in a directory only root may
// enter.
var copySelf = sync.OnceValues(func() (string, error) { return testutil.CopySelf(filepath.Dir(tokendBin)) })

// childBin is the path of that copy.
func childBin(t *testing.T) string {
	t.Helper()
	bin, err := copySelf()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// childCmd is this test binary in role, as uid with groups.
func childCmd(t *testing.T, role string, uid uint32, groups []uint32, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(childBin(t))
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", childRoleEnv + "=" + role}, env...)
	testutil.AsUser(cmd, uid, groups...)
	return cmd
}

const (
	// gidReaders reads the grant "guarded"; gidOperators are operators.
	// Neither needs to exist in /etc/group: the config names them by number.
	gidReaders   = 65520
	gidOperators = 65521
	// uidMember is a member of both groups.
	uidMember = 65532
)

const pidReuseGrants = `  guarded:
    client: app
    type: client_credentials
    scopes: [read]
    readers: {gids: [65520]}
`

// heldConn receives the connection a child (as uid, no groups) made to
// tokend's socket and handed over before exiting, and returns it with the
// pid the kernel recorded for it.
func heldConn(t *testing.T, e *env, uid uint32) (net.Conn, int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mine := os.NewFile(uintptr(fds[0]), "parent end")
	theirs := os.NewFile(uintptr(fds[1]), "child end")
	defer mine.Close()
	cmd := childCmd(t, "pass-conn", uid, []uint32{}, "TOKEND_SOCK="+e.sock)
	cmd.ExtraFiles = []*os.File{theirs}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the connecting child: %v\n%s", err, stderr.String())
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(int(mine.Fd()), buf, oob, 0)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("no descriptor from the child: %v", err)
	}
	rights, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(rights) != 1 {
		t.Fatalf("no descriptor from the child: %v", err)
	}
	f := os.NewFile(uintptr(rights[0]), "held connection")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cmd.Process.Pid
}

// impostor starts a process as uidMember, in groups gidReaders and
// gidOperators, with exactly pid (through ns_last_pid), and keeps it alive
// until the test ends.
func impostor(t *testing.T, pid int) {
	t.Helper()
	for try := range 50 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot steer pids (writing ns_last_pid): %v", err)
		}
		cmd := childCmd(t, "hold", uidMember, []uint32{gidReaders, gidOperators})
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
			t.Logf("impostor has pid %d (try %d)", pid, try+1)
			return
		}
		// Something else took the pid first (a thread of this process or
		// of tokend, or any process on the host): try again.
		stdin.Close()
		_ = cmd.Wait()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("could not start a process with pid %d in 50 tries", pid)
}

// exchange sends one request on c and returns the status code.
func exchange(t *testing.T, c net.Conn, r *bufio.Reader, method, path string) (int, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := method + " " + path + " HTTP/1.1\r\nHost: tokend\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("%s %s on the held connection: %v", method, path, err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("%s %s on the held connection: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPIDReuse: a non-reader connects, hands its connection to the test
// and exits; a process of a reader's and an operator's group is started
// with the same pid. Requests on the held connection are judged by the
// process that connected (uid 65533, no groups), not by the one that has
// its pid now: 403 for the read and for the revoke. A fresh connection of
// the group member is allowed.
func TestPIDReuse(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov:   devprovider.Options{AccessTTL: time.Hour},
		grants: pidReuseGrants,
	})
	mustWrite(t, e.config, e.configWith("operators:\n  groups: []\n", fmt.Sprintf("operators:\n  gids: [%d]\n", gidOperators)))
	e.start()

	// Controls: the member reads over its own connection, the non-reader
	// does not.
	if r := e.runGroups(uidMember, []uint32{gidReaders}, "token", "guarded"); r.code != exitOK || !e.prov.Valid(strings.TrimSpace(r.stdout)) {
		t.Fatalf("a member of the readers' group, fresh connection: %v", r)
	}
	if r := e.run(uidOther, "token", "guarded"); r.code != exitForbidden {
		t.Fatalf("uid %d without groups: want exit %d, got %v", uidOther, exitForbidden, r)
	}

	c, pid := heldConn(t, e, uidOther)
	impostor(t, pid)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil || !strings.Contains(string(b), fmt.Sprintf("\nGroups:\t%d %d", gidReaders, gidOperators)) {
		t.Fatalf("/proc/%d/status does not show the impostor's groups (%v):\n%s", pid, err, b)
	}

	before := e.prov.Stats()
	r := bufio.NewReader(c)
	if code, body := exchange(t, c, r, http.MethodGet, "/v1/tokens/guarded"); code != http.StatusForbidden {
		t.Errorf("GET /v1/tokens/guarded on the connection of uid %d, pid %d now a reader's: %d, want 403\n%s", uidOther, pid, code, body)
	}
	if code, body := exchange(t, c, r, http.MethodPost, "/v1/tokens/guarded/revoke"); code != http.StatusForbidden {
		t.Errorf("POST /v1/tokens/guarded/revoke on the connection of uid %d, pid %d now an operator's: %d, want 403\n%s", uidOther, pid, code, body)
	}
	if code, body := exchange(t, c, r, http.MethodGet, "/v1/tokens"); code != http.StatusOK || strings.Contains(body, "guarded") {
		t.Errorf("GET /v1/tokens on the held connection lists the guarded grant: %d %s", code, body)
	}
	if after := e.prov.Stats(); after.Revocations != before.Revocations {
		t.Errorf("a revocation reached the provider: %d → %d", before.Revocations, after.Revocations)
	}
	if r := e.runGroups(uidMember, []uint32{gidReaders}, "token", "guarded"); r.code != exitOK || !e.prov.Valid(strings.TrimSpace(r.stdout)) {
		t.Errorf("after the attempt, the member's fresh connection: %v", r)
	}
}
