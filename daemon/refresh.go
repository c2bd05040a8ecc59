package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// Backoff bounds of one refresh round. A round also ends when the next try
// would land after the token's expiry; the next tick starts a new round.
const (
	backoffInitial = time.Second
	backoffMax     = time.Minute
	// expiredRound bounds a round for a token that has already expired.
	expiredRound = 2 * time.Minute
	// attemptWarnEvery spaces the WARN lines of one round's failed
	// attempts: the first failure is logged at once, later ones at most
	// this often (the rest at debug level).
	attemptWarnEvery = 5 * time.Minute
)

var errNoRefreshToken = &oauth.Error{
	Op:          "refresh",
	Description: "no refresh token: a person must authorize this grant (tokend authorize)",
	Class:       oauth.Reauthorize,
}

// refresh obtains a new token for g, sharing one refresh per grant among
// the scheduler, operators and fetches that arrive together.
func (d *Daemon) refresh(g *grant, reason string) (*store.Token, error) {
	v, err, _ := d.sf.Do(g.name, func() (any, error) { return d.exclusiveRefresh(g, reason) })
	t, _ := v.(*store.Token)
	return t, err
}

// refreshWait is refresh for a caller with a deadline: it waits at most
// until ctx ends, while the refresh itself carries on for everyone else.
func (d *Daemon) refreshWait(ctx context.Context, g *grant, reason string) (*store.Token, error) {
	ch := d.sf.DoChan(g.name, func() (any, error) { return d.exclusiveRefresh(g, reason) })
	select {
	case r := <-ch:
		t, _ := r.Val.(*store.Token)
		return t, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exclusiveRefresh runs a refresh while no authorization, revocation or
// other write of the grant's token set runs.
func (d *Daemon) exclusiveRefresh(g *grant, reason string) (*store.Token, error) {
	g.op.Lock()
	defer g.op.Unlock()
	return d.doRefresh(g, reason)
}

// retryAfterBackOff is exponential backoff that honours a provider's
// Retry-After and gives up when the next try would land after deadline.
type retryAfterBackOff struct {
	*backoff.ExponentialBackOff
	clock    Clock
	deadline time.Time
	hint     time.Duration
}

func (b *retryAfterBackOff) NextBackOff() time.Duration {
	next := b.ExponentialBackOff.NextBackOff()
	if b.hint > next {
		next = b.hint
	}
	b.hint = 0
	if next == backoff.Stop || b.clock.Now().Add(next).After(b.deadline) {
		return backoff.Stop
	}
	return next
}

type clockAdapter struct{ c Clock }

func (a clockAdapter) Now() time.Time { return a.c.Now() }

func (d *Daemon) doRefresh(g *grant, reason string) (*store.Token, error) {
	if !d.inflight.enter() {
		return nil, errShuttingDown
	}
	defer d.inflight.leave()
	ctx, stop := d.baseCtx, d.stopCtx
	if ctx == nil {
		ctx, stop = context.Background(), context.Background()
	}
	// stop ends the round's waits at shutdown, or when an operator action
	// on the grant supersedes the round (grant.exclusive).
	stop, endRound := context.WithCancel(stop)
	defer endRound()
	g.endRound.Store(&endRound)
	defer g.endRound.Store(nil)
	_, p := d.config()
	start := d.clock.Now()
	cur := g.cur.Load()
	d.metrics.SetState(g.name, api.StateRefreshing)

	deadline := start.Add(expiredRound)
	if usable(start, cur, p) {
		deadline = expiryOf(cur, p)
	}
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(backoffInitial),
		backoff.WithMaxInterval(backoffMax),
		backoff.WithMaxElapsedTime(0),
	)
	eb.Clock = clockAdapter{d.clock}
	eb.Reset()
	b := &retryAfterBackOff{ExponentialBackOff: eb, clock: d.clock, deadline: deadline}

	var got *oauth.Token
	var via string
	tries := 0
	waiting := false
	stopWaiting := func() {
		if waiting {
			waiting = false
			g.backingOff.Store(false)
		}
	}
	op := func() error {
		stopWaiting()
		tries++
		t, how, err := d.fleetObtain(ctx, g, cur)
		if errors.Is(err, errNotHolder) {
			return backoff.Permanent(err)
		}
		if err != nil {
			// Before anything else: the next try, and the next round,
			// send the newest refresh token.
			cur = d.keepRefreshToken(g, cur, p, err)
		}
		d.countAttempt(g, err, stop)
		if err != nil {
			if tries == 1 && stop.Err() == nil {
				d.emitFailure(g, p, config.EventFailing, err) // hooks: the first failed attempt of a round
			}
			if oauth.ClassOf(err) != oauth.Transient || stop.Err() != nil {
				return backoff.Permanent(err)
			}
			b.hint = oauth.RetryAfter(err)
			return err
		}
		got, via = t, how
		return nil
	}
	var lastWarn time.Time
	notify := func(err error, wait time.Duration) {
		// Between tries the status already says what is wrong.
		d.noteFailure(g, p, err)
		// The first failure of a round is told at once, while the token
		// is still valid; later ones at most every attemptWarnEvery.
		level := slog.LevelDebug
		if now := d.clock.Now(); lastWarn.IsZero() || now.Sub(lastWarn) >= attemptWarnEvery {
			level, lastWarn = slog.LevelWarn, now
		}
		args := []any{"grant", g.name, "class", oauth.ClassOf(err).String(), "tries", tries, "retry_in", wait, "err", err}
		if usable(start, cur, p) {
			args = append(args, "token_expires_at", expiryOf(cur, p).UTC().Format(time.RFC3339))
		}
		d.log.Log(context.Background(), level, "refresh attempt failed, retrying", args...)
		waiting = true
		g.backingOff.Store(true)
	}
	err := backoff.RetryNotifyWithTimer(op, backoff.WithContext(b, stop), notify, &backoffTimer{clock: d.clock})
	stopWaiting()
	latency := d.clock.Now().Sub(start)
	if errors.Is(err, errNotHolder) {
		return d.fleetAbandoned(g), err
	}
	if err != nil {
		if stop.Err() != nil {
			// Shutting down, or superseded: not the provider's failure,
			// nothing to record.
			return g.cur.Load(), err
		}
		return d.failed(g, p, reason, start, latency, tries, err)
	}
	return d.succeeded(g, cur, p, reason, start, latency, via, got)
}

// obtain makes one request for a new token set: a refresh when there is a
// refresh token, else the grant's own non-interactive grant. A password
// grant whose refresh token died re-obtains with the password. A dpop
// grant's request carries a proof of its key (grant.dpopKeyFor): cur's, or
// a new one for a chain that has none.
func (d *Daemon) obtain(ctx context.Context, g *grant, cur *store.Token) (*oauth.Token, string, error) {
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return nil, "", err
	}
	if g.dpopOn {
		k, err := g.dpopKeyFor(cur)
		if err != nil {
			return nil, "", err
		}
		prov = prov.WithDPoP(k.key)
	}
	t, via, err := d.obtainWith(ctx, g, cur, prov)
	if err == nil {
		err = checkDPoP(g, t)
	}
	return t, via, err
}

func (d *Daemon) obtainWith(ctx context.Context, g *grant, cur *store.Token, prov *oauth.Provider) (*oauth.Token, string, error) {
	// A refresh sends the configured scopes only: without them the
	// provider keeps what was granted (RFC 6749 §6), a step-up's included.
	scopes, params := g.cfg().Scopes, d.grantParams(g, g.cfg().TokenParams)
	if renewsWithRefreshToken(g.typ) && cur.RefreshToken != "" {
		t, err := prov.Refresh(ctx, oauth.NewSecret(cur.RefreshToken), scopes, params)
		if err == nil || g.typ != config.GrantPassword || oauth.ClassOf(err) != oauth.Reauthorize {
			return t, "refresh_token", err
		}
		d.log.Info("refresh token rejected; obtaining a new token with the password grant", "grant", g.name)
	}
	switch g.typ {
	case config.GrantClientCredentials:
		// With the scopes a step-up asked for, which tokend authorize
		// obtains at once for a grant that needs no person.
		t, err := prov.ClientCredentials(ctx, d.authorizeScopes(g, d.grantScopes(g)), params)
		return t, config.GrantClientCredentials, err
	case config.GrantPassword:
		t, err := prov.Password(ctx, g.cfg().Username, g.cfg().Password, scopes, params)
		return t, config.GrantPassword, err
	case config.GrantJWTBearer:
		t, err := d.jwtBearer(ctx, g, prov)
		return t, config.GrantJWTBearer, err
	case config.GrantTokenExchange:
		t, err := d.tokenExchange(ctx, g, prov)
		return t, config.GrantTokenExchange, err
	}
	return nil, "", errNoRefreshToken
}

// renewsWithRefreshToken reports whether a grant of type typ renews with its refresh
// token. client_credentials, jwt_bearer and token_exchange re-obtain with
// the grant itself: its inputs (the assertion, the subject token) are
// what the token stands for.
func renewsWithRefreshToken(typ string) bool {
	switch typ {
	case config.GrantClientCredentials, config.GrantJWTBearer, config.GrantTokenExchange:
		return false
	}
	return true
}

// tokenFrom merges a provider answer into the grant's record: a response
// without a refresh token keeps the old one (RFC 6749 §6).
func tokenFrom(prev *store.Token, t *oauth.Token, g *grant, p Policy) store.Token {
	n := *prev
	n.Grant = g.name
	n.AccessToken = t.AccessToken.Reveal()
	n.TokenType = t.TokenType
	if n.TokenType == "" {
		n.TokenType = "Bearer"
	}
	n.Obtained = t.Obtained
	n.Expiry = t.Expiry
	if n.Expiry.IsZero() {
		n.Expiry = t.Obtained.Add(p.DefaultLifetime)
	}
	n.Scope = t.Scope
	if n.Scope == "" {
		n.Scope = strings.Join(g.cfg().Scopes, " ")
	}
	if !t.IDToken.IsZero() {
		n.IDToken = t.IDToken.Reveal()
	}
	setRefreshToken(&n, g, t.RefreshToken, t.RefreshExpiry, t.Obtained)
	n.Generation = prev.Generation + 1
	return n
}

// setRefreshToken is the one place that writes the refresh token of a
// provider's answer into a record, whether the answer was taken
// (tokenFrom) or refused (keepRefreshToken). An answer without a refresh
// token keeps the old one, with the answer's refresh expiry if it gave
// one (RFC 6749 §6).
func setRefreshToken(n *store.Token, g *grant, rt oauth.Secret, expiry, obtained time.Time) {
	if rt.IsZero() {
		if !expiry.IsZero() {
			n.RefreshExpiry = expiry
		}
		return
	}
	n.RefreshToken = rt.Reveal()
	n.RefreshIssued = obtained
	n.RefreshExpiry = expiry
	if n.RefreshExpiry.IsZero() && g.cfg().RefreshTokenLifetime > 0 {
		n.RefreshExpiry = obtained.Add(g.cfg().RefreshTokenLifetime)
	}
}

// keepRefreshToken stores the new refresh token of an answer that was
// refused (err carries it: a downgraded or unservable token, a malformed
// field): the provider may have retired the one that was sent when it
// answered, and with reuse detection sending that one again would revoke
// the whole chain. Only the refresh token is taken (with the DPoP key the
// request proved, to which it may be bound); the answer's access token is
// never stored or served. It returns the record the next try starts from.
func (d *Daemon) keepRefreshToken(g *grant, cur *store.Token, p Policy, err error) *store.Token {
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.RefreshToken.IsZero() || !renewsWithRefreshToken(g.typ) {
		return cur
	}
	n := *cur
	n.Grant = g.name
	setRefreshToken(&n, g, oe.RefreshToken, oe.RefreshExpiry, d.clock.Now())
	n.DPoPKey = g.dpopKeyUsed(cur)
	n.Generation = cur.Generation + 1
	perr := d.st.PutToken(n, nil)
	if d.fleetFenced(g, perr) {
		return g.cur.Load()
	}
	if perr != nil {
		g.dirty.Store(true)
		d.log.Error("refresh token of a refused answer not saved; keeping it in memory and retrying the write", "grant", g.name, "err", perr)
	} else {
		g.dirty.Store(false)
	}
	d.publish(g, &n, p)
	d.log.Warn("provider's answer refused; the new refresh token it carried is kept", "grant", g.name, "generation", n.Generation)
	return &n
}

func (d *Daemon) succeeded(g *grant, cur *store.Token, p Policy, reason string, start time.Time, latency time.Duration, via string, got *oauth.Token) (*store.Token, error) {
	n := tokenFrom(cur, got, g, p)
	n.DPoPKey = g.dpopKeyUsed(cur)
	now := d.clock.Now()
	if n.State != api.StateValid {
		n.StateSince = now
	}
	n.State = api.StateValid
	n.LastError, n.LastErrorCode, n.Failures = "", "", 0
	n.LastAttempt, n.LastSuccess = start, now
	att := store.Attempt{At: start, Result: "success", Latency: latency, Reason: reason}
	// Durable first, then served: a refresh is not done before its token
	// is on disk. If the write fails the new token is served anyway, since
	// the provider may already have invalidated the old refresh token, and
	// the write is retried on the next tick.
	perr := d.putToken(g, n, &att)
	if d.fleetFenced(g, perr) {
		return g.cur.Load(), perr
	}
	if perr != nil {
		n.LastError = perr.Error()
		n.LastErrorCode = "store"
		g.dirty.Store(true)
	} else {
		g.dirty.Store(false)
	}
	prior := g.cur.Load().State
	d.publish(g, &n, p)
	d.emitObtained(g, prior, &n) // hooks
	d.metrics.ObserveRefresh(g.name, "success", latency)
	d.publishMetrics(g.name, &n, p)
	g.mu.Lock()
	g.lastLogged = ""
	g.mu.Unlock()
	if perr != nil {
		d.log.Error("token obtained but not saved; serving it from memory and retrying the write", "grant", g.name, "err", perr)
		return &n, fmt.Errorf("daemon: saving token of %s: %w", g.name, perr)
	}
	d.log.Info("token refreshed", "grant", g.name, "via", via, "reason", reason,
		"expires_at", n.Expiry.UTC().Format(time.RFC3339), "rotated", n.RefreshIssued.Equal(n.Obtained) && n.RefreshToken != "",
		"generation", n.Generation, "latency", latency)
	return &n, nil
}

// stateFor maps a failure's class to the grant's state.
func stateFor(class oauth.Class, stillUsable bool) string {
	switch class {
	case oauth.Reauthorize, oauth.Denied:
		return api.StateReauthorizationRequired
	case oauth.Credentials:
		return api.StateCredentialsError
	case oauth.Configuration:
		return api.StateConfigurationError
	}
	if stillUsable {
		return api.StateFailing
	}
	return api.StateExpired
}

// withFailure returns the grant's current record marked with err.
func (d *Daemon) withFailure(g *grant, p Policy, err error) store.Token {
	class := oauth.ClassOf(err)
	now := d.clock.Now()
	cur := g.cur.Load()
	n := *cur
	n.Grant = g.name
	state := stateFor(class, usable(now, cur, p))
	if n.State != state {
		n.StateSince = now
	}
	n.State = state
	n.LastError = oauth.Printable(err.Error()) // provider and TLS text: no terminal escapes in status, history or a 503
	n.LastErrorCode = class.String()
	var oe *oauth.Error
	if errors.As(err, &oe) && oe.Code != "" {
		n.LastErrorCode = oe.Code
	}
	n.Failures++
	return n
}

// noteFailure shows a failed try in memory (status, metrics) while the
// round goes on; the round's end writes the outcome to the store.
func (d *Daemon) noteFailure(g *grant, p Policy, err error) {
	n := d.withFailure(g, p, err)
	prior := g.cur.Load().State
	d.publish(g, &n, p)
	d.emitTransition(g, prior, &n) // hooks
	d.metrics.SetState(g.name, n.State)
	d.metrics.SetFailures(g.name, n.Failures)
}

// countAttempt counts one request for a new token as it returns
// (tokend_refresh_attempts_total), so that failures show while a round is
// still retrying. A request cut short by shutdown or by an operator action
// is nobody's failure, and a grant with nothing to refresh with made no
// request; neither is counted.
func (d *Daemon) countAttempt(g *grant, err error, stop context.Context) {
	switch {
	case err == nil:
		d.metrics.ObserveAttempt(g.name, "success")
	case stop.Err() != nil || errors.Is(err, errNoRefreshToken):
	default:
		d.metrics.ObserveAttempt(g.name, oauth.ClassOf(err).String())
	}
}

func (d *Daemon) failed(g *grant, p Policy, reason string, start time.Time, latency time.Duration, tries int, err error) (*store.Token, error) {
	class := oauth.ClassOf(err)
	n := d.withFailure(g, p, err)
	state := n.State
	n.LastAttempt = start
	att := store.Attempt{At: start, Result: class.String(), Latency: latency, Error: n.LastError, Reason: reason}
	if perr := d.st.PutToken(n, &att); perr != nil {
		d.log.Error("saving refresh failure", "grant", g.name, "err", perr)
	}
	prior := g.cur.Load().State
	d.publish(g, &n, p)
	d.emitTransition(g, prior, &n) // hooks
	d.metrics.ObserveRefresh(g.name, class.String(), latency)
	d.publishMetrics(g.name, &n, p)

	// A failure is logged once at warning level (or error, when a person
	// must act); repeats of the same failure go to debug.
	key := state + "|" + n.LastErrorCode
	g.mu.Lock()
	repeat := g.lastLogged == key
	g.lastLogged = key
	g.mu.Unlock()
	level := slog.LevelWarn
	if class != oauth.Transient {
		level = slog.LevelError
	}
	if repeat {
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, "refresh failed", "grant", g.name, "state", state, "class", class.String(),
		"reason", reason, "tries", tries, "err", err)
	return &n, err
}

// persistDirty retries writing a token that was obtained but not saved.
func (d *Daemon) persistDirty(g *grant) {
	t := g.cur.Load()
	n := *t
	n.LastError, n.LastErrorCode = "", ""
	if err := d.putToken(g, n, nil); d.fleetFenced(g, err) {
		return
	} else if err != nil {
		d.warnLimited("saving token", "saving token still failing", "grant", g.name, "err", err)
		return
	}
	if g.cur.CompareAndSwap(t, &n) {
		g.dirty.Store(false)
		d.log.Info("token saved", "grant", g.name)
	}
}
