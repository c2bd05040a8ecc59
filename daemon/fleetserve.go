package daemon

import (
	"context"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/store"
)

// fleetTakeoverPoll is how often a fetch waiting for the watch checks
// whether this instance has meanwhile taken the grant over (real time:
// the wait itself is bounded by Options.FetchWait and the caller).
const fleetTakeoverPoll = 250 * time.Millisecond

// fleetFetch serves a fetch of a token that needs renewing on an instance
// that does not refresh its grant: it waits for the watch to deliver a
// newer token (or for this instance to take the grant over), at most
// Options.FetchWait and the caller's deadline. A token that is still valid
// is not held back for a delivery that cannot come (no quorum, nobody
// holds the grant, this instance's definition differs): it is served at
// once; otherwise the wait ends while half of its remaining life is left,
// and then it is served.
func (d *Daemon) fleetFetch(ctx context.Context, g *grant) (*store.Token, error) {
	_, p := d.config()
	wait := d.opts.FetchWait
	if t, now := g.cur.Load(), d.clock.Now(); usable(now, t, p) && g.tokenFits(t) {
		if !d.fleetCanDeliver(g) {
			return t, nil
		}
		wait = min(wait, expiryOf(t, p).Sub(now)/2)
	}
	if err := d.fleetCutOff(g); err != nil {
		// Nothing can come: not through the watch, and this instance
		// cannot take the grant over. Waiting would only make the
		// caller's answer late.
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	poll := time.NewTicker(fleetTakeoverPoll)
	defer poll.Stop()
	for {
		ch := d.fleet.waiter(g.name)
		t := g.cur.Load()
		now := d.clock.Now()
		switch {
		case usable(now.Add(fetchMargin(t, p)), t, p) && g.tokenFits(t):
			return t, nil
		case t.State == api.StateReauthorizationRequired || !g.renewable(t):
			if usable(now, t, p) {
				return t, nil
			}
			return nil, errNeedsPerson(g, t)
		case d.fleetHolds(g):
			// Taken over while waiting: refresh here, the usual way.
			return d.fetch(ctx, g)
		}
		if err := d.fleetCutOff(g); err != nil {
			return nil, err
		}
		select {
		case <-ch:
		case <-poll.C:
		case <-wctx.Done():
			if t := g.cur.Load(); usable(d.clock.Now(), t, p) && g.tokenFits(t) {
				return t, nil
			}
			return nil, &engineError{Kind: kindUnavailable, Code: api.CodeTemporarilyUnavailable, Description: d.fleetWhy(g, "the token has expired and no new one arrived in time"), Err: wctx.Err()}
		}
	}
}

// fleetCutOff returns the error a fetch of g's expired token gets at once
// on an instance cut off from the fleet (etcd without a quorum, or this
// instance's lease lost): no token can come through the watch, nor from a
// refresh here. It returns nil otherwise. The answer carries Retry-After:
// a lease's life, by when the instance has its lease again or another
// instance holds the grant.
func (d *Daemon) fleetCutOff(g *grant) error {
	h := d.fleet.fl.Health()
	if h.Quorum && h.LeaseOK {
		return nil
	}
	why := "the token has expired: " + fleetPausedError
	if h.Quorum {
		why = "the token has expired: fleet: this instance has lost its etcd lease and refreshes nothing until it has a new one"
	}
	cfg, _ := d.config()
	return &engineError{Kind: kindUnavailable, Code: api.CodeTemporarilyUnavailable, Description: why,
		RetryAfter: max(time.Second, cfg.Store.Etcd.LeaseTTL)}
}

// fleetCanDeliver reports whether another instance can be expected to
// deliver a newer token of g through the watch.
func (d *Daemon) fleetCanDeliver(g *grant) bool {
	f := d.fleet
	if h := f.fl.Health(); !h.Quorum || !h.WatchOK {
		return false
	}
	info := f.fl.GrantInfo(g.name)
	return info.Owner != "" && info.Conflict == ""
}

// fleetWhy says why this instance does not refresh g, after what.
func (d *Daemon) fleetWhy(g *grant, what string) string {
	f := d.fleet
	if !f.fl.Health().Quorum {
		return what + ": " + fleetPausedError
	}
	info := f.fl.GrantInfo(g.name)
	switch {
	case info.Conflict != "":
		return what + ": this instance's definition of the grant differs from the fleet's (" + info.Conflict + ")"
	case info.Owner == "":
		return what + ": no instance holds the grant's refresh lease yet"
	case info.Held:
		return what
	}
	return what + ": instance " + info.Owner + " refreshes this grant"
}

// fleetStatus adds the fleet's view of g to its status.
func (d *Daemon) fleetStatus(g *grant, s *api.GrantStatus) {
	f := d.fleet
	if f == nil {
		return
	}
	info := f.fl.GrantInfo(g.name)
	s.Refresher, s.RefresherSelf, s.FleetConflict = info.Owner, info.Held, info.Conflict
	if !f.fl.Health().Quorum && g.renewable(g.cur.Load()) {
		s.LastError, s.LastErrorCode = fleetPausedError, "fleet_unavailable"
	}
}
