package systemd

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// notifySocket listens on a unixgram socket in a temporary directory and
// points $NOTIFY_SOCKET at it, as systemd does for Type=notify services.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	// A short directory: sun_path is limited to 108 bytes and t.TempDir()
	// can be long.
	dir := testutil.ShortDir(t)
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	// The datagram is already queued when the send returns; the deadline
	// only keeps a broken test from hanging.
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("reading notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifications(t *testing.T) {
	conn := notifySocket(t)
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"Ready", Ready, "READY=1"},
		{"Stopping", Stopping, "STOPPING=1"},
		{"Watchdog", Watchdog, "WATCHDOG=1"},
		{"Status", func() error { return Status("refreshing 3 grants") }, "STATUS=refreshing 3 grants"},
		{"StatusNewline", func() error { return Status("two\nlines") }, "STATUS=two lines"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := readDatagram(t, conn); got != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
	}

	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	got := readDatagram(t, conn)
	lines := strings.Split(got, "\n")
	if lines[0] != "RELOADING=1" || len(lines) != 2 || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Errorf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC=", got)
	} else if _, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64); err != nil {
		t.Errorf("Reloading: bad MONOTONIC_USEC in %q", got)
	}

	sent, err := Notify("EXTEND_TIMEOUT_USEC=5000000")
	if !sent || err != nil {
		t.Errorf("Notify = %v, %v; want true, nil", sent, err)
	}
	if got := readDatagram(t, conn); got != "EXTEND_TIMEOUT_USEC=5000000" {
		t.Errorf("Notify sent %q", got)
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		t.Error("NOTIFY_SOCKET was unset; later notifications would be lost")
	}
}

func TestNotifyOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Notify("READY=1")
	if sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
	if err := Ready(); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET = %v", err)
	}
}

func TestNotifyBrokenSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	sent, err := Notify("READY=1")
	if sent || err == nil || !strings.HasPrefix(err.Error(), "systemd: ") {
		t.Errorf("Notify to a missing socket = %v, %v; want false and a systemd: error", sent, err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name, usec, pid string
		want            time.Duration
		ok              bool
	}{
		{"unset", "", "", 0, false},
		{"no pid", "30000000", "", 15 * time.Second, true},
		{"our pid", "30000000", pid, 15 * time.Second, true},
		{"other pid", "30000000", strconv.Itoa(os.Getpid() + 1), 0, false},
		{"garbage", "thirty", pid, 0, false},
		{"zero", "0", pid, 0, false},
		{"bad pid", "30000000", "me", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tc.usec)
			t.Setenv("WATCHDOG_PID", tc.pid)
			d, ok := WatchdogInterval()
			if d != tc.want || ok != tc.ok {
				t.Errorf("WatchdogInterval() = %v, %v; want %v, %v", d, ok, tc.want, tc.ok)
			}
			if os.Getenv("WATCHDOG_USEC") != tc.usec {
				t.Error("WATCHDOG_USEC was changed")
			}
		})
	}
}

func TestCredential(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokend.key"), []byte("k"), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(dir), "outside")

	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if p, ok := Credential("tokend.key"); !ok || p != filepath.Join(dir, "tokend.key") {
		t.Errorf("Credential(tokend.key) = %q, %v", p, ok)
	}
	for _, name := range []string{"missing", "sub", "", ".", "..", "../outside", "sub/../tokend.key", outside} {
		if p, ok := Credential(name); ok {
			t.Errorf("Credential(%q) = %q, true; want not found", name, p)
		}
	}

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if p, ok := Credential("tokend.key"); ok {
		t.Errorf("Credential without CREDENTIALS_DIRECTORY = %q, true", p)
	}
}

func TestUnderJournal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	match := strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(st.Ino, 10)
	other := strconv.FormatUint(uint64(st.Dev), 10) + ":" + strconv.FormatUint(st.Ino+1, 10)

	for _, tc := range []struct {
		stream string
		want   bool
	}{
		{match, true},
		{other, false},
		{"", false},
		{"garbage", false},
		{"1:x", false},
	} {
		if got := underJournal(tc.stream, int(f.Fd())); got != tc.want {
			t.Errorf("underJournal(%q) = %v, want %v", tc.stream, got, tc.want)
		}
	}

	// The exported function looks at the real stderr: a stream naming
	// some other file never matches it.
	t.Setenv("JOURNAL_STREAM", match)
	if UnderJournal() {
		t.Error("UnderJournal() true for a stream that is not stderr")
	}
	var se syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &se); err == nil {
		t.Setenv("JOURNAL_STREAM", strconv.FormatUint(uint64(se.Dev), 10)+":"+strconv.FormatUint(se.Ino, 10))
		if !UnderJournal() {
			t.Error("UnderJournal() false for stderr's own device and inode")
		}
	}
}

// Socket activation hands descriptors 3 and up to a process whose pid is
// $LISTEN_PID. A test cannot arrange that for itself, so it re-executes the
// test binary: exec.Cmd.ExtraFiles puts the listening socket at fd 3 in the
// child, and the child, which cannot know its pid before it starts, sets
// LISTEN_PID to os.Getpid() itself before calling Listeners — the one thing
// systemd does that a parent process cannot do for a child without a
// fork/exec shim. The child reports what it found by connecting to the
// listeners and by its exit status.

const helperEnv = "TOKEND_SYSTEMD_HELPER"

func TestListeners(t *testing.T) {
	dir := testutil.ShortDir(t)

	newFile := func(name string) *os.File {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, name), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		// The child connects by path, so closing our copy must not
		// unlink it.
		l.SetUnlinkOnClose(false)
		defer l.Close()
		f, err := l.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	for _, tc := range []struct {
		name    string
		fdnames string
		files   []string
		want    string // what the child prints: sorted "name=count" pairs
	}{
		{"named", "api", []string{"a.sock"}, "api=1"},
		{"two named", "api:api", []string{"a.sock", "b.sock"}, "api=2"},
		{"mixed", "api:", []string{"a.sock", "b.sock"}, "=1,api=1"},
		{"unnamed", "", []string{"a.sock"}, "=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra []*os.File
			for _, name := range tc.files {
				extra = append(extra, newFile(tc.name+"-"+name))
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperListeners$", "-test.v")
			cmd.ExtraFiles = extra
			cmd.Env = append(os.Environ(),
				helperEnv+"=1",
				"LISTEN_FDS="+strconv.Itoa(len(extra)),
				"LISTEN_FDNAMES="+tc.fdnames,
			)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper failed: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "LISTENERS["+tc.want+"]") {
				t.Errorf("helper output lacks LISTENERS[%s]:\n%s", tc.want, out)
			}
		})
	}

	t.Run("not a listener", func(t *testing.T) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperListeners$", "-test.v")
		cmd.ExtraFiles = []*os.File{pr}
		cmd.Env = append(os.Environ(), helperEnv+"=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=api")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper failed: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "LISTENERS-ERROR[systemd: passed socket") {
			t.Errorf("helper did not report the pipe as an error:\n%s", out)
		}
	})

	t.Run("other pid", func(t *testing.T) {
		// LISTEN_PID names the parent, so the child must ignore fd 3.
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperListeners$", "-test.v")
		cmd.ExtraFiles = []*os.File{newFile("other.sock")}
		cmd.Env = append(os.Environ(), helperEnv+"=keep-pid", "LISTEN_FDS=1",
			"LISTEN_PID="+strconv.Itoa(os.Getpid()), "LISTEN_FDNAMES=api")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper failed: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "LISTENERS[]") {
			t.Errorf("helper took sockets meant for another pid:\n%s", out)
		}
	})
}

func TestListenersNone(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	t.Setenv("LISTEN_PID", "")
	ls, err := Listeners()
	if err != nil || len(ls) != 0 {
		t.Errorf("Listeners() without LISTEN_FDS = %v, %v; want empty", ls, err)
	}
}

// TestHelperListeners is the child half of TestListeners; it does nothing
// in a normal run.
func TestHelperListeners(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for TestListeners")
	}
	if mode != "keep-pid" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	ls, err := Listeners()
	if err != nil {
		t.Logf("LISTENERS-ERROR[%v]", err)
		return
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if _, set := os.LookupEnv(v); set {
			t.Errorf("%s still set after Listeners", v)
		}
	}
	var pairs []string
	for name, group := range ls {
		for _, l := range group {
			// Prove each one is a working listener: connect and accept.
			c, err := net.Dial(l.Addr().Network(), l.Addr().String())
			if err != nil {
				t.Fatalf("dial %s: %v", l.Addr(), err)
			}
			s, err := l.Accept()
			if err != nil {
				t.Fatalf("accept %s: %v", l.Addr(), err)
			}
			s.Close()
			c.Close()
			l.Close()
		}
		pairs = append(pairs, name+"="+strconv.Itoa(len(group)))
	}
	sort.Strings(pairs)
	t.Logf("LISTENERS[%s]", strings.Join(pairs, ","))
}
