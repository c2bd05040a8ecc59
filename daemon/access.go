package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peer is a socket caller as the kernel identifies it (SO_PEERCRED): not
// what it claims, so it cannot be forged by the client.
type peer struct {
	ok       bool
	pid      int32
	uid, gid uint32
}

type peerKey struct{}

// peerContext records the caller's credentials on each accepted connection.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if uc, ok := c.(*net.UnixConn); ok {
		if raw, err := uc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) {
				if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
					p = peer{ok: true, pid: cred.Pid, uid: cred.Uid, gid: cred.Gid}
				}
			})
		}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerFrom(ctx context.Context) peer {
	p, _ := ctx.Value(peerKey{}).(peer)
	return p
}

// groups returns the caller's supplementary groups as the kernel has them
// (from /proc), falling back to none. Read only when a rule needs groups.
func (p peer) groups() []uint32 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			var gs []uint32
			for _, f := range strings.Fields(rest) {
				if n, err := strconv.ParseUint(f, 10, 32); err == nil {
					gs = append(gs, uint32(n))
				}
			}
			return gs
		}
	}
	return nil
}

// access is a resolved Readers list.
type access struct {
	uids map[uint32]bool
	gids map[uint32]bool
}

func resolveAccess(r Readers) (access, error) {
	var a access
	uids, gids, err := r.Resolve()
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

// allows reports whether a names p, by uid, primary gid or a
// supplementary group.
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
	for _, g := range p.groups() {
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
