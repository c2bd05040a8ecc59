package daemon

// The callback listener's HTTP layer: the redirect URI of the
// authorization-code grant and the one-time start pages (authorize.go
// starts the flows), answered with small HTML pages.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

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
	// A browser sends its request as soon as it connects and has no use
	// for a connection kept open afterwards: short header and idle
	// timeouts give a silent or idle connection's place back quickly
	// (Run bounds the listener; connLimiter closes idle ones first).
	return &http.Server{
		Handler:           http.MaxBytesHandler(hostGuard(d.CallbackAddr, d.redirectHosts, refuse, mux), 8<<10),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       5 * time.Second,
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
		d.warnLimited("callback unknown", "callback with an unknown or already used state")
		callbackPage(w, http.StatusBadRequest, "Authorization failed", "This authorization is unknown or was already used. Start again with tokend authorize.")
		return
	case errors.Is(err, store.ErrMismatch):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, api.AuthCallbackUnbound+" (not from the browser that opened the start page): refused; the authorization is still pending")
		}
		d.warnLimited("callback unbound "+pend.Grant, "callback refused: it lacks the browser binding of its authorization", "grant", pend.Grant, "has_cookie", cookie != nil)
		callbackPage(w, http.StatusBadRequest, "Authorization refused",
			"This callback does not come from the browser that opened tokend's start page, so tokend did not use its code. "+
				"If you started this authorization, finish it in that browser, or start again with tokend authorize. "+
				"If you started it with tokend authorize --paste, paste this page's address there.")
		return
	case errors.Is(err, store.ErrExpired):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, "callback after the authorization expired")
		}
		callbackPage(w, http.StatusBadRequest, "Authorization expired", "This authorization expired. Start again with tokend authorize.")
		return
	case errors.Is(err, store.ErrCorrupt):
		// A record the store refuses (not sealed with its key, altered,
		// or an authorization-code flow without a verifier) was not
		// written by tokend: its code is not exchanged.
		d.log.Error("callback refused: its pending authorization was not written by tokend", "err", err)
		callbackPage(w, http.StatusBadRequest, "Authorization refused", "This authorization was not started by tokend. Start again with tokend authorize.")
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
	// tokend makes a PKCE verifier for every authorization-code flow it
	// starts; a code is never exchanged without one, whatever the store
	// returned.
	if pend.Kind != config.GrantAuthorizationCode || pend.Verifier == "" || g.cfg().Type != config.GrantAuthorizationCode {
		d.recordAuth(g, "callback refused: its pending authorization is not an authorization-code flow that tokend started")
		d.log.Error("callback refused: its pending authorization is not an authorization-code flow with a PKCE verifier", "grant", g.name, "kind", pend.Kind)
		callbackPage(w, http.StatusBadRequest, "Authorization refused", "This authorization was not started by tokend. Start again with tokend authorize.")
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
	if err := d.exchangeCode(r.Context(), g, prov, code, pend.Verifier, "authorized by authorization code"); err != nil {
		callbackPage(w, http.StatusBadGateway, "Authorization failed", fmt.Sprintf("Grant %s: the code could not be exchanged: %v", g.name, err))
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
		var err error
		sp, ok = d.starts.take(hashHex(id))
		// Fleet mode: another instance may have started it.
		sp, ok, err = d.fleetTakeStart(hashHex(id), sp, ok)
		switch {
		case errors.Is(err, errStartExpired):
			callbackPage(w, http.StatusBadRequest, "Authorization expired", "This authorization expired. Start again with tokend authorize.")
			return
		case err != nil:
			d.log.Error("reading the start page from the fleet", "err", err)
			callbackPage(w, http.StatusInternalServerError, "Authorization failed", "tokend could not read its store.")
			return
		}
	}
	if !ok {
		d.warnLimited("start page unknown", "start page unknown or already used")
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
		d.warnLimited("start page unknown", "start page of an unknown or already used authorization")
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
