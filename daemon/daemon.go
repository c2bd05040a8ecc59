package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/hook"
	"github.com/tokend/tokend/internal/gcburst"
	"github.com/tokend/tokend/sink"
	"github.com/tokend/tokend/store"
)

// Metrics receives what the engine measures. *metrics.Metrics implements
// it (and what package server counts: fetches, listeners).
type Metrics interface {
	ObserveRefresh(grant, result string, d time.Duration)
	// ObserveAttempt counts one request for a new token as it returns;
	// SetFailures exports the failed requests since the last success.
	ObserveAttempt(grant, result string)
	SetFailures(grant string, n int)
	// ObserveProviderRequest counts one HTTP request to a provider by
	// endpoint and outcome (status code or transport class).
	ObserveProviderRequest(provider, endpoint, code string)
	SetExpiry(grant string, access, refresh time.Time)
	SetLastSuccess(grant string, t time.Time)
	SetState(grant, state string)
	Forget(grant string)
}

// Notifier tells a service manager how the daemon is doing (systemd's
// sd_notify). Every method must be cheap and safe to call when no manager
// listens.
type Notifier interface {
	Ready() error
	Reloading() error
	Status(msg string) error
	Stopping() error
	Watchdog() error
}

// Options are the daemon's collaborators. Zero values mean the real thing.
type Options struct {
	Logger   *slog.Logger
	Clock    Clock
	Metrics  Metrics
	Notifier Notifier
	// WatchdogInterval is how often the scheduler loop must ping the
	// Notifier; 0 disables the watchdog.
	WatchdogInterval time.Duration
	// HTTPClient speaks to providers; nil means one with Refresh.Timeout.
	// It must not retry: the refresher's backoff is the only retry.
	HTTPClient *http.Client
	// OpenStore opens the store Run keeps state in, from the
	// configuration's store section; nil means the bbolt file of package
	// store (openStore, storage.go). Another backend plugs in here: see
	// Store for what it must guarantee.
	OpenStore func(config.Store, *slog.Logger) (Store, error)
	// FetchWait caps how long a fetch of an expired token waits for its
	// refresh; 0 means 30 s.
	FetchWait time.Duration
	// LoadConfig reads the configuration file again, for ReloadConfig
	// (SIGHUP, POST /v1/reload); nil when there is no file (tokend dev).
	LoadConfig func() (*config.Config, []string, error)
}

// Frontend is what accepts the host's connections for the engine:
// package server's Servers, which cmd/tokend builds over the Daemon. Run
// binds it once the store is open and the tokens are loaded, serves it
// before telling the service manager it is ready, and shuts it down as
// shutdown begins, before refreshes in flight are drained and the store
// closes.
type Frontend interface {
	// Listen binds every listener cfg configures; when one fails, none
	// stays bound.
	Listen(cfg *config.Config) error
	// Serve serves the listeners until Shutdown returns (a proxy until
	// ctx ends).
	Serve(ctx context.Context) error
	// Shutdown stops accepting and waits for the requests being served,
	// until ctx ends.
	Shutdown(ctx context.Context)
	// SocketAddr, CallbackAddr and MetricsAddr are the bound addresses
	// ("" for a listener that is off).
	SocketAddr() string
	CallbackAddr() string
	MetricsAddr() string
}

// Daemon is the engine of the running process: it owns the store, the
// grants' current tokens and the scheduler; its Frontend owns the
// listeners. Create with New, run with Run.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	clock    Clock
	metrics  Metrics
	notifier Notifier
	hc       *http.Client
	selfUID  uint32
	epoch    time.Time // origin of grant.dueAt and grant.validUntil

	mu        sync.RWMutex // guards the fields below, replaced on reload
	cfg       *config.Config
	policy    Policy
	sched     cron.Schedule
	grants    map[string]*grant
	ordered   []*grant      // the same grants sorted by name; never modified, replaced on reload
	states    []*tokenState // ordered[i].tokenState
	ticks     []*tickState  // ordered[i].tickState, for the scheduler's walk
	scheduled []*grant      // the grants with a schedule of their own
	clients   map[string]*clientRT
	providers map[string]*providerRT
	operators access
	// dependents are the token_exchange grants of each subject or actor
	// grant (exchange.go).
	dependents map[string][]*grant

	st    Store
	fleet *fleetRT // fleet mode (fleet.go); nil when st is not a Fleet
	sf    singleflight.Group
	queue workQueue

	baseCtx   context.Context // provider requests run under it; cancelled after a grace period at shutdown
	stopCtx   context.Context // cancelled as shutdown begins: ends backoff waits at once
	inflight  inflightGroup   // refreshes and device polls running
	lastPrune time.Time       // scheduler goroutine only
	running   atomic.Bool
	started   chan struct{}

	// addresses the Frontend bound: the callback's is where authorizations
	// return; both are for tests and the dev banner
	addrMu       sync.Mutex
	callbackAddr string
	metricsAddr  string

	starts startPages // one-time start pages of authorizations (authorize.go)
	fb     feedback   // step-ups and rejected tokens that programs reported (stepup.go)

	reloadMu sync.Mutex // one ReloadConfig at a time (reload.go)

	hooks  *hook.Set  // hooks.go
	warns  logLimiter // warnings that events repeat (ratelog.go)
	sinkMu sync.Mutex // guards sinks (sinks.go)
	sinks  sinkSet
}

// grant is the runtime of one configured grant. cur is the token fetches
// serve: it is replaced whole (never modified in place), so readers load it
// without locks and never wait on a refresh or the store.
type grant struct {
	*tokenState

	name string
	// conf is the configuration the grant was built from (by New or
	// Reload); its section is conf.Grants[name], read through cfg. The
	// daemon keeps no copy of it: a config.Grant is over 500 bytes, and
	// a copy per grant beside the configuration's own was 57 MB of the
	// daemon's memory at 100,000 grants. typ and dpopOn are cached from
	// it for the fetch path.
	conf     *config.Config
	typ      string
	dpopOn   bool
	readers  access
	schedule cron.Schedule // forced refresh; nil when none
	// dpop caches the parsed DPoP key of the current token set (dpop.go).
	dpop atomic.Pointer[dpopKey]
	// sourceMoved: the grant this token_exchange grant exchanges got a
	// new token or lost it (exchange.go); the next refresh says why.
	sourceMoved atomic.Bool

	mu         sync.Mutex // guards the fields below (scheduler and refresher)
	nextForced time.Time
	lastLogged string // the last failure logged, so a repeat is logged once
}

// tokenState is a grant's token and what the scheduler needs of it. A
// reload replaces the grant's configuration but keeps its tokenState, so
// a refresh that was running under the old configuration still lands
// where fetches look. The fields the scheduler reads of every grant on
// every tick are a tickState of their own (scheduler.go), allocated apart
// in one dense slice.
// cfg returns the grant's section of the configuration it was built
// from (a copy; the zero Grant for a grant built without one, in tests).
func (g *grant) cfg() config.Grant {
	if g.conf == nil {
		return config.Grant{}
	}
	return g.conf.Grants[g.name]
}

type tokenState struct {
	// *tickState holds dueAt, validUntil and dirty: cur indexed for the
	// scheduler, and whether cur is durable.
	*tickState
	cur        atomic.Pointer[store.Token]
	jitter     atomic.Pointer[jitterCache]
	queued     atomic.Bool
	backingOff atomic.Bool // a refresh waits to retry after a transient failure
	// refusedGen is 1 + the generation of the last fleet record refused
	// as older than the token held (fleetAccept): it is logged once.
	refusedGen atomic.Uint64
	// lastOnDemand is when a fetch last started a refresh (Unix
	// nanoseconds of the daemon's clock; 0: never), for the on-demand
	// bound (mayRefreshOnDemand).
	lastOnDemand atomic.Int64
	// endRound, set while a refresh round runs, ends it at its next wait:
	// an operator's revoke or a person's authorization must not queue
	// behind a round that may back off until the token expires.
	endRound atomic.Pointer[context.CancelFunc]

	// op serialises everything that replaces the token set: refreshes,
	// authorizations, revocations. Fetches never take it.
	op sync.Mutex

	// sinks are the workers of the grant's file sinks (sinks.go); publish
	// offers them every token it publishes.
	sinks atomic.Pointer[[]*sink.Worker]
}

type jitterCache struct {
	generation uint64
	value      float64
}

// jitterFor returns jitterOf(g.name, generation), computed once per
// generation: the scheduler asks for every due grant.
func (g *grant) jitterFor(generation uint64) float64 {
	if c := g.jitter.Load(); c != nil && c.generation == generation {
		return c.value
	}
	v := jitterOf(g.name, generation)
	g.jitter.Store(&jitterCache{generation, v})
	return v
}

const (
	never    = math.MaxInt64
	earliest = math.MinInt64
)

// publish makes t the token fetches serve and indexes it for the scheduler.
// Every caller publishes after the token set is committed to the store (or
// its write failed and it is served from memory), so a sink never holds a
// token the store does not.
func (d *Daemon) publish(g *grant, t *store.Token, p Policy) {
	prev := g.cur.Swap(t)
	d.index(g, t, p)
	g.offerSinks(t, p)
	d.followSource(g, prev, t)
}

func (d *Daemon) index(g *grant, t *store.Token, p Policy) {
	at, why := nextDue(t, p, g.jitterFor(t.Generation), g.renewable(t))
	switch {
	case why == "":
		g.dueAt.Store(never)
	case at.IsZero():
		g.dueAt.Store(earliest)
	default:
		g.dueAt.Store(int64(at.Sub(d.epoch)))
	}
	if t.AccessToken == "" {
		g.validUntil.Store(earliest)
	} else {
		g.validUntil.Store(int64(expiryOf(t, p).Sub(d.epoch)))
	}
}

// exclusive runs fn while holding g.op. A refresh round that holds it is
// told to end first: what fn writes supersedes it.
func (g *grant) exclusive(fn func() error) error {
	if end := g.endRound.Load(); end != nil {
		(*end)()
	}
	g.op.Lock()
	defer g.op.Unlock()
	return fn()
}

// New checks cfg and builds a daemon; nothing is opened until Run. The
// daemon keeps cfg and reads each grant's section from it: cfg must not
// change afterwards (Reload takes a new one).
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	if opts.Notifier == nil {
		opts.Notifier = nopNotifier{}
	}
	if opts.FetchWait == 0 {
		opts.FetchWait = 30 * time.Second
	}
	if opts.OpenStore == nil {
		opts.OpenStore = openStore
	}
	d := &Daemon{
		opts:     opts,
		log:      opts.Logger,
		clock:    opts.Clock,
		metrics:  opts.Metrics,
		notifier: opts.Notifier,
		selfUID:  uint32(os.Geteuid()),
		epoch:    opts.Clock.Now(),
		started:  make(chan struct{}),
	}
	d.queue.init()
	d.hooks = d.newHooks()
	if err := d.configure(cfg); err != nil {
		return nil, err
	}
	d.hc = opts.HTTPClient
	if d.hc == nil {
		// Keep as many idle connections per provider as refreshes run at
		// once; the default of 2 makes a refresh storm dial (and leave in
		// TIME_WAIT) a connection per refresh.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(cfg.Refresh.Concurrency, 2)
		tr.MaxIdleConns = max(tr.MaxIdleConns, tr.MaxIdleConnsPerHost)
		d.hc = &http.Client{Timeout: cfg.Refresh.Timeout, Transport: tr}
	}
	return d, nil
}

// configure builds the runtime of cfg, keeping the current token of every
// grant that stays. It is used at start and on reload.
func (d *Daemon) configure(cfg *config.Config) error {
	sched := cfg.Refresh.Schedule
	if sched.IsZero() {
		return errors.New("daemon: refresh.schedule is not set (config.ApplyDefaults sets it)")
	}
	ops, err := resolveAccess(cfg.Operators)
	if err != nil {
		return fmt.Errorf("daemon: operators: %w", err)
	}
	providers := make(map[string]*providerRT, len(cfg.Providers))
	for name, p := range cfg.Providers {
		providers[name] = &providerRT{name: name, cfg: p}
	}
	clients := make(map[string]*clientRT, len(cfg.Clients))
	for name, c := range cfg.Clients {
		if _, ok := providers[c.Provider]; !ok {
			return fmt.Errorf("daemon: clients.%s.provider: unknown provider %q", name, c.Provider)
		}
		clients[name] = &clientRT{name: name, cfg: c}
	}
	d.mu.RLock()
	old := d.grants
	d.mu.RUnlock()
	now := d.clock.Now()
	grants := make(map[string]*grant, len(cfg.Grants))
	for name, gc := range cfg.Grants {
		if _, ok := clients[gc.Client]; !ok {
			return fmt.Errorf("daemon: grants.%s.client: unknown client %q", name, gc.Client)
		}
		readers, err := resolveAccess(gc.Readers)
		if err != nil {
			return fmt.Errorf("daemon: grants.%s.readers: %w", name, err)
		}
		g := &grant{name: name, conf: cfg, typ: gc.Type, dpopOn: gc.DPoP, readers: readers}
		if !gc.Schedule.IsZero() {
			g.schedule = gc.Schedule
			g.nextForced = g.schedule.Next(now)
		}
		grants[name] = g
	}
	ordered := make([]*grant, 0, len(grants))
	for _, g := range grants {
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *grant) int { return strings.Compare(a.name, b.name) })
	fresh := make([]tokenState, len(ordered))
	freshTicks := make([]tickState, len(ordered))
	states := make([]*tokenState, len(ordered))
	ticks := make([]*tickState, len(ordered))
	var scheduled []*grant
	p := policyOf(cfg.Refresh)
	for i, g := range ordered {
		if prev, ok := old[g.name]; ok {
			g.tokenState = prev.tokenState
			// Re-indexed under the new policy; a permanent failure gets
			// another chance, since the configuration may have fixed it.
			t := clearPermanent(g.cur.Load())
			if newSubjectToken(prev, g) {
				t = retryRefused(t)
			}
			d.publish(g, t, p)
		} else {
			g.tokenState = &fresh[i]
			g.tickState = &freshTicks[i]
			d.publish(g, emptyToken(g.name), p)
		}
		if missingSource(g, grants) || !g.tokenFits(g.cur.Load()) {
			// Its subject (or actor) grant is gone, or dpop was turned
			// on or off: the next tick shows why or gets a token of the
			// right kind, instead of the token lasting out its lifetime.
			g.dueAt.Store(earliest)
		}
		states[i] = g.tokenState
		ticks[i] = g.tickState
		if g.schedule != nil {
			scheduled = append(scheduled, g)
		}
	}
	d.mu.Lock()
	d.cfg = cfg
	d.policy = policyOf(cfg.Refresh)
	d.sched = sched
	d.providers = providers
	d.clients = clients
	d.grants = grants
	d.dependents = dependentsOf(grants)
	d.ordered = ordered
	d.states = states
	d.ticks = ticks
	d.scheduled = scheduled
	d.operators = ops
	d.mu.Unlock()
	d.configureHooks(cfg)
	for name := range old {
		if _, ok := grants[name]; !ok {
			d.metrics.Forget(name)
		}
	}
	return nil
}

// clearPermanent lets a reload retry a grant that stopped on a permanent
// error: the configuration that caused it may have been fixed.
func clearPermanent(t *store.Token) *store.Token {
	switch t.State {
	case api.StateCredentialsError, api.StateConfigurationError:
		c := *t
		c.State = api.StateFailing
		return &c
	}
	return t
}

// Reload applies a new configuration without dropping stored tokens. As
// with New, cfg is kept and must not change afterwards.
func (d *Daemon) Reload(cfg *config.Config) error {
	_ = d.notifier.Reloading()
	defer func() { _ = d.notifier.Ready() }()
	if err := d.configure(cfg); err != nil {
		return err
	}
	if d.running.Load() {
		d.loadTokens()
		d.syncSinks()
		d.fleetSetGrants(d.stopping())
	}
	d.log.Info("configuration reloaded", "grants", len(cfg.Grants))
	d.queue.kick()
	return nil
}

// Started is closed once the store is open and every listener listens.
func (d *Daemon) Started() <-chan struct{} { return d.started }

// CallbackAddr and MetricsAddr return the bound addresses (after Started).
func (d *Daemon) CallbackAddr() string {
	d.addrMu.Lock()
	defer d.addrMu.Unlock()
	return d.callbackAddr
}
func (d *Daemon) MetricsAddr() string { d.addrMu.Lock(); defer d.addrMu.Unlock(); return d.metricsAddr }

// Ready reports nil when the store is open, the configuration loaded and the
// scheduler running.
func (d *Daemon) Ready() error {
	if !d.running.Load() {
		return errors.New("not running")
	}
	return d.fleetReady()
}

func (d *Daemon) config() (*config.Config, Policy) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.cfg, d.policy
}

func (d *Daemon) grant(name string) *grant {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.grants[name]
}

// grantList returns every grant sorted by name. The slice is shared: callers
// must not modify it.
func (d *Daemon) grantList() []*grant {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.ordered
}

// Run opens the store, binds front's listeners, runs the scheduler and
// serves front until ctx ends, then shuts down in order: listeners stop,
// refreshes finish or are cancelled, the store closes last. A nil front
// runs the engine alone. Cancellation is a clean exit (nil).
func (d *Daemon) Run(ctx context.Context, front Frontend) error {
	cfg, _ := d.config()
	restoreGC := gcburst.Lower(startGCPercent)
	st, err := d.opts.OpenStore(cfg.Store, d.log)
	if err != nil {
		restoreGC()
		return err
	}
	d.st = st
	d.startFleet(st)
	d.inflight.open()
	defer func() {
		if err := st.Close(); err != nil {
			d.log.Error("closing store", "err", err)
		}
	}()
	d.loadTokens()
	restoreGC()
	d.goFleetSetGrants(ctx) // after the load: the campaign does not compete with it
	d.syncSinks()
	defer d.stopSinks()

	if front == nil {
		front = noFrontend{}
	}
	if err := front.Listen(cfg); err != nil {
		return err
	}
	d.addrMu.Lock()
	d.callbackAddr = front.CallbackAddr()
	d.metricsAddr = front.MetricsAddr()
	d.addrMu.Unlock()

	refreshCtx, cancelRefresh := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRefresh()
	d.baseCtx = refreshCtx
	d.stopCtx = ctx

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return front.Serve(gctx) })
	g.Go(func() error { return d.runScheduler(gctx) })
	d.goFleetWatch(g, gctx)
	g.Go(func() error {
		<-gctx.Done()
		_ = d.notifier.Stopping()
		d.running.Store(false)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		front.Shutdown(sctx)
		// Refreshes in flight get a moment to commit what the provider
		// already answered; then they are cancelled, and the store is
		// closed only after the last one returned.
		d.queue.drop()
		done := make(chan struct{})
		go func() { d.inflight.closeAndWait(); close(done) }()
		select {
		case <-done:
		case <-sctx.Done():
			cancelRefresh()
			<-done
		}
		cancelRefresh()
		return nil
	})

	d.running.Store(true)
	close(d.started)
	// Reading and unsealing every token left garbage the size of the store,
	// and the store's pages mapped; hand both back, off the start-up path.
	g.Go(func() error {
		if r, ok := st.(interface{ ReleaseMemory() error }); ok {
			if err := r.ReleaseMemory(); err != nil {
				d.log.Debug("releasing the store's mapped pages", "err", err)
			}
		}
		debug.FreeOSMemory()
		return nil
	})
	_ = d.notifier.Ready()
	d.notifyStatus()
	d.log.Info("tokend started", "socket", front.SocketAddr(), "callback", d.CallbackAddr(), "metrics", d.MetricsAddr(), "grants", len(cfg.Grants), "store", d.storeDesc(cfg))
	err = g.Wait()
	d.flushDirty()
	d.stopHooks()
	d.log.Info("tokend stopped")
	return err
}

// startGCPercent is the garbage collector's GOGC while Run opens the
// store and loads every token (gcburst.Lower: a lower GOGC, or GOGC=off,
// chosen by whoever runs the daemon is kept). Loading is a burst in which the live heap
// only grows (each token read is kept) while the records' garbage comes
// and goes; at the default of 100 the heap may grow to twice what was
// live at the last collection before the load ended, memory the daemon
// never needs again. At 100,000 grants that was most of the start-up peak
// above the steady state (see BENCHMARKS.md). At 50 the heap stays within
// 1.5 times what is live, for about one more collection during the load.
const startGCPercent = 50

// flushDirty makes a last attempt to save tokens held only in memory (their
// write failed): after a restart the stored, older refresh token may
// already be dead at the provider.
func (d *Daemon) flushDirty() {
	for _, g := range d.grantList() {
		if !g.dirty.Load() {
			continue
		}
		d.persistDirty(g)
		if g.dirty.Load() {
			d.log.Error("token obtained but never saved; it is lost at exit and the grant may need authorizing again", "grant", g.name)
		}
	}
}

// loadTokens reads every stored token into memory. A grant already holding
// a token keeps the newer of the two generations.
func (d *Daemon) loadTokens() {
	_, p := d.config()
	now := d.clock.Now()
	err := d.st.EachToken(func(t *store.Token) error {
		g := d.grant(t.Grant)
		if g == nil {
			return nil
		}
		if cur := g.cur.Load(); !isEmpty(cur) && cur.Generation >= t.Generation {
			// Memory is as new or newer (a reload, or a token not yet saved).
			return nil
		}
		if t.State == api.StateRefreshing {
			// The process stopped mid-refresh; the stored token is what was
			// durable before it.
			t.State = api.StateValid
		}
		if t.State == api.StateValid && !usable(now, t, p) {
			t.State = api.StateExpired
		}
		d.publish(g, t, p)
		d.publishMetrics(g.name, t, p)
		return nil
	})
	if err != nil {
		d.log.Error("reading stored tokens", "err", err)
	}
	for _, g := range d.grantList() {
		if t := g.cur.Load(); isEmpty(t) {
			d.metrics.SetState(g.name, g.stateOf(t))
		}
	}
}

// stateOf is t's state, or for a grant never obtained, what it waits for:
// a person (pending_authorization) or its first refresh (expired).
func (g *grant) stateOf(t *store.Token) string {
	switch {
	case t.State != "":
		return t.State
	case g.renewable(t):
		return api.StateExpired
	}
	return api.StatePendingAuthorization
}

func (d *Daemon) publishMetrics(name string, t *store.Token, p Policy) {
	d.metrics.SetState(name, t.State)
	d.metrics.SetFailures(name, t.Failures)
	if t.AccessToken != "" {
		d.metrics.SetExpiry(name, expiryOf(t, p), t.RefreshExpiry)
	}
	if !t.LastSuccess.IsZero() {
		d.metrics.SetLastSuccess(name, t.LastSuccess)
	}
}

// notifyStatus tells the service manager how many grants hold a valid token.
func (d *Daemon) notifyStatus() {
	d.mu.RLock()
	ticks := d.ticks
	d.mu.RUnlock()
	at := int64(d.clock.Now().Sub(d.epoch))
	valid := 0
	for _, ts := range ticks {
		if at < ts.validUntil.Load() {
			valid++
		}
	}
	d.sendStatus(valid, len(ticks))
}

func (d *Daemon) sendStatus(valid, total int) {
	_ = d.notifier.Status(fmt.Sprintf("%d of %d grants hold a valid token", valid, total))
}

// isEmpty reports whether t is the placeholder of a grant that has no record.
func isEmpty(t *store.Token) bool {
	return t == nil || (t.Generation == 0 && t.AccessToken == "" && t.State == "" && t.Auth == "")
}

type nopMetrics struct{}

func (nopMetrics) ObserveRefresh(string, string, time.Duration)  {}
func (nopMetrics) ObserveAttempt(string, string)                 {}
func (nopMetrics) SetFailures(string, int)                       {}
func (nopMetrics) ObserveProviderRequest(string, string, string) {}
func (nopMetrics) SetExpiry(string, time.Time, time.Time)        {}
func (nopMetrics) SetLastSuccess(string, time.Time)              {}
func (nopMetrics) SetState(string, string)                       {}
func (nopMetrics) Forget(string)                                 {}

// noFrontend listens nowhere.
type noFrontend struct{}

func (noFrontend) Listen(*config.Config) error { return nil }
func (noFrontend) Serve(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (noFrontend) Shutdown(context.Context) {}
func (noFrontend) SocketAddr() string       { return "" }
func (noFrontend) CallbackAddr() string     { return "" }
func (noFrontend) MetricsAddr() string      { return "" }

type nopNotifier struct{}

func (nopNotifier) Ready() error        { return nil }
func (nopNotifier) Reloading() error    { return nil }
func (nopNotifier) Status(string) error { return nil }
func (nopNotifier) Stopping() error     { return nil }
func (nopNotifier) Watchdog() error     { return nil }
