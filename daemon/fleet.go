package daemon

// Fleet mode: when the Store is also a Fleet (store.backend: etcd),
// several tokend instances share their grants, and exactly one of them
// refreshes each grant at a time. This file is the daemon's side of it;
// the rest of the daemon calls in here behind a nil check of d.fleet, so
// the single-host path does no extra work per fetch or per tick.
//
//   - Fingerprints: each grant's definition that matters to the provider
//     is hashed and given to SetGrants at start and after every reload;
//     an instance whose definition differs is told so (GrantInfo.Conflict)
//     and the store's Holds is false for it there.
//   - Refreshing only when held: the scheduler queues a due grant only when
//     Holds(grant, margin), and every request of a refresh round checks it
//     again just before it is sent. margin is the request's own timeout
//     (refresh.timeout, but at most half the lease TTL in fleet mode) plus
//     a tenth of the lease TTL for the clocks and the store's view of its
//     lease: a request is sent only when it ends, answered or timed out,
//     before the lease can lapse. What remains is a pause of the process
//     longer than the lease in the middle of a request (SIGSTOP, a VM
//     frozen): its write is then fenced (store.ErrFenced), the token it
//     obtained is dropped and the other instance's chain wins (a record
//     that does not decode is no chain: the token is kept); a provider
//     with reuse detection may then revoke the chain, which shows as
//     reauthorization_required the usual way.
//   - Serving: every instance serves every grant from memory. Watch
//     delivers the records others write and they are published exactly as
//     a local refresh would (cur, index, sinks, hooks, metrics). A fetch of
//     an expired token on an instance that does not refresh the grant
//     waits for the watch to deliver the new one, never for etcd; on an
//     instance cut off from the fleet (no quorum, or its lease lost) it is
//     answered at once (503, with the reason and Retry-After).
//   - Quorum loss: Holds is false everywhere, so nothing is refreshed;
//     valid tokens are served until they expire, status says why
//     (fleetPausedError), the metrics and alert rules show it, and it
//     resumes by itself once the store's health says quorum is back.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// FleetMetrics is what a Metrics adds for fleet mode; *metrics.Metrics
// implements it. The daemon finds it with a type assertion on
// Options.Metrics, so a Metrics without it still works.
type FleetMetrics interface {
	SetFleetHealth(h store.FleetHealth)
	ObserveFencedWrite()
	ObserveRefusedRecord()
	SetFleetConflict(grant string, conflict bool)
}

// fleetPausedError is what status and fetches say while etcd has no quorum.
const fleetPausedError = "fleet: etcd quorum unavailable; not refreshing"

// fleetConflictEvery spaces the scheduler's walk over GrantInfo for the
// conflict gauge and log: a conflict is a configuration matter, not urgent
// to the second, and 100,000 grants need not be walked every tick.
const fleetConflictEvery = 30 * time.Second

// fleetTakeoverPoll is how often a fetch waiting for the watch checks
// whether this instance has meanwhile taken the grant over (real time:
// the wait itself is bounded by Options.FetchWait and the caller).
const fleetTakeoverPoll = 250 * time.Millisecond

// errNotHolder ends a refresh round whose instance no longer holds the
// grant (or lost etcd's quorum) before its next request: nothing was sent,
// nothing is recorded.
var errNotHolder = errors.New("fleet: this instance does not hold the grant's refresh lease")

// fleetRT is the runtime of fleet mode; Daemon.fleet is nil without it.
type fleetRT struct {
	fl      Fleet
	metrics FleetMetrics // nil when Options.Metrics has none

	ready    atomic.Bool // the watch was up once: readyz answers ready
	setAgain atomic.Bool // the last SetGrants failed: the next tick retries
	setMu    sync.Mutex  // one SetGrants at a time (start, reload, tick)

	mu      sync.Mutex
	waiters map[string]chan struct{} // closed when the watch delivers the grant

	// scheduler goroutine only
	lastHealth    store.FleetHealth
	healthSeen    bool
	watchSeen     bool // the watch was up at a tick once
	lastConflicts time.Time
	conflicts     map[string]string
}

// startFleet turns fleet mode on when st is a Fleet, and campaigns for the
// configured grants. Run calls it once the store is open.
func (d *Daemon) startFleet(st Store) {
	fl, ok := st.(Fleet)
	if !ok {
		return
	}
	f := &fleetRT{fl: fl, waiters: map[string]chan struct{}{}, conflicts: map[string]string{}}
	f.metrics, _ = d.metrics.(FleetMetrics)
	d.fleet = f
	d.log.Info("fleet mode", "instance", fl.Instance())
}

// goFleetSetGrants announces the grants in the background, so that the
// instance serves the tokens it loaded without waiting for its campaign
// (seconds for 100,000 grants): until SetGrants returns this instance holds
// nothing and refreshes nothing, which the other instances cover. Run
// calls it once the tokens are loaded (inflight is open); shutdown waits
// for it before the store closes.
func (d *Daemon) goFleetSetGrants() {
	if d.fleet == nil || !d.inflight.enter() {
		return
	}
	go func() {
		defer d.inflight.leave()
		d.fleetSetGrants()
	}()
}

// goFleetWatch runs the watch in g until ctx ends.
func (d *Daemon) goFleetWatch(g *errgroup.Group, ctx context.Context) {
	if d.fleet == nil {
		return
	}
	g.Go(func() error {
		d.fleet.fl.Watch(ctx, d.fleetDelivered)
		return nil
	})
}

// fleetReady is Ready's answer in fleet mode: ready once the initial load
// is done (Run sets running after it) and the watch has been up once. A
// watch that breaks later does not make the instance unready: it still
// serves valid tokens, and the watch metrics and alert say what is wrong.
func (d *Daemon) fleetReady() error {
	f := d.fleet
	if f == nil || f.ready.Load() {
		return nil
	}
	if f.fl.Health().WatchOK {
		f.ready.Store(true)
		return nil
	}
	return errors.New("fleet: the etcd watch is not up yet")
}

// fleetSetGrants gives the fleet this instance's grants and fingerprints.
func (d *Daemon) fleetSetGrants() {
	f := d.fleet
	if f == nil {
		return
	}
	f.setMu.Lock()
	defer f.setMu.Unlock()
	cfg, _ := d.config()
	fps := make(map[string]string, len(cfg.Grants))
	for name := range cfg.Grants {
		fps[name] = Fingerprint(cfg, name)
	}
	if err := f.fl.SetGrants(fps); err != nil {
		f.setAgain.Store(true)
		d.log.Error("fleet: announcing this instance's grants failed; retrying on the next tick", "err", err)
		return
	}
	f.setAgain.Store(false)
}

// Fingerprint hashes what of grant name's definition matters to its
// provider: the provider's issuer and endpoints, the client's identity and
// authentication, the grant's type, scopes, parameters and the grants it
// exchanges. Readers, sinks, hooks, match rules, the forced schedule, the
// redirect URI (each host's callback listener; a refresh does not use it)
// and a registration's client_name are each host's own and are left out,
// as are secrets (a rotated client
// secret must not look like a different grant; the hash must not be a
// check of a secret either).
func Fingerprint(cfg *config.Config, name string) string {
	g := cfg.Grants[name]
	c := cfg.Clients[g.Client]
	p := cfg.Providers[c.Provider]
	type assertion struct {
		Issuer, Subject, Audience, KeyID, SigningAlg string
		Lifetime                                     time.Duration
		Claims                                       map[string]any
	}
	var as *assertion
	if a := g.Assertion; a != nil {
		as = &assertion{a.Issuer, a.Subject, a.Audience, a.KeyID, a.SigningAlg, a.Lifetime, a.Claims}
	}
	// An identity assertion: the identity provider, tokend's client
	// there and what is exchanged (not the subject token itself). Absent
	// from the JSON when unset, so other grants hash as before.
	type identityAssertion struct {
		Issuer, Token, ClientID, AuthMethod string
		SubjectGrant, SubjectType, Audience string
		Resource                            []string
	}
	var ia *identityAssertion
	if a := g.IdentityAssertion; a != nil {
		ic := cfg.Clients[a.Client]
		ip := cfg.Providers[ic.Provider]
		ia = &identityAssertion{ip.Issuer, ip.TokenEndpoint, ic.ClientID, string(ic.AuthMethod),
			a.SubjectGrant, a.SubjectTokenType, a.Audience, a.Resource}
	}
	v := struct {
		Provider                     string
		Issuer, Authz, Token, Revoke string
		Device, Registration         string
		Client, ClientID, AuthMethod string
		KeyID, SigningAlg, AssertAud string
		Type                         string
		Scopes                       []string
		AuthParams, TokenParams      map[string]string
		Username                     string
		DPoP                         bool
		Assertion                    *assertion
		SubjectGrant, SubjectType    string
		ActorGrant, ActorType        string
		RequestedType                string
		Audience, Resource           []string
		IdentityAssertion            *identityAssertion `json:",omitempty"`
	}{
		c.Provider, p.Issuer, p.AuthorizationEndpoint, p.TokenEndpoint, p.RevocationEndpoint,
		p.DeviceAuthorizationEndpoint, p.RegistrationEndpoint,
		g.Client, c.ClientID, string(c.AuthMethod),
		c.KeyID, c.SigningAlg, c.AssertionAudience,
		g.Type, g.Scopes, g.AuthParams, g.TokenParams, g.Username, g.DPoP, as,
		g.SubjectGrant, g.SubjectTokenType, g.ActorGrant, g.ActorTokenType, g.RequestedTokenType,
		g.Audience, g.Resource, ia,
	}
	// encoding/json writes map keys sorted: the same definition always
	// hashes the same.
	b, err := json.Marshal(v)
	if err != nil {
		// Only Assertion.Claims can fail (a value JSON cannot hold);
		// config validation refuses those. Hash what is printable.
		b = fmt.Appendf(nil, "%v", v)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// fleetMargin is the lease time a refresh request needs left when it is
// sent, and fleetRequestTimeout bounds that request (see the file's doc).
func fleetMargin(cfg *config.Config) time.Duration {
	return fleetRequestTimeout(cfg) + cfg.Store.Etcd.LeaseTTL/10
}

func fleetRequestTimeout(cfg *config.Config) time.Duration {
	t := cfg.Refresh.Timeout
	if half := cfg.Store.Etcd.LeaseTTL / 2; half > 0 && (t <= 0 || half < t) {
		t = half
	}
	return t
}

// fleetHolds reports whether this instance may send a refresh of g now.
func (d *Daemon) fleetHolds(g *grant) bool {
	cfg, _ := d.config()
	return d.fleet.fl.Holds(g.name, fleetMargin(cfg))
}

// fleetObtain is obtain in fleet mode: it sends the request only while
// this instance holds the grant with margin to spare, and bounds it so it
// ends before the lease can lapse.
func (d *Daemon) fleetObtain(ctx context.Context, g *grant, cur *store.Token) (*oauth.Token, string, error) {
	if d.fleet == nil {
		return d.obtain(ctx, g, cur)
	}
	if !d.fleetHolds(g) {
		return nil, "", errNotHolder
	}
	cfg, _ := d.config()
	ctx, cancel := context.WithTimeout(ctx, fleetRequestTimeout(cfg))
	defer cancel()
	return d.obtain(ctx, g, cur)
}

// fleetAbandoned ends a refresh round that lost the grant before sending:
// the grant shows what it showed before the round.
func (d *Daemon) fleetAbandoned(g *grant) *store.Token {
	t := g.cur.Load()
	d.metrics.SetState(g.name, g.stateOf(t))
	d.log.Debug("fleet: refresh not sent: this instance no longer holds the grant", "grant", g.name)
	return t
}

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
			return nil, &engineError{kind: kindUnavailable, code: api.CodeTemporarilyUnavailable, desc: d.fleetWhy(g, "the token has expired and no new one arrived in time"), err: wctx.Err()}
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
	return &engineError{kind: kindUnavailable, code: api.CodeTemporarilyUnavailable, desc: why,
		retryAfter: max(time.Second, cfg.Store.Etcd.LeaseTTL)}
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

// fleetExpire marks the tokens that expired while nobody could refresh
// them (no quorum, no holder) as expired, as a failed refresh would have
// done on a single host: status, metrics and hooks must not call a dead
// token valid. quorum is the tick's reading of the fleet's health.
// Scheduler goroutine only.
func (d *Daemon) fleetExpire(now time.Time, quorum bool) {
	_, p := d.config()
	for _, g := range d.grantList() {
		t := g.cur.Load()
		if t.State != api.StateValid || t.AccessToken == "" || usable(now, t, p) {
			continue
		}
		n := *t
		n.State, n.StateSince = api.StateExpired, now
		if !quorum {
			n.LastError, n.LastErrorCode = fleetPausedError, "fleet_unavailable"
		}
		if !g.cur.CompareAndSwap(t, &n) {
			continue // a refresh or the watch replaced it meanwhile
		}
		d.index(g, &n, p)
		d.publishMetrics(g.name, &n, p)
		d.emitTransition(g, t.State, &n) // hooks
	}
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

// fleetRefuseManual refuses an operator's refresh on an instance that does
// not refresh g, naming the one that does.
func (d *Daemon) fleetRefuseManual(g *grant) error {
	if d.fleet == nil || d.fleetHolds(g) {
		return nil
	}
	desc := d.fleetWhy(g, "not refreshed here")
	if info := d.fleet.fl.GrantInfo(g.name); info.Owner != "" && !info.Held && info.Conflict == "" {
		desc += ": run tokend refresh " + g.name + " on " + info.Owner + " (its token reaches this instance through etcd)"
	}
	return newError(kindUnavailable, api.CodeTemporarilyUnavailable, desc)
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

// fleetRegistration takes the fleet-wide lock of c's dynamic registration
// and reads the client record again under it: another instance may have
// registered it meanwhile. It returns the record when one is there (the
// lock already released), else the unlock to call once registered. owner
// is what the record must name (registrationOwner).
func (d *Daemon) fleetRegistration(ctx context.Context, c *clientRT, owner string) (unlock func(), sc store.Client, found bool, err error) {
	unlock, err = d.fleet.fl.Lock(ctx, "register/"+c.name)
	if err != nil {
		return nil, store.Client{}, false, fmt.Errorf("daemon: fleet lock for registering client %s: %w", c.name, err)
	}
	sc, err = d.st.Client(c.name)
	switch {
	case err == nil && sc.Provider == owner && sc.ClientID != "":
		unlock()
		return nil, sc, true, nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		unlock()
		return nil, store.Client{}, false, fmt.Errorf("daemon: reading registered client %s: %w", c.name, err)
	}
	return unlock, store.Client{}, false, nil
}

// fleetTick runs on every scheduler tick in fleet mode: it retries a
// failed SetGrants, exports the fleet's health, logs its changes and,
// every fleetConflictEvery, the grants in conflict.
func (d *Daemon) fleetTick(now time.Time) {
	f := d.fleet
	if f.setAgain.Load() {
		d.fleetSetGrants()
	}
	h := f.fl.Health()
	if m := f.metrics; m != nil {
		m.SetFleetHealth(h)
	}
	if h.WatchOK {
		f.ready.Store(true)
	}
	prev := f.lastHealth
	if !f.healthSeen {
		prev = store.FleetHealth{Quorum: true, LeaseOK: true, WatchOK: true}
	}
	if !f.watchSeen {
		// A watch that has not come up yet is starting, not broken.
		prev.WatchOK = h.WatchOK
		f.watchSeen = h.WatchOK
	}
	f.healthSeen, f.lastHealth = true, h
	switch {
	case prev.Quorum && !h.Quorum:
		d.log.Warn("fleet: etcd quorum lost; serving valid tokens until they expire, not refreshing")
	case !prev.Quorum && h.Quorum:
		d.log.Info("fleet: etcd quorum back; refreshing again")
	}
	switch {
	case prev.LeaseOK && !h.LeaseOK:
		d.log.Warn("fleet: this instance's lease is lost; its grants go to other instances")
	case !prev.LeaseOK && h.LeaseOK:
		d.log.Info("fleet: lease renewed")
	}
	switch {
	case prev.WatchOK && !h.WatchOK:
		d.log.Warn("fleet: the etcd watch is broken; tokens refreshed elsewhere do not arrive until it resumes")
	case !prev.WatchOK && h.WatchOK:
		d.log.Info("fleet: etcd watch resumed")
	}
	d.fleetExpire(now, h.Quorum)
	if now.Sub(f.lastConflicts) >= fleetConflictEvery || f.lastConflicts.IsZero() {
		f.lastConflicts = now
		d.fleetConflicts()
	}
}

// fleetConflicts exports and logs the grants whose definition here differs
// from the fleet's. Scheduler goroutine only.
func (d *Daemon) fleetConflicts() {
	f := d.fleet
	seen := make(map[string]bool, len(f.conflicts))
	for _, g := range d.grantList() {
		c := f.fl.GrantInfo(g.name).Conflict
		if c == "" {
			continue
		}
		seen[g.name] = true
		if f.conflicts[g.name] != c {
			d.log.Warn("fleet: this instance's definition of the grant differs from the fleet's; not refreshing it here", "grant", g.name, "conflict", c)
			f.conflicts[g.name] = c
			if m := f.metrics; m != nil {
				m.SetFleetConflict(g.name, true)
			}
		}
	}
	gone := make([]string, 0)
	for name := range f.conflicts {
		if !seen[name] {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		delete(f.conflicts, name)
		if m := f.metrics; m != nil {
			m.SetFleetConflict(name, false)
		}
		d.log.Info("fleet: the grant's definition agrees with the fleet's again", "grant", name)
	}
}

// registeredClient is the oauth.Client of a stored registration.
func registeredClient(sc store.Client) oauth.Client {
	return oauth.Client{
		ID:          sc.ClientID,
		Secret:      oauth.NewSecret(sc.ClientSecret),
		AuthMethod:  oauth.AuthMethod(sc.AuthMethod),
		RedirectURI: sc.RedirectURI,
	}
}

// storeDesc names the store in the start-up log: the bbolt file, or in
// fleet mode etcd and this instance.
func (d *Daemon) storeDesc(cfg *config.Config) string {
	if d.fleet == nil {
		return cfg.Store.Path
	}
	return "etcd " + cfg.Store.Etcd.Prefix + " as " + d.fleet.fl.Instance()
}
