package daemon

// What the servers' requests need of the engine: a grant the caller may
// see, a token to hand out, a refresh now, a grant's status. Failures are
// *engineError (errors.go); package server turns them into answers.

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// errNeedsOperator refuses an action reserved to operators.
var errNeedsOperator = refusal(kindForbidden, api.CodeForbidden, "this action needs root or an operator group")

// refusal is an access refusal: the caller reached no grant.
func refusal(kind errorKind, code, desc string) error {
	return &engineError{Kind: kind, Code: code, Description: desc, Refusal: true}
}

// operatorOnly refuses p unless p is an operator.
func (d *Daemon) operatorOnly(p peer) error {
	if !d.isOperator(p) {
		return errNeedsOperator
	}
	return nil
}

// access returns the named grant if p may read it, or may act on it when
// write is set (operators only). Callers who are not operators get the
// same refusal for a grant that does not exist as for one they may not
// read, so they learn nothing about other grants.
func (d *Daemon) access(p peer, name string, write bool) (*grant, error) {
	g := d.grant(name)
	op := d.isOperator(p)
	switch {
	case write && !op:
		return nil, errNeedsOperator
	case g == nil && op:
		return nil, refusal(kindNotFound, api.CodeUnknownGrant, "no grant named "+strconv.Quote(name))
	case g == nil || !d.mayRead(p, g):
		return nil, refusal(kindForbidden, api.CodeForbidden, "not allowed to read this grant (or no such grant)")
	}
	return g, nil
}

// fetch returns a token to hand out. A valid token is returned at once;
// in its last moments (fetchMargin) it also starts a refresh for the next
// callers, without waiting for it. An expired token, or one of the wrong
// kind, makes the fetch join the grant's refresh or start one, and wait
// for it at most until the request's deadline. Fetches start refreshes
// only within the on-demand bound (mayRefreshOnDemand). Without a token to
// hand out the error is of kind kindReauthorization or kindUnavailable.
func (d *Daemon) fetch(ctx context.Context, g *grant) (*store.Token, error) {
	_, p := d.config()
	now := d.clock.Now()
	t := g.cur.Load()
	// A token of the other kind (Bearer for a dpop grant, or DPoP-bound
	// for one that no longer is, after a reload) is never handed out.
	fits := g.tokenFits(t)
	if fits && usable(now.Add(fetchMargin(t, p)), t, p) {
		return t, nil
	}
	valid := fits && usable(now, t, p)
	if !g.renewable(t) || t.State == api.StateReauthorizationRequired {
		if valid {
			return t, nil
		}
		return nil, errNeedsPerson(g, t)
	}
	if t.State == api.StateCredentialsError || t.State == api.StateConfigurationError {
		if valid {
			return t, nil
		}
		// The state is the error code: api.CodeCredentialsError or
		// api.CodeConfigurationError.
		return nil, newError(kindUnavailable, t.State, oauth.Printable(t.LastError))
	}
	if d.fleet != nil && !d.fleetHolds(g) {
		return d.fleetFetch(ctx, g)
	}
	if valid {
		// Near its end but valid: served now, and refreshed for the next
		// callers without anyone waiting.
		d.refreshNearExpiry(g, t, p)
		return t, nil
	}
	if g.backingOff.Load() {
		// The provider just failed and the refresh waits to retry: waiting
		// for it would only make the caller's 503 late.
		return nil, newError(kindUnavailable, api.CodeTemporarilyUnavailable,
			"the token has expired and the provider is failing ("+oauth.Printable(t.LastError)+"); tokend is retrying")
	}
	wctx, cancel := context.WithTimeout(ctx, d.opts.FetchWait)
	defer cancel()
	nt, err := d.refreshOnDemand(wctx, g)
	now = d.clock.Now()
	if nt == nil {
		nt = g.cur.Load()
	}
	if nt != nil && usable(now, nt, p) && g.tokenFits(nt) {
		return nt, nil
	}
	if nt != nil && nt.State == api.StateReauthorizationRequired {
		return nil, errReauthorize(g.name)
	}
	desc := "the token has expired and the provider could not be reached"
	if err != nil {
		switch {
		case errors.Is(err, errOnDemandBounded):
			desc = "the token has expired and was refreshed on demand a moment ago; tokend refreshes it on its schedule"
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			desc = "the token has expired and its refresh did not finish in time"
		default:
			desc = err.Error()
		}
	}
	return nil, &engineError{Kind: kindUnavailable, Code: api.CodeTemporarilyUnavailable, Description: desc, Err: err}
}

// reasonOnDemand is the reason of a refresh that a fetch started, in the
// refresh history and the log.
const reasonOnDemand = "on-demand"

// errOnDemandBounded: a fetch wanted a refresh, none was running to join,
// and the on-demand bound refused to start one.
var errOnDemandBounded = errors.New("daemon: a fetch refreshed this grant a moment ago")

// OnDemandMetrics is implemented by a Metrics that also counts the
// refreshes fetches ask for (metrics.Metrics does): result is "started"
// (the fetch started a refresh) or "bounded" (the on-demand bound refused
// one).
type OnDemandMetrics interface {
	ObserveOnDemand(grant, result string)
}

// takeOnDemand claims g's next on-demand refresh, whose token is t: false
// when the bound (mayRefreshOnDemand) refuses it. Counted either way.
func (d *Daemon) takeOnDemand(g *grant, t *store.Token, p Policy) bool {
	now := d.clock.Now()
	last := g.lastOnDemand.Load()
	var at time.Time
	if last != 0 {
		at = time.Unix(0, last)
	}
	ok := mayRefreshOnDemand(now, at, t, g.tokenFits(t), p) && g.lastOnDemand.CompareAndSwap(last, now.UnixNano())
	if m, isOD := d.metrics.(OnDemandMetrics); isOD {
		result := "started"
		if !ok {
			result = "bounded"
		}
		m.ObserveOnDemand(g.name, result)
	}
	return ok
}

// refreshNearExpiry starts, within the on-demand bound, a refresh of g,
// whose token t is near its end, and returns at once. The grant counts as
// queued until the refresh is done, so the scheduler does not queue it
// meanwhile; a fetch of the token once it has expired joins the refresh.
func (d *Daemon) refreshNearExpiry(g *grant, t *store.Token, p Policy) {
	if g.endRound.Load() != nil || !g.queued.CompareAndSwap(false, true) {
		return // a refresh runs or waits for a worker
	}
	if !d.takeOnDemand(g, t, p) {
		g.queued.Store(false)
		return
	}
	go func() {
		defer g.queued.Store(false)
		_, _, _ = d.sf.Do(g.name, func() (any, error) {
			// A refresh that ended just before this one began may have
			// renewed the token already.
			_, p := d.config()
			if cur := g.cur.Load(); g.tokenFits(cur) && usable(d.clock.Now().Add(fetchMargin(cur, p)), cur, p) {
				return cur, nil
			}
			return d.exclusiveRefresh(g, reasonOnDemand)
		})
	}()
}

// refreshOnDemand is a fetch's refresh of g: it joins a refresh that is
// running (scheduled, manual or another fetch's) and starts one only if
// the on-demand bound allows. It waits at most until ctx ends, while the
// refresh itself carries on for everyone else. errOnDemandBounded means no
// refresh ran.
func (d *Daemon) refreshOnDemand(ctx context.Context, g *grant) (*store.Token, error) {
	ch := d.sf.DoChan(g.name, func() (any, error) {
		// Deciding here, inside the group, makes joining a running
		// refresh free and the claim one per started refresh.
		_, p := d.config()
		t := g.cur.Load()
		if !d.takeOnDemand(g, t, p) {
			return t, errOnDemandBounded
		}
		return d.exclusiveRefresh(g, reasonOnDemand)
	})
	select {
	case r := <-ch:
		t, _ := r.Val.(*store.Token)
		return t, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshNow is an operator's refresh of g: it waits for it at most
// Options.FetchWait. A refresh that ran and failed is no error: the
// grant's status reports it (state, last_error).
func (d *Daemon) refreshNow(ctx context.Context, g *grant) error {
	if !g.renewable(g.cur.Load()) {
		return newError(kindReauthorization, api.CodeReauthorizationRequired, "no refresh token: a person must authorize this grant: tokend authorize "+g.name)
	}
	if err := d.fleetRefuseManual(g); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.FetchWait)
	defer cancel()
	if _, err := d.refreshWait(ctx, g, "manual"); err != nil && ctx.Err() != nil {
		return newError(kindTimeout, api.CodeTimeout, "the refresh is still running; see tokend status "+g.name)
	}
	return nil
}

// statusWithHistory is g's status with its last refresh attempts.
func (d *Daemon) statusWithHistory(g *grant) api.GrantStatus {
	s := d.status(g)
	if hist, err := d.st.History(g.name); err == nil {
		for _, a := range hist {
			s.History = append(s.History, api.AttemptStatus{At: a.At.UTC(), Result: a.Result, LatencyMS: a.Latency.Milliseconds(), Reason: a.Reason, Error: a.Error})
		}
	}
	return s
}

// status describes g without secrets.
func (d *Daemon) status(g *grant) api.GrantStatus {
	cfg, p := d.config()
	now := d.clock.Now()
	gc := g.cfg()
	s := api.GrantStatus{Name: g.name, Type: g.typ, DPoP: g.dpopOn, SubjectGrant: gc.SubjectGrant}
	if ia := gc.IdentityAssertion; ia != nil {
		s.SubjectGrant = ia.SubjectGrant
	}
	if c, ok := cfg.Clients[gc.Client]; ok {
		s.Provider = c.Provider
	}
	s.TokenEndpoint = d.resolvedTokenEndpoint(gc.Client)
	t := g.cur.Load()
	// A record may hold only an authorization outcome: stateOf says what
	// a grant never obtained waits for.
	s.State, s.StateSince = g.stateOf(t), t.StateSince
	if t.State == api.StateValid && !usable(now, t, p) {
		s.State = api.StateExpired
	}
	s.Scope = t.Scope
	if t.AccessToken != "" {
		exp := expiryOf(t, p)
		s.ExpiresAt = exp.UTC()
		s.ExpiresIn = int64(exp.Sub(now) / time.Second)
		if g.renewable(t) {
			s.NextRefresh = refreshAt(t, p, g.jitterFor(t.Generation)).UTC()
		}
	}
	s.RefreshExpires = t.RefreshExpiry
	s.HasRefreshToken = t.RefreshToken != ""
	s.Obtained = t.Obtained
	s.LastSuccess, s.LastAttempt = t.LastSuccess, t.LastAttempt
	s.LastError, s.LastErrorCode, s.Failures = oauth.Printable(t.LastError), t.LastErrorCode, t.Failures
	s.Generation = t.Generation
	s.Auth, s.AuthAt = t.Auth, t.AuthAt
	if len(gc.Match) > 0 {
		s.Match, s.MatchUsername = gc.Match, gc.HelperUsername()
	}
	s.Sinks = g.sinkStatus()
	s.ProtectedResource = gc.ProtectedResource
	d.applyStepUp(g, &s)
	d.fleetStatus(g, &s)
	return s
}
