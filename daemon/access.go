package daemon

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/server"
)

// peer is a socket caller as the kernel recorded it when the caller
// connected (SO_PEERCRED, SO_PEERGROUPS): not what it claims, and not what
// the process with that pid is now. A client can hand its connection to
// another process and exit, and its pid can then be reused by anyone; so
// rights are decided from this record only, never from /proc/<pid>.
type peer struct {
	ok       bool
	pid      int32 // for logs only: it may belong to another process by now
	uid, gid uint32
	// groups are the supplementary groups at connect time; nil when the
	// kernel could not say (then no group grants anything).
	groups []uint32
}

type peerKey struct{}

// credConn is a connection whose peer was read at accept (connLimiter).
type credConn interface {
	peerCred() peer
}

// peerContext records the caller's credentials on each accepted
// connection, once: every request on it is judged by this record.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if cc, ok := c.(credConn); ok {
		p = cc.peerCred()
	} else {
		p = connPeer(c)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// connPeer reads the kernel's record of the process that connected c.
func connPeer(c net.Conn) peer {
	var p peer
	sc, ok := c.(syscall.Conn)
	if !ok {
		return p
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return p
	}
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		p = peer{ok: true, pid: cred.Pid, uid: cred.Uid, gid: cred.Gid}
		// Failing closed: without the connect-time list, the caller is
		// judged by its uid and primary gid alone.
		p.groups, _ = server.PeerGroups(int(fd))
	})
	return p
}

func peerFrom(ctx context.Context) peer {
	p, _ := ctx.Value(peerKey{}).(peer)
	return p
}

// access is a Readers list as sets of the ids it resolved to when the
// configuration was loaded.
type access struct {
	uids map[uint32]bool
	gids map[uint32]bool
}

func resolveAccess(r config.Readers) (access, error) {
	var a access
	uids, gids, err := r.IDs()
	// Most grants name no readers: nil maps keep 100,000 of them cheap.
	if len(uids) > 0 {
		a.uids = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			a.uids[u] = true
		}
	}
	if len(gids) > 0 {
		a.gids = make(map[uint32]bool, len(gids))
		for _, g := range gids {
			a.gids[g] = true
		}
	}
	return a, err
}

// allows reports whether a names p, by uid, primary gid or a supplementary
// group the peer had when it connected.
func (a access) allows(p peer) bool {
	if !p.ok {
		return false
	}
	if a.uids[p.uid] || a.gids[p.gid] {
		return true
	}
	if len(a.gids) == 0 {
		return false
	}
	for _, g := range p.groups {
		if a.gids[g] {
			return true
		}
	}
	return false
}

// isOperator: root, the daemon's own user, or a configured operator.
func (d *Daemon) isOperator(p peer) bool {
	if !p.ok {
		return false
	}
	if p.uid == 0 || p.uid == d.selfUID {
		return true
	}
	d.mu.RLock()
	ops := d.operators
	d.mu.RUnlock()
	return ops.allows(p)
}

// mayRead: operators, and the grant's readers.
func (d *Daemon) mayRead(p peer, g *grant) bool {
	return d.isOperator(p) || g.readers.allows(p)
}
