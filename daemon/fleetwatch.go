package daemon

import (
	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/store"
)

// fleetDelivered publishes a record another instance wrote (Watch).
func (d *Daemon) fleetDelivered(t store.Token) {
	g := d.grant(t.Grant)
	if g == nil {
		return
	}
	if !d.fleetAccept(g, &t, "delivered") {
		return
	}
	d.fleetPublish(g, t)
}

// fleetAccept reports whether the fleet's record t may replace the token g
// holds. The store authenticates every record, but someone who may write
// to etcd can still put back an older value of it (etcd keeps old
// revisions until compaction): served, it would roll the grant back to a
// token the provider has expired or revoked, and its refresh token, used
// by the next refresher, would make the provider revoke the chain. So a
// record is taken only with a newer generation, or with the same one and
// the same token set (a change of state, failures or authorization
// outcome), or emptied at the same generation (a revocation). A token
// this instance obtained but never saved (dirty) yields to the fleet's
// record of its generation. A refused record is logged once per
// generation of the grant and counted; the token held is kept, and the
// owner's next write goes over the record (the store noted its revision).
func (d *Daemon) fleetAccept(g *grant, t *store.Token, how string) bool {
	cur := g.cur.Load()
	if isEmpty(cur) || t.Generation > cur.Generation {
		return true
	}
	if t.Generation == cur.Generation && (g.dirty.Load() || sameTokenSet(cur, t) || (t.AccessToken == "" && t.RefreshToken == "")) {
		return true
	}
	// Logged before it is counted: whoever sees the count finds the line.
	if g.refusedGen.Swap(t.Generation+1) != t.Generation+1 {
		d.log.Warn("fleet: refused a token record older than the token held (replayed in etcd?); keeping the token held",
			"grant", g.name, "how", how, "record_generation", t.Generation, "held_generation", cur.Generation)
	}
	if m := d.fleet.metrics; m != nil {
		m.ObserveRefusedRecord()
	}
	return false
}

// sameTokenSet reports whether a and b carry the same tokens and the same
// lifetimes.
func sameTokenSet(a, b *store.Token) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken && a.IDToken == b.IDToken &&
		a.DPoPKey == b.DPoPKey && a.TokenType == b.TokenType && a.Scope == b.Scope &&
		a.Expiry.Equal(b.Expiry) && a.RefreshExpiry.Equal(b.RefreshExpiry)
}

// fleetPublish makes the fleet's record t the grant's token, as a local
// refresh would.
func (d *Daemon) fleetPublish(g *grant, t store.Token) {
	_, p := d.config()
	now := d.clock.Now()
	if t.State == api.StateRefreshing {
		t.State = api.StateValid
	}
	if t.State == api.StateValid && !usable(now, &t, p) {
		t.State = api.StateExpired
	}
	prior := g.cur.Load()
	g.dirty.Store(false) // the fleet's record supersedes one this instance failed to save
	d.publish(g, &t, p)
	d.publishMetrics(g.name, &t, p)
	if t.State == api.StateValid && t.AccessToken != "" && t.AccessToken != prior.AccessToken {
		d.emitObtained(g, prior.State, &t) // hooks
	} else {
		d.emitTransition(g, prior.State, &t) // hooks
	}
	d.fleet.notify(g.name)
}

// waiter returns a channel closed when the watch next delivers grant.
func (f *fleetRT) waiter(grant string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.waiters[grant]
	if !ok {
		ch = make(chan struct{})
		f.waiters[grant] = ch
	}
	return ch
}

func (f *fleetRT) notify(grant string) {
	f.mu.Lock()
	ch, ok := f.waiters[grant]
	delete(f.waiters, grant)
	f.mu.Unlock()
	if ok {
		close(ch)
	}
}
