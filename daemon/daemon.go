package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/tokend/tokend/store"
)

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
