package daemon

// The flow half of the authorization-code grant's return: a start page
// taken and bound to a browser, and an authorization completed from the
// code and state the browser brings back (authorize.go starts the flows;
// package server serves the pages).

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// CompleteAuthorization completes the authorization-code flow that a
// browser brings back to the redirect URI with query (code and state):
// it consumes the pending authorization named by state exactly once, then
// exchanges the code, and returns the grant authorized. binding is the
// value of the browser's binding cookie ("" when it has none): only the
// browser that opened the start page holds it. A forged, expired or
// replayed state changes nothing. A failure is an *engine.Error whose
// code (engine.CodeAuthorization*) and description are for the person
// at the browser.
func (d *Daemon) CompleteAuthorization(ctx context.Context, q url.Values, binding string) (string, error) {
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		return "", pageError(kindBadRequest, engine.CodeAuthorizationFailed, "The request has no valid state parameter.")
	}
	now := d.clock.Now()
	// The store compares the binding's hash in the transaction that would
	// consume the authorization, and keeps the authorization when it does
	// not match.
	hash := ""
	if binding != "" {
		hash = hashHex(binding)
	}
	pend, err := d.st.ConsumePending(state, hash, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.warnLimited("callback unknown", "callback with an unknown or already used state")
		return "", pageError(kindBadRequest, engine.CodeAuthorizationFailed, "This authorization is unknown or was already used. Start again with tokend authorize.")
	case errors.Is(err, store.ErrMismatch):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, api.AuthCallbackUnbound+" (not from the browser that opened the start page): refused; the authorization is still pending")
		}
		d.warnLimited("callback unbound "+pend.Grant, "callback refused: it lacks the browser binding of its authorization", "grant", pend.Grant, "has_cookie", binding != "")
		return "", pageError(kindBadRequest, engine.CodeAuthorizationRefused,
			"This callback does not come from the browser that opened tokend's start page, so tokend did not use its code. "+
				"If you started this authorization, finish it in that browser, or start again with tokend authorize. "+
				"If you started it with tokend authorize --paste, paste this page's address there.")
	case errors.Is(err, store.ErrExpired):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, "callback after the authorization expired")
		}
		return "", pageError(kindBadRequest, engine.CodeAuthorizationExpired, "This authorization expired. Start again with tokend authorize.")
	case errors.Is(err, store.ErrCorrupt):
		// A record the store refuses (not sealed with its key, altered,
		// or an authorization-code flow without a verifier) was not
		// written by tokend: its code is not exchanged.
		d.log.Error("callback refused: its pending authorization was not written by tokend", "err", err)
		return "", pageError(kindBadRequest, engine.CodeAuthorizationRefused, "This authorization was not started by tokend. Start again with tokend authorize.")
	case err != nil:
		d.log.Error("consuming pending authorization", "err", err)
		return "", pageError(kindInternal, engine.CodeAuthorizationFailed, "tokend could not read its store.")
	}
	g := d.grant(pend.Grant)
	if g == nil {
		return "", pageError(kindBadRequest, engine.CodeAuthorizationFailed, "The grant of this authorization is no longer configured.")
	}
	// tokend makes a PKCE verifier for every authorization-code flow it
	// starts; a code is never exchanged without one, whatever the store
	// returned.
	if pend.Kind != config.GrantAuthorizationCode || pend.Verifier == "" || g.cfg().Type != config.GrantAuthorizationCode {
		d.recordAuth(g, "callback refused: its pending authorization is not an authorization-code flow that tokend started")
		d.log.Error("callback refused: its pending authorization is not an authorization-code flow with a PKCE verifier", "grant", g.name, "kind", pend.Kind)
		return "", pageError(kindBadRequest, engine.CodeAuthorizationRefused, "This authorization was not started by tokend. Start again with tokend authorize.")
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		d.recordAuth(g, "callback failed: "+err.Error())
		return "", pageError(kindProvider, engine.CodeAuthorizationFailed, "tokend could not reach the provider: "+err.Error())
	}
	code, _, err := oauth.ParseCallback(q, prov.Endpoints.Issuer, prov.Endpoints.IssuerParameterSupported)
	if err != nil {
		d.recordAuth(g, "callback rejected: "+err.Error())
		d.log.Warn("authorization callback rejected", "grant", g.name, "err", err)
		return "", pageError(kindBadRequest, engine.CodeAuthorizationFailed, fmt.Sprintf("Grant %s was not authorized: %v", g.name, err))
	}
	if err := d.exchangeCode(ctx, g, prov, code, pend.Verifier, "authorized by authorization code"); err != nil {
		return "", pageError(kindProvider, engine.CodeAuthorizationFailed, fmt.Sprintf("Grant %s: the code could not be exchanged: %v", g.name, err))
	}
	return g.name, nil
}

// pageError is a failure of the callback or a start page, told to the
// person at the browser.
func pageError(kind errorKind, code, text string) error {
	return &engineError{Kind: kind, Code: code, Description: text}
}

// OpenStartPage takes the one-time start page id of an authorization and
// binds the pending authorization to the browser that opened it: the
// StartPage carries a fresh random binding for its cookie (only its hash
// is stored) and where to send the browser. A used, unknown or expired
// start page changes nothing and says so.
func (d *Daemon) OpenStartPage(id string) (engine.StartPage, error) {
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
			return engine.StartPage{}, pageError(kindBadRequest, engine.CodeAuthorizationExpired, "This authorization expired. Start again with tokend authorize.")
		case err != nil:
			d.log.Error("reading the start page from the fleet", "err", err)
			return engine.StartPage{}, pageError(kindInternal, engine.CodeAuthorizationFailed, "tokend could not read its store.")
		}
	}
	if !ok {
		d.warnLimited("start page unknown", "start page unknown or already used")
		return engine.StartPage{}, pageError(kindBadRequest, engine.CodeAuthorizationFailed, "This start link is unknown or was already used. Start again with tokend authorize.")
	}
	value := randomToken()
	pend, err := d.st.BindPending(sp.state, hashHex(id), hashHex(value), now)
	switch {
	case errors.Is(err, store.ErrExpired):
		if g := d.grant(pend.Grant); g != nil {
			d.recordAuth(g, "start page opened after the authorization expired")
		}
		return engine.StartPage{}, pageError(kindBadRequest, engine.CodeAuthorizationExpired, "This authorization expired. Start again with tokend authorize.")
	case errors.Is(err, store.ErrNotFound):
		d.warnLimited("start page unknown", "start page of an unknown or already used authorization")
		return engine.StartPage{}, pageError(kindBadRequest, engine.CodeAuthorizationFailed, "This start link is unknown or was already used. Start again with tokend authorize.")
	case err != nil:
		d.log.Error("binding pending authorization", "err", err)
		return engine.StartPage{}, pageError(kindInternal, engine.CodeAuthorizationFailed, "tokend could not write its store.")
	}
	d.log.Info("authorization bound to a browser", "grant", pend.Grant)
	return engine.StartPage{Grant: pend.Grant, State: sp.state, AuthURL: sp.authURL, Binding: value, Lifetime: sp.deadline.Sub(now), Secure: sp.secure}, nil
}

// RedirectURIs are the configured clients' redirect URIs: the callback
// listener serves their paths, and answers requests for their hosts too
// (it may sit behind a reverse proxy).
func (d *Daemon) RedirectURIs() []string {
	cfg, _ := d.config()
	uris := make([]string, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		if c.RedirectURI != "" {
			uris = append(uris, c.RedirectURI)
		}
	}
	return uris
}
