package etcdstore

import (
	"time"

	"github.com/tokend/tokend/store"
)

// watchGrace is how long a watch of tokens/ that broke still counts as
// running while it is set up again (Health).
const watchGrace = 2 * time.Second

// Health is this instance's view of the fleet, for status and metrics.
// It describes the cluster, not the member a connection happens to use:
// a request refused by a member without a leader is sent to another one
// (see leaderRequired), one failed lease renewal is tried again at once,
// and a watch set up again within watchGrace is not reported broken.
func (s *Store) Health() store.FleetHealth {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	watching := s.watchOK.Load()
	if down := s.watchDown.Load(); !watching && down != 0 && now.Sub(time.Unix(0, down)) < watchGrace {
		// Broken a moment ago: set up again on another member (the one it
		// was on lost its leader, or its connection dropped). Not a
		// broken watch yet, so health does not flap with one member.
		watching = true
	}
	h := store.FleetHealth{
		Quorum:  s.quorum.Load(),
		LeaseOK: s.lease != 0 && s.leaseExp.After(now),
		// The client resumes a watch by itself while a member is
		// unreachable, without closing it: a watch is not running
		// without the quorum it needs either.
		WatchOK:  watching && s.quorum.Load(),
		WatchLag: time.Duration(s.lagNs.Load()),
	}
	if h.LeaseOK {
		for g, o := range s.owners {
			if _, mine := s.grants[g]; mine && o.lease == s.lease {
				h.GrantsHeld++
			}
		}
	}
	return h
}
