package server

// Who is calling: every connection a proxy accepts is tied, once, at
// accept, to the local user the kernel says made it. A connection whose
// user cannot be told is closed before a byte of it is read.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Listen opens a proxy's listener: an absolute path is a unix socket
// (mode 0666: whoever connects is then judged as a reader, like on
// loopback TCP, where anyone may connect too), anything else a loopback
// TCP host:port. Other addresses are refused: the kernel can name the
// user behind a connection from this host only.
func Listen(addr string) (net.Listener, error) {
	if filepath.IsAbs(addr) {
		if fi, err := os.Lstat(addr); err == nil {
			if fi.Mode().Type() != os.ModeSocket {
				return nil, fmt.Errorf("server: %s exists and is not a socket", addr)
			}
			// A socket nobody listens on any more (a proxy that died).
			if c, err := net.Dial("unix", addr); err == nil {
				c.Close()
				return nil, fmt.Errorf("server: %s: another process listens there", addr)
			}
			if err := os.Remove(addr); err != nil {
				return nil, fmt.Errorf("server: %w", err)
			}
		}
		ln, err := net.Listen("unix", addr)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		if err := os.Chmod(addr, 0o666); err != nil {
			ln.Close()
			return nil, fmt.Errorf("server: %w", err)
		}
		return ln, nil
	}
	if err := CheckListenAddr(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return ln, nil
}

// CheckListenAddr refuses a proxy address that is neither an absolute
// unix socket path nor a loopback IP address with a port.
func CheckListenAddr(addr string) error {
	if filepath.IsAbs(addr) {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("server: proxy address %q: want 127.0.0.1:PORT, [::1]:PORT or an absolute unix socket path", addr)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("server: proxy address %q: only a loopback IP address (127.0.0.1, ::1): the kernel names the user behind a connection from this host alone", addr)
	}
	return nil
}

// Serve serves h on ln until ctx ends, each request's context carrying
// the Caller of its connection (CallerFrom). Connections whose user
// cannot be determined are closed at once. It returns nil when ctx ends,
// after a shutdown bounded by a few seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if cc, ok := c.(*callerConn); ok {
				return WithCaller(ctx, cc.caller)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(&admitListener{Listener: ln, log: log}) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// Bounds on a proxy's open connections: any local user may connect, and
// one must not hold every descriptor of the process that serves the
// others (the daemon, for the proxies it serves).
const (
	maxConns       = 1024
	maxConnsPerUID = 128
)

// admitListener returns only connections whose caller is known, within
// the bounds above; others are closed at once.
type admitListener struct {
	net.Listener
	log *slog.Logger

	mu    sync.Mutex
	open  int
	byUID map[uint32]int
}

type callerConn struct {
	net.Conn
	caller Caller
	once   sync.Once
	l      *admitListener
}

func (c *callerConn) Close() error {
	c.once.Do(func() { c.l.release(c.caller.UID) })
	return c.Conn.Close()
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		caller, err := Identify(c)
		if err != nil {
			l.log.Warn("proxy: connection refused: who made it cannot be told", "remote", c.RemoteAddr().String(), "error", err.Error())
			c.Close()
			continue
		}
		if !l.take(caller.UID) {
			l.log.Debug("proxy: connection refused: too many open", "uid", caller.UID)
			c.Close()
			continue
		}
		return &callerConn{Conn: c, caller: caller, l: l}, nil
	}
}

func (l *admitListener) take(uid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byUID == nil {
		l.byUID = map[uint32]int{}
	}
	if l.open >= maxConns || l.byUID[uid] >= maxConnsPerUID {
		return false
	}
	l.open++
	l.byUID[uid]++
	return true
}

func (l *admitListener) release(uid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byUID[uid]--; l.byUID[uid] <= 0 {
		delete(l.byUID, uid)
	}
}

// errUnknownCaller: the kernel did not say who made a connection.
var errUnknownCaller = errors.New("server: the connecting user cannot be determined")

// Identify returns the local user behind c: from SO_PEERCRED on a unix
// socket, from the owner of the peer's socket (sock_diag) on loopback TCP.
func Identify(c net.Conn) (Caller, error) {
	switch c.LocalAddr().(type) {
	case *net.UnixAddr:
		return unixPeer(c)
	case *net.TCPAddr:
		local, lok := c.LocalAddr().(*net.TCPAddr)
		remote, rok := c.RemoteAddr().(*net.TCPAddr)
		if !lok || !rok {
			return Caller{}, errUnknownCaller
		}
		uid, err := loopbackPeerUID(local.AddrPort(), remote.AddrPort())
		if err != nil {
			return Caller{}, err
		}
		return Caller{UID: uid}, nil
	}
	return Caller{}, errUnknownCaller
}

// unixPeer reads the kernel's record of the process that connected c.
func unixPeer(c net.Conn) (Caller, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Caller{}, errUnknownCaller
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var caller Caller
	cerr := errUnknownCaller
	if err := raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			cerr = err
			return
		}
		caller = Caller{UID: cred.Uid, GID: cred.Gid, HasGroups: true}
		// Without the connect-time list the caller is judged by its uid
		// and primary gid alone.
		caller.Groups, _ = peerGroups(int(fd))
		cerr = nil
	}); err != nil {
		return Caller{}, err
	}
	return caller, cerr
}

// peerGroups returns the supplementary groups the kernel recorded for the
// peer of the connected unix socket fd at connect (SO_PEERGROUPS, Linux
// 4.13). x/sys has no helper: the option fills an array of gid_t and says
// ERANGE, with the size it needs, when the buffer is short.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for range 4 {
		n := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == unix.ERANGE && int(n) > len(buf):
			buf = make([]byte, n)
			continue
		case errno != 0:
			return nil, errno
		}
		if n%4 != 0 || int(n) > len(buf) {
			return nil, unix.EINVAL
		}
		gs := make([]uint32, 0, n/4)
		for i := 0; i < int(n); i += 4 {
			gs = append(gs, binary.NativeEndian.Uint32(buf[i:]))
		}
		return gs, nil
	}
	// The list kept growing between calls; it cannot for a connected
	// socket, so something is wrong: no groups.
	return nil, unix.ERANGE
}
