package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// pendingLifetime is how long a started authorization-code flow waits for
// its callback.
const pendingLifetime = 10 * time.Minute

// authorize starts obtaining a token that needs a person (authorization
// code: a URL; device code: a user code), or obtains it at once for a
// grant that needs nobody. Its errors have the code
// api.CodeAuthorizationFailed and the kind kindBadRequest (the grant's
// configuration cannot work), kindProvider or kindInternal.
func (d *Daemon) authorize(ctx context.Context, g *grant) (*api.AuthorizeResponse, error) {
	switch g.typ {
	case config.GrantClientCredentials, config.GrantPassword, config.GrantJWTBearer, config.GrantTokenExchange:
		if _, err := d.refresh(g, "authorize"); err != nil {
			return nil, authorizeFailed(kindProvider, err)
		}
		// The new token was asked for with a step-up's scopes.
		d.clearStepUp(g.name)
		s := d.status(g)
		return &api.AuthorizeResponse{Grant: g.name, Kind: g.typ, Status: &s}, nil
	}
	if g.typ == config.GrantAuthorizationCode && d.CallbackAddr() == "" {
		cfg, _ := d.config()
		return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: grant %s is an authorization_code grant, but listen.callback is %q: nothing receives the provider's redirect; set listen.callback and restart tokend", g.name, cfg.Listen.Callback))
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return nil, authorizeFailed(kindProvider, err)
	}
	now := d.clock.Now()
	switch g.typ {
	case config.GrantAuthorizationCode:
		if prov.Endpoints.Authorization == "" {
			return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: provider of %s has no authorization endpoint", g.name))
		}
		if prov.Client.RedirectURI == "" {
			return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: client of %s has no redirect_uri", g.name))
		}
		ru, err := url.Parse(prov.Client.RedirectURI)
		if err != nil || ru.Host == "" || (ru.Scheme != "http" && ru.Scheme != "https") {
			return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: client of %s: redirect_uri %q is not an absolute http(s) URL", g.name, prov.Client.RedirectURI))
		}
		req, pend := d.codeRequest(g, prov, now)
		startID := randomToken()
		pend.StartHash = hashHex(startID)
		if err := d.st.PutPending(pend); err != nil {
			return nil, authorizeFailed(kindInternal, fmt.Errorf("daemon: saving pending authorization: %w", err))
		}
		// The provider's URL carries the state and the PKCE challenge: with
		// them anyone can sign in to their own account and deliver the code
		// to the callback. So it is never handed out, where it would end
		// up in a browser's argv; the caller gets a one-time start page on
		// the callback's origin, which binds the authorization to the
		// browser that opens it (a cookie) and redirects there.
		sp := startPage{state: req.State, authURL: prov.AuthCodeURL(req), secure: ru.Scheme == "https", deadline: pend.Deadline}
		if err := d.fleetPutStart(pend.StartHash, sp); err != nil {
			return nil, authorizeFailed(kindInternal, fmt.Errorf("daemon: saving the start page in the fleet: %w", err))
		}
		d.starts.add(pend.StartHash, sp, now)
		start := url.URL{Scheme: ru.Scheme, Host: ru.Host, Path: "/start/" + startID}
		d.log.Info("authorization started", "grant", g.name, "expires_at", pend.Deadline.UTC().Format(time.RFC3339))
		return &api.AuthorizeResponse{Grant: g.name, Kind: config.GrantAuthorizationCode, URL: start.String(), ExpiresAt: pend.Deadline.UTC()}, nil
	case config.GrantDeviceCode:
		da, err := prov.StartDevice(ctx, g.cfg().Scopes, oauth.Params(g.cfg().AuthParams))
		if err != nil {
			return nil, authorizeFailed(kindProvider, err)
		}
		// The token requests of a new authorization sign with a new key.
		xprov, key, err := dpopProvider(g, prov)
		if err != nil {
			return nil, authorizeFailed(kindInternal, err)
		}
		go d.awaitDevice(g, xprov, key, da)
		d.log.Info("device authorization started", "grant", g.name, "verification_uri", da.VerificationURI, "expires_at", da.ExpiresAt.UTC().Format(time.RFC3339))
		return &api.AuthorizeResponse{
			Grant: g.name, Kind: config.GrantDeviceCode,
			UserCode: da.UserCode, VerificationURI: da.VerificationURI,
			VerificationURIComplete: da.VerificationURIComplete, ExpiresAt: da.ExpiresAt.UTC(),
		}, nil
	}
	return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: grant %s has unknown type %q", g.name, g.typ))
}

// codeRequest makes the authorization request of an authorization_code
// grant g at prov, and the pending authorization that redeems its answer
// (without a binding: the caller adds the start page's or the paste's).
// It asks for the grant's scopes and, after a step-up, for those its token
// holds and those asked for; a protected_resource grant's request names
// the resource.
func (d *Daemon) codeRequest(g *grant, prov *oauth.Provider, now time.Time) (oauth.AuthRequest, store.Pending) {
	req := oauth.AuthRequest{
		State:    oauth.NewState(),
		Verifier: oauth.NewVerifier(),
		Scopes:   d.authorizeScopes(g, d.grantScopes(g)),
		Params:   d.grantParams(g, g.cfg().AuthParams),
	}
	if slices.Contains(req.Scopes, "openid") {
		req.Nonce = oauth.NewState()
	}
	pend := store.Pending{
		State:       req.State,
		Grant:       g.name,
		Kind:        config.GrantAuthorizationCode,
		Verifier:    req.Verifier.Reveal(),
		Nonce:       req.Nonce,
		RedirectURI: prov.Client.RedirectURI,
		Created:     now,
		Deadline:    now.Add(pendingLifetime),
	}
	return req, pend
}

// authorizeFailed is an error of authorize.
func authorizeFailed(kind errorKind, err error) error {
	return wrapError(kind, api.CodeAuthorizationFailed, err)
}

// awaitDevice polls for a device authorization in the background until the
// person approves or denies it, or the code expires.
func (d *Daemon) awaitDevice(g *grant, prov *oauth.Provider, key string, da *oauth.DeviceAuth) {
	if !d.inflight.enter() {
		return
	}
	defer d.inflight.leave()
	ctx := d.baseCtx
	if !da.ExpiresAt.IsZero() {
		// ExpiresAt is on the daemon's clock; the poll waits on real time.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, da.ExpiresAt.Sub(d.clock.Now())+time.Second)
		defer cancel()
	}
	t, err := prov.AwaitDevice(ctx, da)
	if err == nil {
		err = checkDPoP(g, t)
	}
	if err != nil {
		d.recordAuth(g, "device authorization failed: "+err.Error())
		d.log.Warn("device authorization failed", "grant", g.name, "err", err)
		return
	}
	if err := d.storeAuthorized(g, t, key, "authorized by device code"); err != nil {
		d.log.Error("saving device-authorized token", "grant", g.name, "err", err)
	}
}

// storeAuthorized installs a token set a person just authorized; key is
// the stored form of the DPoP key it is bound to ("" without dpop).
func (d *Daemon) storeAuthorized(g *grant, t *oauth.Token, key, outcome string) error {
	_, p := d.config()
	// One at a time with refreshes of this grant: the new token set
	// replaces whatever a concurrent refresh would have written.
	err := g.exclusive(func() error {
		cur := g.cur.Load()
		prev := *cur
		prev.RefreshToken, prev.RefreshExpiry, prev.RefreshIssued, prev.IDToken = "", time.Time{}, time.Time{}, ""
		n := tokenFrom(&prev, t, g, p)
		n.DPoPKey = key
		now := d.clock.Now()
		n.State, n.StateSince = api.StateValid, now
		n.LastError, n.LastErrorCode, n.Failures = "", "", 0
		n.LastSuccess = now
		n.Auth, n.AuthAt = outcome, now
		if err := d.putAuthorized(n, &store.Attempt{At: t.Obtained, Result: "success", Reason: "authorize"}); err != nil {
			return err
		}
		d.publish(g, &n, p)
		d.emitObtained(g, cur.State, &n) // hooks
		d.publishMetrics(g.name, &n, p)
		return nil
	})
	if err == nil {
		// The authorization asked for the scopes a step-up wanted.
		d.clearStepUp(g.name)
		d.log.Info("grant authorized", "grant", g.name, "outcome", outcome)
		d.notifyStatus()
	}
	return err
}

// recordAuth notes the outcome of a failed authorization attempt on the
// grant, for tokend status, without touching its tokens.
func (d *Daemon) recordAuth(g *grant, outcome string) {
	err := g.exclusive(func() error {
		cur := g.cur.Load()
		n := *cur
		n.Auth, n.AuthAt = outcome, d.clock.Now()
		if err := d.putOutcome(n); err != nil {
			return err
		}
		_, p := d.config()
		d.publish(g, &n, p)
		return nil
	})
	if err != nil {
		d.log.Error("saving authorization outcome", "grant", g.name, "err", err)
	}
}

// startPage is what the start page of one pending authorization needs. It
// is kept in memory only: the provider's URL carries the state, which is
// stored hashed. After a restart the start link is dead; authorize again.
// In fleet mode it is also kept in the fleet, sealed (fleetstart.go).
type startPage struct {
	state    string
	authURL  string
	secure   bool // the redirect URI is https: the cookie is Secure
	deadline time.Time
}

// startPages holds the start pages not yet used, by hex SHA-256 of their id.
type startPages struct {
	mu sync.Mutex
	m  map[string]startPage
}

// add keeps p under key, dropping the pages that expired by now.
func (s *startPages) add(key string, p startPage, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]startPage)
	}
	for k, old := range s.m {
		if !now.Before(old.deadline) {
			delete(s.m, k)
		}
	}
	s.m[key] = p
}

// take removes and returns the page under key: it is used once.
func (s *startPages) take(key string) (startPage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[key]
	delete(s.m, key)
	return p, ok
}

// randomToken returns 256 random bits, base64url: start ids and cookies.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashHex is the hex SHA-256 of s: what the store keeps of a start id or a
// binding cookie.
func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// revoke revokes the refresh token, then the access token (RFC 7009), then
// forgets them. A provider without a revocation endpoint only has them
// forgotten. Its errors are of kind kindProvider, with the code
// api.CodeRevocationFailed.
func (d *Daemon) revoke(ctx context.Context, g *grant) error {
	if err := d.revokeTokens(ctx, g); err != nil {
		return wrapError(kindProvider, api.CodeRevocationFailed, err)
	}
	return nil
}

func (d *Daemon) revokeTokens(ctx context.Context, g *grant) error {
	return g.exclusive(func() error {
		cur := g.cur.Load()
		if cur.AccessToken == "" && cur.RefreshToken == "" {
			return nil // nothing to revoke
		}
		prov, err := d.providerFor(ctx, g)
		if err != nil {
			return err
		}
		if prov.Endpoints.Revocation != "" {
			if cur.RefreshToken != "" {
				if err := prov.Revoke(ctx, oauth.NewSecret(cur.RefreshToken), "refresh_token"); err != nil {
					return err
				}
			}
			if cur.AccessToken != "" {
				if err := prov.Revoke(ctx, oauth.NewSecret(cur.AccessToken), "access_token"); err != nil {
					return err
				}
			}
		} else {
			d.log.Warn("provider has no revocation endpoint; forgetting the tokens only", "grant", g.name)
		}
		now := d.clock.Now()
		n := store.Token{Grant: g.name, Generation: cur.Generation, State: api.StateReauthorizationRequired, StateSince: now,
			Auth: "revoked", AuthAt: now}
		if g.renewable(&n) {
			n.State = api.StateExpired
		}
		if err := d.putAuthorized(n, &store.Attempt{At: now, Result: "revoked", Reason: "manual"}); err != nil {
			return err
		}
		_, p := d.config()
		d.publish(g, &n, p)
		d.emit(g, config.EventRevoked, &n) // hooks
		d.publishMetrics(g.name, &n, p)
		d.log.Info("tokens revoked", "grant", g.name)
		return nil
	})
}
