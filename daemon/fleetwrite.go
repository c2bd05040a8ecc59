package daemon

import (
	"errors"

	"github.com/tokend/tokend/store"
)

// fleetFenced handles a write the fleet refused because another instance
// holds or has written the grant: the token this instance obtained is not
// served; the record in the store (the other instance's chain) is. It
// reports whether err was such a refusal.
//
// A record that does not decode is no chain to yield to: the token this
// instance obtained (perhaps with a rotated refresh token the provider
// will not take back) is kept, served and written again on the next tick,
// as for any failed write, and fleetFenced reports false.
func (d *Daemon) fleetFenced(g *grant, err error) bool {
	if d.fleet == nil || !errors.Is(err, store.ErrFenced) {
		return false
	}
	if m := d.fleet.metrics; m != nil {
		m.ObserveFencedWrite()
	}
	t, rerr := d.st.Token(g.name)
	if errors.Is(rerr, store.ErrCorrupt) {
		d.warnLimited("fleet fenced undecodable "+g.name, "fleet: write of a refreshed token fenced by a record that does not decode; keeping the token obtained and writing it again",
			"grant", g.name, "instance", d.fleet.fl.Instance())
		return false
	}
	if rerr == nil && !d.fleetAccept(g, &t, "read after a fenced write") {
		// A record older than the token held (replayed) is no chain to
		// yield to either: the token obtained is kept and written again.
		return false
	}
	g.dirty.Store(false)
	d.warnLimited("fleet fenced "+g.name, "fleet: write of a refreshed token fenced: another instance holds or has written this grant; its token is served instead",
		"grant", g.name, "instance", d.fleet.fl.Instance(), "refresher", d.fleet.fl.GrantInfo(g.name).Owner)
	// The watch delivers the winner too; reading it here serves it at
	// once. A failed read leaves the current token: it is still what was
	// served before this refresh.
	if rerr == nil {
		d.fleetPublish(g, t)
	} else {
		d.warnLimited("fleet fenced read "+g.name, "fleet: reading the grant after a fenced write", "grant", g.name, "err", rerr)
		d.metrics.SetState(g.name, g.stateOf(g.cur.Load()))
	}
	return true
}

// putToken writes n (and a) as a refresh does. In fleet mode a write
// fenced against a record older than the token held (a replay, which
// fleetAccept refuses) is tried once more: reading that record noted its
// revision, so the write goes over it, and the token just obtained (its
// refresh token maybe rotated already) is not dropped for a replay.
func (d *Daemon) putToken(g *grant, n store.Token, a *store.Attempt) error {
	err := d.st.PutToken(n, a)
	if d.fleet == nil || !errors.Is(err, store.ErrFenced) {
		return err
	}
	if t, rerr := d.st.Token(g.name); rerr == nil && t.Generation < n.Generation && !d.fleetAccept(g, &t, "found by a fenced write") {
		err = d.st.PutToken(n, a)
	}
	return err
}

// putAuthorized writes a token set a person's authorization or an
// operator's revocation produced: in fleet mode from whichever instance
// received it, fenced only on the record's revision. Such a set replaces
// whatever chain the grant had, so a write fenced because this instance
// had not yet seen the newest record (the watch lags) is tried once more
// after reading it.
func (d *Daemon) putAuthorized(t store.Token, a *store.Attempt) error {
	if d.fleet == nil {
		return d.st.PutToken(t, a)
	}
	err := d.fleet.fl.PutAuthorized(t, a)
	if errors.Is(err, store.ErrFenced) {
		if _, rerr := d.st.Token(t.Grant); rerr == nil || errors.Is(rerr, store.ErrNotFound) {
			err = d.fleet.fl.PutAuthorized(t, a)
		}
	}
	return err
}

// putOutcome writes the outcome of a failed authorization onto the grant's
// current record. Unlike putAuthorized it is not tried again when fenced:
// the record it copies may be older than the fleet's, which must win.
func (d *Daemon) putOutcome(t store.Token) error {
	if d.fleet == nil {
		return d.st.PutToken(t, nil)
	}
	return d.fleet.fl.PutAuthorized(t, nil)
}
