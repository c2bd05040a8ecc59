package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
)

// maxSunPath is the longest path bind(2) takes for a unix socket
// (sun_path is 108 bytes with its NUL).
const maxSunPath = 107

// listenSocket creates the fetch API's unix socket with a deliberate mode
// and group. The returned cleanup removes the socket file. self is the
// process's uid; bound, when set, runs after the socket is bound in its
// private directory and before its group and mode are set: the one moment
// someone could tamper with the directory, which tests do there.
//
// The socket is bound in a fresh private directory (0700) inside the
// socket's directory, given its group and mode there through a descriptor
// of the socket file itself, and renamed onto listen.socket: no chown or
// chmod ever resolves a path someone else could have swapped for a
// symlink, and no client can connect before the mode is right. A socket
// directory that someone other than root or tokend's user can write to is
// refused: whoever can write there could replace the socket.
func listenSocket(l config.Listen, self uint32, bound func(privDir string)) (net.Listener, func(), error) {
	path := l.Socket
	mode := uint32(config.DefaultSocketMode)
	if !l.SocketMode.IsZero() {
		mode = uint32(l.SocketMode.Perm())
	}
	gid, err := l.SocketGID() // -1: none
	if err != nil {
		return nil, nil, fmt.Errorf("server: %w", err)
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	dirfd, err := openSocketDir(dir, self)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(dirfd)

	// A leftover socket from a process that died is replaced (by the
	// rename below); anything else at that path is not ours to delete. A
	// live daemon cannot be there: it would hold the store's lock, and Run
	// opens the store first.
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil && st.Mode&unix.S_IFMT != unix.S_IFSOCK:
		return nil, nil, fmt.Errorf("server: %s exists and is not a socket; refusing to remove it", path)
	case err != nil && !errors.Is(err, unix.ENOENT):
		return nil, nil, fmt.Errorf("server: socket %s: %w", path, err)
	}

	priv, privfd, err := makePrivateDir(dirfd)
	if err != nil {
		return nil, nil, fmt.Errorf("server: socket directory %s: private directory: %w", dir, err)
	}
	defer unix.Close(privfd)
	removePriv := func() {
		_ = unix.Unlinkat(privfd, "s", 0)
		_ = unix.Unlinkat(dirfd, priv, unix.AT_REMOVEDIR)
	}
	// Bound by its plain path when that fits in sun_path, else through the
	// descriptor of the private directory, which is as good a name for it.
	bindPath := filepath.Join(dir, priv, "s")
	if len(bindPath) > maxSunPath {
		bindPath = fmt.Sprintf("/proc/self/fd/%d/s", privfd)
	}
	ln, err := net.Listen("unix", bindPath)
	if err != nil {
		removePriv()
		return nil, nil, fmt.Errorf("server: listen on %s: %w", path, err)
	}
	// The bound name is gone after the rename: the listener must not try
	// to remove it (or whatever has that name then) when it closes.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, func(), error) {
		ln.Close()
		removePriv()
		return nil, nil, err
	}
	if bound != nil {
		bound(filepath.Join(dir, priv))
	}
	if err := setSocketOwnerMode(privfd, gid, mode); err != nil {
		return fail(fmt.Errorf("server: socket %s: %w", path, err))
	}
	if err := unix.Renameat(privfd, "s", dirfd, base); err != nil {
		return fail(fmt.Errorf("server: moving the socket to %s: %w", path, err))
	}
	_ = unix.Unlinkat(dirfd, priv, unix.AT_REMOVEDIR)
	cleanup := func() {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			_ = os.Remove(path)
		}
	}
	return &namedListener{Listener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, cleanup, nil
}

// namedListener reports the socket's final path: the kernel still knows it
// by the private name it was bound to.
type namedListener struct {
	net.Listener
	addr net.Addr
}

func (l *namedListener) Addr() net.Addr { return l.addr }

// openSocketDir opens the socket's directory, creating it (0755) if
// missing, and refuses one that anyone other than root or uid self could
// write to, sticky or not: its other writers could rename the socket away
// and put their own in its place, or plant symlinks.
func openSocketDir(dir string, self uint32) (int, error) {
	// A directory tokend creates is traversable by everyone (0755, whatever
	// the umask): who may connect is decided by the socket's own mode and
	// group, and who may read which grant by its readers.
	created := false
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return -1, fmt.Errorf("server: socket directory: %w", err)
		}
		created = true
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("server: socket directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("server: socket directory %s: %w", dir, err)
	}
	if st.Uid != 0 && st.Uid != self {
		unix.Close(fd)
		return -1, fmt.Errorf("server: socket directory %s is owned by uid %d, not by root or tokend's user (uid %d): its owner could replace the socket; use a directory of root's or tokend's for listen.socket", dir, st.Uid, self)
	}
	if created {
		if err := unix.Fchmod(fd, 0o755); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("server: socket directory %s: %w", dir, err)
		}
		st.Mode = st.Mode&^0o7777 | 0o755
	}
	if st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("server: socket directory %s is writable by group or others (mode %04o): they could replace the socket; make it writable only by its owner (chmod go-w) or use another directory for listen.socket", dir, st.Mode&0o7777)
	}
	return fd, nil
}

// makePrivateDir creates a directory only this user can enter, under a
// name nobody can guess, and opens it without following symlinks.
func makePrivateDir(dirfd int) (string, int, error) {
	for range 8 {
		name := ".tokend-" + rand.Text()[:10]
		switch err := unix.Mkdirat(dirfd, name, 0o700); {
		case errors.Is(err, unix.EEXIST):
			continue
		case err != nil:
			return "", -1, err
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
			return "", -1, err
		}
		return name, fd, nil
	}
	return "", -1, unix.EEXIST
}

// setSocketOwnerMode gives the socket "s" in the private directory privfd
// its group (gid -1: unchanged) and mode, through a descriptor of the file
// opened without following symlinks and checked to be a socket: no path
// is resolved again between the check and the change.
func setSocketOwnerMode(privfd, gid int, mode uint32) error {
	fd, err := unix.Openat(privfd, "s", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("the bound socket is gone: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("the bound socket was replaced by something else; refusing to change it")
	}
	if gid >= 0 {
		if err := unix.Fchownat(fd, "", -1, gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown socket (listen.socket_group): %w", err)
		}
	}
	// fchmodat2 (Linux 6.6) changes the file an O_PATH descriptor names;
	// before it, the descriptor's /proc link does the same.
	err = unix.Fchmodat(fd, "", mode, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		err = unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode)
	}
	if err != nil {
		return fmt.Errorf("chmod socket (listen.socket_mode): %w", err)
	}
	return nil
}
