package daemon

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// listenSocket creates the fetch API's unix socket with a deliberate mode
// and group, or takes the one systemd passed. The returned cleanup removes
// a socket file this process created.
func (d *Daemon) listenSocket(l ListenConfig) (net.Listener, func(), error) {
	if d.opts.SocketListener != nil {
		return d.opts.SocketListener, func() {}, nil
	}
	path := l.Socket
	mode := os.FileMode(0o660)
	if l.SocketMode != "" {
		m, err := strconv.ParseUint(l.SocketMode, 8, 32)
		if err != nil || m > 0o777 {
			return nil, nil, fmt.Errorf("daemon: listen.socket_mode %q: not an octal file mode", l.SocketMode)
		}
		mode = os.FileMode(m)
	}
	// A directory tokend creates is traversable by everyone (0755, whatever
	// the umask): who may connect is decided by the socket's own mode and
	// group, and who may read which grant by its readers.
	if dir := filepath.Dir(path); !exists(dir) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("daemon: socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("daemon: socket directory: %w", err)
		}
	}
	// A leftover socket from a process that died is removed; anything else
	// at that path is not ours to delete. A live daemon cannot be there: it
	// would hold the store's lock, and Run opens the store first.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, nil, fmt.Errorf("daemon: %s exists and is not a socket; refusing to remove it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("daemon: removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("daemon: listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	cleanup := func() {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			_ = os.Remove(path)
		}
	}
	fail := func(err error) (net.Listener, func(), error) {
		ln.Close()
		cleanup()
		return nil, nil, err
	}
	if l.SocketGroup != "" {
		gid, err := lookupGroup(l.SocketGroup)
		if err != nil {
			return fail(fmt.Errorf("daemon: listen.socket_group: %w", err))
		}
		if err := os.Chown(path, -1, int(gid)); err != nil {
			return fail(fmt.Errorf("daemon: chown socket: %w", err))
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fail(fmt.Errorf("daemon: chmod socket: %w", err))
	}
	return ln, cleanup, nil
}

func listenTCP(what, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("daemon: %s listener on %s: %w", what, addr, err)
	}
	return ln, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
