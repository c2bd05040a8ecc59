package server

// The callback listener: the redirect URI of the authorization-code grant
// and the one-time start pages, answered with small HTML pages. The
// browser binding is a cookie: the engine makes its value and keeps only
// its hash; completing the authorization is the engine's.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokend/tokend/internal/engine"
)

// newCallbackServer serves the redirect URI of the authorization-code
// grant and the one-time start pages, to requests whose Host names the
// listener bound at bound() or a configured redirect_uri's host (see
// hostGuard).
func newCallbackServer(e Engine, bound func() string, log *slog.Logger) *http.Server {
	// A browser sends its request as soon as it connects and has no use
	// for a connection kept open afterwards: short header and idle
	// timeouts give a silent or idle connection's place back quickly
	// (the listener is bounded; connLimiter closes idle ones first).
	return &http.Server{
		Handler:           CallbackHandler(e, bound),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       5 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog(log, "callback"),
	}
}

// CallbackHandler serves the redirect URIs' paths and the start pages
// from e, to requests whose Host names the listener bound at bound() or
// a redirect URI's host.
func CallbackHandler(e Engine, bound func() string) http.Handler {
	mux := http.NewServeMux()
	paths := map[string]bool{"/callback": true}
	for _, ru := range e.RedirectURIs() {
		if u, err := url.Parse(ru); err == nil && u.Path != "" {
			paths[u.Path] = true
		}
	}
	cb := callbackHandlers{e: e}
	for p := range paths {
		mux.HandleFunc("GET "+p, cb.handleCallback)
	}
	mux.HandleFunc("GET /start/{id}", cb.handleStart)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		callbackPage(w, http.StatusNotFound, "Not found", "This is tokend's authorization callback; nothing is here.")
	})
	refuse := func(w http.ResponseWriter, r *http.Request) {
		callbackPage(w, http.StatusMisdirectedRequest, "Wrong address", "This request's Host names no address of tokend's callback listener.")
	}
	return http.MaxBytesHandler(hostGuard(bound, cb.redirectHosts, refuse, mux), 8<<10)
}

type callbackHandlers struct{ e Engine }

// handleCallback hands the code and state a browser brings back, with the
// browser's binding, to the engine, which consumes the pending
// authorization named by state exactly once and exchanges the code.
func (cb callbackHandlers) handleCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	binding := ""
	var cookie *http.Cookie
	if state != "" && len(state) <= 512 {
		// Only the browser that opened the start page holds the cookie.
		if cookie = bindingCookie(r, state); cookie != nil {
			binding = cookie.Value
		}
	}
	grant, err := cb.e.CompleteAuthorization(r.Context(), q, binding)
	if err != nil {
		failPage(w, err)
		return
	}
	if cookie != nil { // always: nothing else redeems an authorization
		// The binding has served its purpose.
		http.SetCookie(w, &http.Cookie{Name: cookie.Name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
			Secure: strings.HasPrefix(cookie.Name, "__Host-"), SameSite: http.SameSiteLaxMode})
	}
	callbackPage(w, http.StatusOK, "Authorized", fmt.Sprintf("tokend now holds a token for grant %s. You can close this window.", grant))
}

// handleStart is the one-time start page of an authorization: the engine
// binds the pending authorization to this browser with a fresh random
// value, which the browser keeps in a cookie, and the browser goes on to
// the provider. A used, unknown or expired start page changes nothing and
// says so.
func (cb callbackHandlers) handleStart(w http.ResponseWriter, r *http.Request) {
	sp, err := cb.e.OpenStartPage(r.PathValue("id"))
	if err != nil {
		failPage(w, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     BindingCookieName(sp.State, sp.Secure),
		Value:    sp.Binding,
		Path:     "/",
		MaxAge:   max(int(sp.Lifetime.Seconds()), 1),
		HttpOnly: true,
		Secure:   sp.Secure,
		// Lax: the provider's redirect back is a top-level GET navigation
		// from another site, which Lax cookies accompany.
		SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, sp.AuthURL, http.StatusFound)
}

// failPage is the page of an authorization the engine failed with err.
func failPage(w http.ResponseWriter, err error) {
	title := "Authorization failed"
	text := "tokend failed."
	if e := (*engine.Error)(nil); errors.As(err, &e) {
		text = e.Description
		switch e.Code {
		case engine.CodeAuthorizationRefused:
			title = "Authorization refused"
		case engine.CodeAuthorizationExpired:
			title = "Authorization expired"
		}
	}
	code, _ := answerOf(err)
	callbackPage(w, code, title, text)
}

// redirectHosts are the hosts of the configured redirect URIs: the callback
// listener answers requests for them too (it may sit behind a proxy).
func (cb callbackHandlers) redirectHosts() []string {
	uris := cb.e.RedirectURIs()
	hosts := make([]string, 0, len(uris))
	for _, ru := range uris {
		if u, err := url.Parse(ru); err == nil && u.Host != "" {
			hosts = append(hosts, u.Host)
		}
	}
	return hosts
}

// BindingCookieName is the name of the cookie binding the authorization of
// state to a browser. It differs per authorization, so two started in the
// same browser do not overwrite each other's cookie; it is derived from
// the state (which the callback carries) and reveals nothing of it. Over
// https it takes the __Host- prefix: Secure, Path=/ and no Domain enforced
// by the browser.
func BindingCookieName(state string, secure bool) string {
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
		if c, err := r.Cookie(BindingCookieName(state, secure)); err == nil && c.Value != "" {
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
