package daemon

import (
	"github.com/tokend/tokend/config"
)

// peer is a caller as the kernel recorded it when the caller connected
// (the servers read it: SO_PEERCRED, SO_PEERGROUPS, or a TCP socket's
// owner), converted from the engine.Caller they pass (peerOf): not what
// it claims, and not what the process with that pid is now. Rights are
// decided from this record only, never from /proc/<pid>; ok is false for
// a caller the kernel did not name, who may do nothing.
type peer struct {
	ok       bool
	uid, gid uint32
	// groups are the supplementary groups at connect time; nil when the
	// kernel could not say (then no group grants anything).
	groups []uint32
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
