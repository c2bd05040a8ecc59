package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// pendingLifetime is how long a started authorization-code flow waits for
// its callback.
const pendingLifetime = 10 * time.Minute

// authorize starts obtaining a token that needs a person (authorization
// code: a URL; device code: a user code), or obtains it at once for a
// grant that needs nobody.
func (d *Daemon) authorize(ctx context.Context, g *grant) (*AuthorizeResponse, int, error) {
	switch g.cfg.Type {
	case config.GrantClientCredentials, config.GrantPassword:
		if _, err := d.refresh(g, "authorize"); err != nil {
			return nil, http.StatusBadGateway, err
		}
		s := d.status(g)
		return &AuthorizeResponse{Grant: g.name, Kind: g.cfg.Type, Status: &s}, http.StatusOK, nil
	}
	if g.cfg.Type == config.GrantAuthorizationCode && d.CallbackAddr() == "" {
		cfg, _ := d.config()
		return nil, http.StatusBadRequest, fmt.Errorf("daemon: grant %s is an authorization_code grant, but listen.callback is %q: nothing receives the provider's redirect; set listen.callback and restart tokend", g.name, cfg.Listen.Callback)
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return nil, http.StatusBadGateway, err
	}
	now := d.clock.Now()
	switch g.cfg.Type {
	case config.GrantAuthorizationCode:
		if prov.Endpoints.Authorization == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("daemon: provider of %s has no authorization endpoint", g.name)
		}
		if prov.Client.RedirectURI == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("daemon: client of %s has no redirect_uri", g.name)
		}
		ru, err := url.Parse(prov.Client.RedirectURI)
		if err != nil || ru.Host == "" || (ru.Scheme != "http" && ru.Scheme != "https") {
			return nil, http.StatusBadRequest, fmt.Errorf("daemon: client of %s: redirect_uri %q is not an absolute http(s) URL", g.name, prov.Client.RedirectURI)
		}
		req := oauth.AuthRequest{
			State:    oauth.NewState(),
			Verifier: oauth.NewVerifier(),
			Scopes:   g.cfg.Scopes,
			Params:   oauth.Params(g.cfg.AuthParams),
		}
		if slices.Contains(g.cfg.Scopes, "openid") {
			req.Nonce = oauth.NewState()
		}
		// The provider's URL carries the state and the PKCE challenge: with
		// them anyone can sign in to their own account and deliver the code
		// to the callback. So it is never handed out, where it would end
		// up in a browser's argv; the caller gets a one-time start page on
		// the callback's origin, which binds the authorization to the
		// browser that opens it (a cookie) and redirects there.
		startID := randomToken()
		pend := store.Pending{
			State:       req.State,
			Grant:       g.name,
			Kind:        config.GrantAuthorizationCode,
			Verifier:    req.Verifier.Reveal(),
			Nonce:       req.Nonce,
			RedirectURI: prov.Client.RedirectURI,
			Created:     now,
			Deadline:    now.Add(pendingLifetime),
			StartHash:   hashHex(startID),
		}
		if err := d.st.PutPending(pend); err != nil {
			return nil, http.StatusInternalServerError, fmt.Errorf("daemon: saving pending authorization: %w", err)
		}
		d.starts.add(pend.StartHash, startPage{
			state: req.State, authURL: prov.AuthCodeURL(req), secure: ru.Scheme == "https", deadline: pend.Deadline,
		}, now)
		start := url.URL{Scheme: ru.Scheme, Host: ru.Host, Path: "/start/" + startID}
		d.log.Info("authorization started", "grant", g.name, "expires_at", pend.Deadline.UTC().Format(time.RFC3339))
		return &AuthorizeResponse{Grant: g.name, Kind: config.GrantAuthorizationCode, URL: start.String(), ExpiresAt: pend.Deadline.UTC()}, http.StatusOK, nil
	case config.GrantDeviceCode:
		da, err := prov.StartDevice(ctx, g.cfg.Scopes, oauth.Params(g.cfg.AuthParams))
		if err != nil {
			return nil, http.StatusBadGateway, err
		}
		go d.awaitDevice(g, prov, da)
		d.log.Info("device authorization started", "grant", g.name, "verification_uri", da.VerificationURI, "expires_at", da.ExpiresAt.UTC().Format(time.RFC3339))
		return &AuthorizeResponse{
			Grant: g.name, Kind: config.GrantDeviceCode,
			UserCode: da.UserCode, VerificationURI: da.VerificationURI,
			VerificationURIComplete: da.VerificationURIComplete, ExpiresAt: da.ExpiresAt.UTC(),
		}, http.StatusOK, nil
	}
	return nil, http.StatusBadRequest, fmt.Errorf("daemon: grant %s has unknown type %q", g.name, g.cfg.Type)
}

// awaitDevice polls for a device authorization in the background until the
// person approves or denies it, or the code expires.
func (d *Daemon) awaitDevice(g *grant, prov *oauth.Provider, da *oauth.DeviceAuth) {
	d.inflight.Add(1)
	defer d.inflight.Done()
	ctx := d.baseCtx
	if !da.ExpiresAt.IsZero() {
		// ExpiresAt is on the daemon's clock; the poll waits on real time.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, da.ExpiresAt.Sub(d.clock.Now())+time.Second)
		defer cancel()
	}
	t, err := prov.AwaitDevice(ctx, da)
	if err != nil {
		d.recordAuth(g, "device authorization failed: "+err.Error())
		d.log.Warn("device authorization failed", "grant", g.name, "err", err)
		return
	}
	if err := d.storeAuthorized(g, t, "authorized by device code"); err != nil {
		d.log.Error("saving device-authorized token", "grant", g.name, "err", err)
	}
}

// storeAuthorized installs a token set a person just authorized.
func (d *Daemon) storeAuthorized(g *grant, t *oauth.Token, outcome string) error {
	_, p := d.config()
	// One at a time with refreshes of this grant: the new token set
	// replaces whatever a concurrent refresh would have written.
	err := g.exclusive(func() error {
		cur := g.cur.Load()
		prev := *cur
		prev.RefreshToken, prev.RefreshExpiry, prev.RefreshIssued, prev.IDToken = "", time.Time{}, time.Time{}, ""
		n := tokenFrom(&prev, t, g, p)
		now := d.clock.Now()
		n.State, n.StateSince = StateValid, now
		n.LastError, n.LastErrorCode, n.Failures = "", "", 0
		n.LastSuccess = now
		n.Auth, n.AuthAt = outcome, now
		if err := d.st.PutToken(n, &store.Attempt{At: t.Obtained, Result: "success", Reason: "authorize"}); err != nil {
			return err
		}
		d.publish(g, &n, p)
		d.publishMetrics(g.name, &n, p)
		return nil
	})
	if err == nil {
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
		if err := d.st.PutToken(n, nil); err != nil {
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

// callbackServer serves the redirect URI of the authorization-code grant
// and the one-time start pages, to requests whose Host names the listener
// or a configured redirect_uri's host (see hostGuard).
func (d *Daemon) callbackServer() *http.Server {
	mux := http.NewServeMux()
	cfg, _ := d.config()
	paths := map[string]bool{"/callback": true}
	for _, c := range cfg.Clients {
		if u, err := url.Parse(c.RedirectURI); err == nil && u.Path != "" {
			paths[u.Path] = true
		}
	}
	for p := range paths {
		mux.HandleFunc("GET "+p, d.handleCallback)
	}
	mux.HandleFunc("GET /start/{id}", d.handleStart)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		callbackPage(w, http.StatusNotFound, "Not found", "This is tokend's authorization callback; nothing is here.")
	})
	refuse := func(w http.ResponseWriter, r *http.Request) {
		callbackPage(w, http.StatusMisdirectedRequest, "Wrong address", "This request's Host names no address of tokend's callback listener.")
	}
	return &http.Server{
		Handler:           http.MaxBytesHandler(hostGuard(d.CallbackAddr, d.redirectHosts, refuse, mux), 8<<10),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slogErrorLog(d.log, "callback"),
	}
}

// handleCallback consumes the pending authorization named by state exactly
// once, then exchanges the code. A forged, expired or replayed state
// changes nothing.
func (d *Daemon) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "The request has no valid state parameter.")
		return
	}
	now := d.clock.Now()
	// Only the browser that opened the start page holds the cookie; the
	// store compares its hash in the transaction that would consume the
	// authorization, and keeps the authorization when it does not match.
	cookie := bindingCookie(r, state)
	binding := ""
	if cookie != nil {
		binding = hashHex(cookie.Value)
	}
	pend, err := d.st.ConsumePending(state, binding, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.log.Warn("callback with an unknown or already used state")
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "This authorization is unknown or was already used. Start again with tokend authorize.")
		return
	case errors.Is(err, store.ErrMismatch):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, AuthCallbackUnbound+" (not from the browser that opened the start page): refused; the authorization is still pending")
		}
		d.log.Warn("callback refused: it lacks the browser binding of its authorization", "grant", pend.Grant, "has_cookie", cookie != nil)
		callbackPage(w, http.StatusBadRequest, "Authorization refused",
			"This callback does not come from the browser that opened tokend's start page, so tokend did not use its code. "+
				"If you started this authorization, finish it in that browser, or start again with tokend authorize.")
		return
	case errors.Is(err, store.ErrExpired):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, "callback after the authorization expired")
		}
		callbackPage(w, http.StatusBadRequest, "Authorization expired", "This authorization expired. Start again with tokend authorize.")
		return
	case err != nil:
		d.log.Error("consuming pending authorization", "err", err)
		callbackPage(w, http.StatusInternalServerError, "Authorization failed", "tokend could not read its store.")
		return
	}
	g := d.grant(pend.Grant)
	if g == nil {
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "The grant of this authorization is no longer configured.")
		return
	}
	prov, err := d.providerFor(r.Context(), g)
	if err != nil {
		d.recordAuth(g, "callback failed: "+err.Error())
		callbackPage(w, http.StatusBadGateway, "Authorization failed", "tokend could not reach the provider: "+err.Error())
		return
	}
	code, _, err := oauth.ParseCallback(q, prov.Endpoints.Issuer, prov.Endpoints.IssuerParameterSupported)
	if err != nil {
		d.recordAuth(g, "callback rejected: "+err.Error())
		d.log.Warn("authorization callback rejected", "grant", g.name, "err", err)
		callbackPage(w, http.StatusBadRequest, "Authorization failed", fmt.Sprintf("Grant %s was not authorized: %v", g.name, err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	tok, err := prov.Exchange(ctx, code, oauth.NewSecret(pend.Verifier), oauth.Params(g.cfg.TokenParams))
	if err != nil {
		d.recordAuth(g, "code exchange failed: "+err.Error())
		d.log.Warn("code exchange failed", "grant", g.name, "err", err)
		callbackPage(w, http.StatusBadGateway, "Authorization failed", fmt.Sprintf("Grant %s: the provider refused the code: %v", g.name, err))
		return
	}
	if err := d.storeAuthorized(g, tok, "authorized by authorization code"); err != nil {
		d.log.Error("saving authorized token", "grant", g.name, "err", err)
		callbackPage(w, http.StatusInternalServerError, "Authorization failed", "tokend could not save the token.")
		return
	}
	if cookie != nil { // always: nothing else redeems an authorization
		// The binding has served its purpose.
		http.SetCookie(w, &http.Cookie{Name: cookie.Name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: strings.HasPrefix(cookie.Name, "__Host-"), SameSite: http.SameSiteLaxMode})
	}
	callbackPage(w, http.StatusOK, "Authorized", fmt.Sprintf("tokend now holds a token for grant %s. You can close this window.", g.name))
}

// handleStart is the one-time start page of an authorization: it binds the
// pending authorization to this browser with a fresh random cookie (only
// its hash is stored) and redirects to the provider. A used, unknown or
// expired start page changes nothing and says so.
func (d *Daemon) handleStart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := d.clock.Now()
	var sp startPage
	ok := id != "" && len(id) <= 128
	if ok {
		sp, ok = d.starts.take(hashHex(id))
	}
	if !ok {
		d.log.Warn("start page unknown or already used")
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "This start link is unknown or was already used. Start again with tokend authorize.")
		return
	}
	value := randomToken()
	pend, err := d.st.BindPending(sp.state, hashHex(id), hashHex(value), now)
	switch {
	case errors.Is(err, store.ErrExpired):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, "start page opened after the authorization expired")
		}
		callbackPage(w, http.StatusBadRequest, "Authorization expired", "This authorization expired. Start again with tokend authorize.")
		return
	case errors.Is(err, store.ErrNotFound):
		d.log.Warn("start page of an unknown or already used authorization")
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "This start link is unknown or was already used. Start again with tokend authorize.")
		return
	case err != nil:
		d.log.Error("binding pending authorization", "err", err)
		callbackPage(w, http.StatusInternalServerError, "Authorization failed", "tokend could not write its store.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     bindingCookieName(sp.state, sp.secure),
		Value:    value,
		Path:     "/",
		MaxAge:   max(int(sp.deadline.Sub(now).Seconds()), 1),
		HttpOnly: true,
		Secure:   sp.secure,
		// Lax: the provider's redirect back is a top-level GET navigation
		// from another site, which Lax cookies accompany.
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	d.log.Info("authorization bound to a browser", "grant", pend.Grant)
	http.Redirect(w, r, sp.authURL, http.StatusFound)
}

// redirectHosts are the hosts of the configured redirect URIs: the callback
// listener answers requests for them too (it may sit behind a proxy).
func (d *Daemon) redirectHosts() []string {
	cfg, _ := d.config()
	hosts := make([]string, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		if u, err := url.Parse(c.RedirectURI); err == nil && u.Host != "" {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}

// startPage is what the start page of one pending authorization needs. It
// is kept in memory only: the provider's URL carries the state, which is
// stored hashed. After a restart the start link is dead; authorize again.
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

// bindingCookieName is the name of the cookie binding the authorization of
// state to a browser. It differs per authorization, so two started in the
// same browser do not overwrite each other's cookie; it is derived from
// the state (which the callback carries) and reveals nothing of it. Over
// https it takes the __Host- prefix: Secure, Path=/ and no Domain enforced
// by the browser.
func bindingCookieName(state string, secure bool) string {
	h := sha256.Sum256([]byte("tokend browser binding\x00" + state))
	name := "tokend-auth-" + hex.EncodeToString(h[:8])
	if secure {
		name = "__Host-" + name
	}
	return name
}

// bindingCookie returns the binding cookie for state that r carries, or nil.
func bindingCookie(r *http.Request, state string) *http.Cookie {
	for _, secure := range []bool{true, false} {
		if c, err := r.Cookie(bindingCookieName(state, secure)); err == nil && c.Value != "" {
			return c
		}
	}
	return nil
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>tokend: {{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

func callbackPage(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_ = pageTmpl.Execute(w, struct{ Title, Text string }{title, text})
}

// revoke revokes the refresh token, then the access token (RFC 7009), then
// forgets them. A provider without a revocation endpoint only has them
// forgotten.
func (d *Daemon) revoke(ctx context.Context, g *grant) error {
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
		n := store.Token{Grant: g.name, Generation: cur.Generation, State: StateReauthorization, StateSince: now,
			Auth: "revoked", AuthAt: now}
		if g.renewable(&n) {
			n.State = StateExpired
		}
		if err := d.st.PutToken(n, &store.Attempt{At: now, Result: "revoked", Reason: "manual"}); err != nil {
			return err
		}
		_, p := d.config()
		d.publish(g, &n, p)
		d.publishMetrics(g.name, &n, p)
		d.log.Info("tokens revoked", "grant", g.name)
		return nil
	})
}

// slogErrorLog routes net/http's internal errors (bad requests, TLS noise)
// to the structured log at debug level.
func slogErrorLog(l *slog.Logger, server string) *log.Logger {
	return slog.NewLogLogger(l.With("server", server).Handler(), slog.LevelDebug)
}
