package server

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokend/tokend/config"
)

// listenIn runs listenSocket for l as tokend's user would; bound, when
// given, runs once the socket is bound in its private directory.
func listenIn(t *testing.T, l config.Listen, bound ...func(privDir string)) (net.Listener, error) {
	t.Helper()
	var hook func(string)
	if len(bound) > 0 {
		hook = bound[0]
	}
	ln, cleanup, err := listenSocket(l, uint32(os.Geteuid()), hook)
	if err == nil {
		t.Cleanup(func() { ln.Close(); cleanup() })
	}
	return ln, err
}

// resolvedListen returns l as a validated configuration carries it, its
// socket group looked up.
func resolvedListen(t *testing.T, l config.Listen) config.Listen {
	t.Helper()
	c := &config.Config{Listen: l}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c.Listen
}

// A socket group the configuration never resolved is refused, not looked
// up here: names are resolved once, when the configuration is loaded.
func TestListenSocketGroupUnresolved(t *testing.T) {
	dir := t.TempDir()
	_, err := listenIn(t, config.Listen{Socket: filepath.Join(dir, "tokend.sock"), SocketGroup: "root"})
	if err == nil || !strings.Contains(err.Error(), "listen.socket_group") || !strings.Contains(err.Error(), "never resolved") {
		t.Fatalf("listenSocket with an unresolved group: %v", err)
	}
	if es := entries(t, dir); len(es) != 0 {
		t.Fatalf("left behind: %v", es)
	}
}

// entries lists dir, to see what listenSocket left there.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// A socket directory someone else can write to is refused, sticky or not:
// they could swap the socket, or a path tokend acts on, for their own.
func TestListenSocketRefusesSharedDir(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o777 | os.ModeSticky, 0o770, 0o757} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := listenIn(t, config.Listen{Socket: filepath.Join(dir, "tokend.sock"), SocketMode: config.Mode(0o666)})
			if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable") {
				t.Fatalf("listenSocket in a %v directory: %v; want a refusal naming %s", mode, err, dir)
			}
			if es := entries(t, dir); len(es) != 0 {
				t.Fatalf("left behind in the refused directory: %v", es)
			}
		})
	}
	t.Run("owned by another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give the directory away")
		}
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := listenIn(t, config.Listen{Socket: filepath.Join(dir, "tokend.sock")})
		if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("listenSocket in a directory of uid 65534: %v", err)
		}
	})
}

// otherGroup returns a group that exists and is not the test's own, to
// see listen.socket_group applied.
func otherGroup(t *testing.T) (string, int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the socket to another group")
	}
	for _, name := range []string{"nogroup", "nobody", "daemon", "bin", "sys", "adm", "users"} {
		g, err := user.LookupGroup(name)
		if err != nil {
			continue
		}
		if gid, err := strconv.Atoi(g.Gid); err == nil && gid != os.Getegid() {
			return name, gid
		}
	}
	t.Skip("no group other than the test's own in the group database")
	return "", 0
}

// The socket gets the configured mode and group, appears at its path only
// with them, and nothing else is left in its directory. A stale socket is
// replaced; anything else at the path is left alone.
func TestListenSocketModeGroupAndPath(t *testing.T) {
	name, gid := otherGroup(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "tokend.sock")
	cfg := resolvedListen(t, config.Listen{Socket: path, SocketMode: config.Mode(0o640), SocketGroup: name})
	ln, err := listenIn(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkSocket := func() {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o640 || int(st.Gid) != gid {
			t.Fatalf("socket: mode %v gid %d; want a socket, 0640, gid %d", fi.Mode(), st.Gid, gid)
		}
		if es := entries(t, dir); len(es) != 1 || es[0] != "tokend.sock" {
			t.Fatalf("socket directory holds %v, want only tokend.sock", es)
		}
	}
	checkSocket()
	if ln.Addr().String() != path {
		t.Errorf("Addr() = %q, want %q", ln.Addr(), path)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	c.Close()

	// The process dies without removing its socket: the next one replaces it.
	ln.Close()
	if _, err := listenIn(t, cfg); err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	checkSocket()

	other := filepath.Join(t.TempDir(), "x.sock")
	if err := os.WriteFile(other, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenIn(t, config.Listen{Socket: other}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(other); string(b) != "precious" {
		t.Fatal("the file at the socket path was touched")
	}
	if es := entries(t, filepath.Dir(other)); len(es) != 1 {
		t.Fatalf("left behind: %v", es)
	}
}

// A path that fits in sun_path still works when the private directory's
// name would make the bind path too long.
func TestListenSocketLongPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < maxSunPath-12 {
		dir = filepath.Join(dir, strings.Repeat("d", min(20, maxSunPath-12-len(dir))))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "t.sock")
	if len(path) > maxSunPath {
		t.Fatalf("test path too long: %d", len(path))
	}
	if _, err := listenIn(t, config.Listen{Socket: path, SocketMode: config.Mode(0o600)}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// chmod and chown never resolve a path: a symlink swapped in for the
// socket (possible here only because the test is root) is refused, and
// a private directory swapped for a symlink redirects nothing.
func TestListenSocketNoChmodThroughSymlink(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	victimDir := t.TempDir()
	if err := os.Chmod(victimDir, 0o700); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("victim file: %v %v; want 0600", fi.Mode(), err)
		}
		if fi, err := os.Stat(victimDir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("victim directory: %v %v; want 0700", fi.Mode(), err)
		}
		if es := entries(t, victimDir); len(es) != 0 {
			t.Fatalf("victim directory got %v", es)
		}
	}

	t.Run("socket swapped", func(t *testing.T) {
		dir := t.TempDir()
		bound := func(priv string) {
			s := filepath.Join(priv, "s")
			if err := os.Remove(s); err != nil {
				t.Error(err)
			}
			if err := os.Symlink(victim, s); err != nil {
				t.Error(err)
			}
		}
		_, err := listenIn(t, config.Listen{Socket: filepath.Join(dir, "tokend.sock"), SocketMode: config.Mode(0o666)}, bound)
		if err == nil {
			t.Fatal("listenSocket went on with a symlink in place of its socket")
		}
		check()
		if es := entries(t, dir); len(es) != 0 {
			t.Fatalf("left behind: %v", es)
		}
	})

	// The race of the report: once the socket is bound, its final path is
	// replaced by a symlink to a root-only file. chmod by path would make
	// that file 0666; the rename replaces the symlink instead.
	t.Run("socket path swapped", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tokend.sock")
		bound := func(string) {
			_ = os.Remove(path)
			if err := os.Symlink(victim, path); err != nil {
				t.Error(err)
			}
		}
		if _, err := listenIn(t, config.Listen{Socket: path, SocketMode: config.Mode(0o666)}, bound); err != nil {
			t.Fatal(err)
		}
		check()
		if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
			t.Fatalf("socket: %v %v", fi, err)
		}
	})

	t.Run("private directory swapped", func(t *testing.T) {
		dir := t.TempDir()
		var moved string
		bound := func(priv string) {
			moved = priv + ".moved"
			if err := os.Rename(priv, moved); err != nil {
				t.Error(err)
			}
			if err := os.Symlink(victimDir, priv); err != nil {
				t.Error(err)
			}
		}
		path := filepath.Join(dir, "tokend.sock")
		if _, err := listenIn(t, config.Listen{Socket: path, SocketMode: config.Mode(0o666)}, bound); err != nil {
			t.Fatal(err)
		}
		check()
		if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o666 {
			t.Fatalf("socket: %v %v", fi, err)
		}
	})
}
