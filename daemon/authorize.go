package daemon

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

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
	case GrantClientCredentials, GrantPassword:
		if _, err := d.refresh(g, "authorize"); err != nil {
			return nil, http.StatusBadGateway, err
		}
		s := d.status(g)
		return &AuthorizeResponse{Grant: g.name, Kind: g.cfg.Type, Status: &s}, http.StatusOK, nil
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return nil, http.StatusBadGateway, err
	}
	now := d.clock.Now()
	switch g.cfg.Type {
	case GrantAuthorizationCode:
		if prov.Endpoints.Authorization == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("daemon: provider of %s has no authorization endpoint", g.name)
		}
		if prov.Client.RedirectURI == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("daemon: client of %s has no redirect_uri", g.name)
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
		pend := store.Pending{
			State:       req.State,
			Grant:       g.name,
			Kind:        GrantAuthorizationCode,
			Verifier:    req.Verifier.Reveal(),
			Nonce:       req.Nonce,
			RedirectURI: prov.Client.RedirectURI,
			Created:     now,
			Deadline:    now.Add(pendingLifetime),
		}
		if err := d.st.PutPending(pend); err != nil {
			return nil, http.StatusInternalServerError, fmt.Errorf("daemon: saving pending authorization: %w", err)
		}
		d.log.Info("authorization started", "grant", g.name, "expires_at", pend.Deadline.UTC().Format(time.RFC3339))
		return &AuthorizeResponse{Grant: g.name, Kind: GrantAuthorizationCode, URL: prov.AuthCodeURL(req), ExpiresAt: pend.Deadline.UTC()}, http.StatusOK, nil
	case GrantDeviceCode:
		da, err := prov.StartDevice(ctx, g.cfg.Scopes, oauth.Params(g.cfg.AuthParams))
		if err != nil {
			return nil, http.StatusBadGateway, err
		}
		go d.awaitDevice(g, prov, da)
		d.log.Info("device authorization started", "grant", g.name, "verification_uri", da.VerificationURI, "expires_at", da.ExpiresAt.UTC().Format(time.RFC3339))
		return &AuthorizeResponse{
			Grant: g.name, Kind: GrantDeviceCode,
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

// callbackServer serves the redirect URI of the authorization-code grant.
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
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		callbackPage(w, http.StatusNotFound, "Not found", "This is tokend's authorization callback; nothing is here.")
	})
	return &http.Server{
		Handler:           http.MaxBytesHandler(mux, 8<<10),
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
	pend, err := d.st.ConsumePending(state, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.log.Warn("callback with an unknown or already used state")
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "This authorization is unknown or was already used. Start again with tokend authorize.")
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
	callbackPage(w, http.StatusOK, "Authorized", fmt.Sprintf("tokend now holds a token for grant %s. You can close this window.", g.name))
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
