package daemon

// Fleet mode: when the Store is also a Fleet (store.backend: etcd),
// several tokend instances share their grants, and exactly one of them
// refreshes each grant at a time. This file (the runtime: start, the
// grants announced, the watch, the scheduler's tick) and the files named
// below are the daemon's side of it; the rest of the daemon calls in there
// behind a nil check of d.fleet, so the single-host path does no extra
// work per fetch or per tick.
//
//   - Fingerprints (fingerprint.go): each grant's definition that matters
//     to the provider is hashed and given to SetGrants at start and after
//     every reload; an instance whose definition differs is told so
//     (GrantInfo.Conflict) and the store's Holds is false for it there.
//   - Refreshing only when held (fleetrefresh.go; the writes and what a fenced
//     one means, fleetwrite.go): the scheduler queues a due grant only when
//     Holds(grant, margin), and every request of a refresh round checks it
//     again just before it is sent. margin is the request's own timeout
//     (refresh.timeout, but at most half the lease TTL in fleet mode) plus a
//     tenth of the lease TTL for the clocks and the store's view of its lease:
//     a request is sent only when it ends, answered or timed out, before the
//     lease can lapse. What remains is a pause of the process longer than the
//     lease in the middle of a request (SIGSTOP, a VM frozen): its write is
//     then fenced (store.ErrFenced), the token it obtained is dropped and the
//     other instance's chain wins (a record that does not decode is no chain:
//     the token is kept); a provider with reuse detection may then revoke the
//     chain, which shows as reauthorization_required the usual way.
//   - Serving (the watch, fleetwatch.go; fetches and status on an instance
//     that does not refresh the grant, fleetserve.go; start pages,
//     fleetstart.go): every instance serves every grant from memory. Watch
//     delivers the records others write and they are published exactly as a
//     local refresh would (cur, index, sinks, hooks, metrics). A fetch of an
//     expired token on an instance that does not refresh the grant waits for
//     the watch to deliver the new one, never for etcd; on an instance cut off
//     from the fleet (no quorum, or its lease lost) it is answered at once
//     (503, with the reason and Retry-After).
//   - Quorum loss: Holds is false everywhere, so nothing is refreshed;
//     valid tokens are served until they expire, status says why
//     (fleetPausedError), the metrics and alert rules show it, and it
//     resumes by itself once the store's health says quorum is back.

import (
	"context"
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
func (d *Daemon) goFleetSetGrants(ctx context.Context) {
	if d.fleet == nil || !d.inflight.enter() {
		return
	}
	go func() {
		defer d.inflight.leave()
		d.fleetSetGrants(ctx)
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

// stopping is the context that ends as shutdown begins (Background before
// Run set it, as in tests that tick a daemon that does not run).
func (d *Daemon) stopping() context.Context {
	if d.stopCtx == nil {
		return context.Background()
	}
	return d.stopCtx
}

// fleetSetGrants gives the fleet this instance's grants and fingerprints.
func (d *Daemon) fleetSetGrants(ctx context.Context) {
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
	if err := f.fl.SetGrants(ctx, fps); err != nil {
		f.setAgain.Store(true)
		if ctx.Err() != nil {
			return // shutting down
		}
		d.log.Error("fleet: announcing this instance's grants failed; retrying on the next tick", "err", err)
		return
	}
	f.setAgain.Store(false)
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
		d.fleetSetGrants(d.stopping())
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
