package daemon

// What programs using a grant's token report back: a token a resource
// refused (POST .../rejected: one refresh, shared by everyone reporting
// it) and scopes a resource asked for (POST .../step-up: the grant then
// needs an authorization for more scopes). Step-ups are kept in memory:
// after a restart the resource asks again.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// Step-up bounds: at most stepUpLimit step-ups of a grant within
// stepUpWindow, so that a resource that keeps asking for more scopes
// cannot start an authorization loop.
const (
	stepUpLimit  = 3
	stepUpWindow = 10 * time.Minute
	// maxStepUpScopes bounds the scopes one grant may be asked for.
	maxStepUpScopes = 64
)

// rejectedSpacing is the least time between two refreshes of a grant that
// rejected tokens started: a resource refusing every token gets one
// refresh per spacing, not one per request.
const rejectedSpacing = 10 * time.Second

// reasonRejected is the reason of a refresh a rejected token started.
const reasonRejected = "rejected"

// StepUpMetrics is implemented by a Metrics that also counts step-ups
// (metrics.Metrics does): result is recorded, covered or limited.
type StepUpMetrics interface {
	ObserveStepUp(grant, result string)
}

// stepUp is what resources asked of a grant beyond its token's scopes.
type stepUp struct {
	scopes []string // asked for and not held, in the order asked
	reason string
	at     time.Time
}

// feedback holds the step-ups of the grants and when each was asked for,
// and when rejected tokens last refreshed each grant. Keyed by grant name,
// it outlives reloads.
type feedback struct {
	mu       sync.Mutex
	stepUps  map[string]*stepUp
	asked    map[string][]time.Time // step-up requests within the window
	rejected map[string]time.Time   // last refresh a rejected token started
}

// stepUpOf returns a copy of g's pending step-up, or nil.
func (d *Daemon) stepUpOf(name string) *stepUp {
	d.fb.mu.Lock()
	defer d.fb.mu.Unlock()
	s := d.fb.stepUps[name]
	if s == nil {
		return nil
	}
	c := *s
	c.scopes = slices.Clone(s.scopes)
	return &c
}

// clearStepUp forgets g's step-up: an authorization asked for its scopes.
func (d *Daemon) clearStepUp(name string) {
	d.fb.mu.Lock()
	defer d.fb.mu.Unlock()
	delete(d.fb.stepUps, name)
}

func (d *Daemon) observeStepUp(g *grant, result string) {
	if m, ok := d.metrics.(StepUpMetrics); ok {
		m.ObserveStepUp(g.name, result)
	}
}

// errStepUpLimit refuses a step-up beyond the bound.
func errStepUpLimit(g *grant) error {
	return newError(kindTooMany, api.CodeStepUpLimit, fmt.Sprintf("grant %s was asked for more scopes %d times within %s: not recording more (a resource that keeps asking would start an authorization loop); see tokend status %s", g.name, stepUpLimit, stepUpWindow, g.name))
}

// recordStepUp records that a resource asked for scope (space-separated)
// on g's behalf. Scopes the current token has are not asked for again; if
// it has them all, nothing changes.
func (d *Daemon) recordStepUp(g *grant, req api.StepUpRequest) error {
	if strings.TrimSpace(req.Scope) == "" && req.Challenge != "" {
		// The scopes from the resource's challenge, when the caller gave
		// only that.
		if ch, err := oauth.ParseBearerChallenge([]string{req.Challenge}); err == nil {
			req.Scope = ch.Scope
		}
	}
	asked := strings.Fields(req.Scope)
	if len(asked) == 0 || len(asked) > maxStepUpScopes {
		return newError(kindBadRequest, api.CodeInvalidRequest, fmt.Sprintf("scope must list between 1 and %d scopes, space-separated", maxStepUpScopes))
	}
	for _, s := range asked {
		if oauth.Printable(s) != s || strings.ContainsAny(s, "\"\\") {
			return newError(kindBadRequest, api.CodeInvalidRequest, "scope has a character no scope has (RFC 6749 §3.3)")
		}
	}
	t := g.cur.Load()
	held := strings.Fields(t.Scope)
	var missing []string
	for _, s := range asked {
		if !slices.Contains(held, s) && !slices.Contains(missing, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 && t.AccessToken != "" {
		d.observeStepUp(g, "covered")
		return nil
	}
	now := d.clock.Now()
	d.fb.mu.Lock()
	recent := d.fb.asked[g.name][:0:0]
	for _, at := range d.fb.asked[g.name] {
		if now.Sub(at) < stepUpWindow {
			recent = append(recent, at)
		}
	}
	if len(recent) >= stepUpLimit {
		d.fb.asked[g.name] = recent
		d.fb.mu.Unlock()
		d.observeStepUp(g, "limited")
		d.warnLimited("step-up limit "+g.name, "step-up refused: too many for this grant", "grant", g.name, "limit", stepUpLimit, "window", stepUpWindow)
		return errStepUpLimit(g)
	}
	if d.fb.asked == nil {
		d.fb.asked, d.fb.stepUps = map[string][]time.Time{}, map[string]*stepUp{}
	}
	d.fb.asked[g.name] = append(recent, now)
	su := d.fb.stepUps[g.name]
	if su == nil {
		su = &stepUp{}
		d.fb.stepUps[g.name] = su
	}
	for _, s := range missing {
		if !slices.Contains(su.scopes, s) && len(su.scopes) < maxStepUpScopes {
			su.scopes = append(su.scopes, s)
		}
	}
	su.at = now
	su.reason = fmt.Sprintf("a resource asked for scope %q (403 insufficient_scope) at %s", strings.Join(missing, " "), now.UTC().Format(time.RFC3339))
	scopes := slices.Clone(su.scopes)
	d.fb.mu.Unlock()

	d.observeStepUp(g, "recorded")
	n := *t
	n.State = api.StateReauthorizationRequired
	d.emit(g, config.EventStepUp, &n) // hooks
	d.log.Warn("grant needs an authorization for more scopes", "grant", g.name, "scopes", strings.Join(scopes, " "), "run", "tokend authorize "+g.name)
	d.notifyStatus()
	return nil
}

// authorizeScopes are the scopes an authorization of g asks for: its own
// (configured or discovered), the ones its token holds, and the ones a
// step-up asked for.
func (d *Daemon) authorizeScopes(g *grant, own []string) []string {
	scopes := slices.Clone(own)
	su := d.stepUpOf(g.name)
	if su == nil {
		return scopes
	}
	for _, s := range append(strings.Fields(g.cur.Load().Scope), su.scopes...) {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return scopes
}

// applyStepUp shows g's pending step-up in its status s.
func (d *Daemon) applyStepUp(g *grant, s *api.GrantStatus) {
	su := d.stepUpOf(g.name)
	if su == nil {
		return
	}
	s.StepUpScopes, s.StepUpReason = su.scopes, su.reason
	s.State = api.StateReauthorizationRequired
}

// rejected answers a program whose resource refused accessToken: a token
// of g other than that one. If the refused token is still g's, g is
// refreshed once for everyone reporting it (a refresh already running is
// joined), at most once per rejectedSpacing; if g has moved on, its
// current token is answered as a fetch would.
func (d *Daemon) rejected(ctx context.Context, g *grant, req api.RejectedRequest) (*store.Token, error) {
	if req.AccessToken == "" {
		return nil, newError(kindBadRequest, api.CodeInvalidRequest, "access_token must be the token the resource refused")
	}
	if ch, err := oauth.ParseBearerChallenge([]string{req.Challenge}); req.Challenge != "" && err == nil && ch.Error == "insufficient_scope" {
		// A new token of the same scopes would be refused the same way.
		return nil, newError(kindBadRequest, api.CodeInvalidRequest, "the resource answered insufficient_scope: the token lacks scopes, which a refresh does not add; report it with POST /v1/tokens/"+g.name+"/step-up")
	}
	if !sameToken(g.cur.Load(), req.AccessToken) {
		return d.fetch(ctx, g)
	}
	t := g.cur.Load()
	if !g.renewable(t) {
		return nil, errNeedsPerson(g, t)
	}
	if d.fleet != nil && !d.fleetHolds(g) {
		return d.fleetFetch(ctx, g)
	}
	wctx, cancel := context.WithTimeout(ctx, d.opts.FetchWait)
	defer cancel()
	ch := d.sf.DoChan(g.name, func() (any, error) {
		// Inside the group: callers reporting the same token join this
		// one refresh, and one arriving after it sees the new token.
		cur := g.cur.Load()
		if !sameToken(cur, req.AccessToken) {
			return cur, nil
		}
		now := d.clock.Now()
		d.fb.mu.Lock()
		last := d.fb.rejected[g.name]
		ok := last.IsZero() || now.Sub(last) >= rejectedSpacing
		if ok {
			if d.fb.rejected == nil {
				d.fb.rejected = map[string]time.Time{}
			}
			d.fb.rejected[g.name] = now
		}
		d.fb.mu.Unlock()
		if !ok {
			return cur, errRejectedBounded
		}
		d.log.Info("a resource refused the grant's token; refreshing", "grant", g.name)
		return d.exclusiveRefresh(g, reasonRejected)
	})
	var err error
	select {
	case r := <-ch:
		err = r.Err
	case <-wctx.Done():
		err = wctx.Err()
	}
	_, p := d.config()
	nt := g.cur.Load()
	if usable(d.clock.Now(), nt, p) && g.tokenFits(nt) && !sameToken(nt, req.AccessToken) {
		return nt, nil
	}
	if nt.State == api.StateReauthorizationRequired {
		return nil, errReauthorize(g.name)
	}
	desc := "the resource refused the token and its refresh failed"
	switch {
	case errors.Is(err, errRejectedBounded):
		desc = fmt.Sprintf("the resource refused the token, and a refused token refreshed this grant less than %s ago", rejectedSpacing)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		desc = "the resource refused the token and its refresh did not finish in time"
	case err != nil:
		desc += ": " + err.Error()
	}
	e := &engineError{Kind: kindUnavailable, Code: api.CodeTemporarilyUnavailable, Description: desc, Err: err}
	if errors.Is(err, errRejectedBounded) {
		e.RetryAfter = rejectedSpacing
	}
	return nil, e
}

// errRejectedBounded: a rejected token wanted a refresh, and one ran for
// a rejected token less than rejectedSpacing ago.
var errRejectedBounded = errors.New("daemon: a rejected token refreshed this grant a moment ago")

// sameToken reports whether t's access token is tok, in constant time.
func sameToken(t *store.Token, tok string) bool {
	return t != nil && t.AccessToken != "" && subtle.ConstantTimeCompare([]byte(t.AccessToken), []byte(tok)) == 1
}
