package daemon

// A grant at run time: its configuration, the token fetches serve and
// what the scheduler and the refresher keep of it.

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/sink"
	"github.com/tokend/tokend/store"
)

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

// cfg returns the grant's section of the configuration it was built
// from (a copy; the zero Grant for a grant built without one, in tests).
func (g *grant) cfg() config.Grant {
	if g.conf == nil {
		return config.Grant{}
	}
	return g.conf.Grants[g.name]
}

// tokenState is a grant's token and what the scheduler needs of it. A
// reload replaces the grant's configuration but keeps its tokenState, so
// a refresh that was running under the old configuration still lands
// where fetches look. The fields the scheduler reads of every grant on
// every tick are a tickState of their own (scheduler.go), allocated apart
// in one dense slice.
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

// isEmpty reports whether t is the placeholder of a grant that has no record.
func isEmpty(t *store.Token) bool {
	return t == nil || (t.Generation == 0 && t.AccessToken == "" && t.State == "" && t.Auth == "")
}
