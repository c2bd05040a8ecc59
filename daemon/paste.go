package daemon

// Paste-back authorization, for hosts without a browser: the operator
// opens the authorization server's URL on any machine, approves, and
// pastes the address the browser ended on (the redirect URI with the
// server's answer, which nothing on that machine serves). The pending
// authorization is bound to a random paste id and to the uid that started
// it: only that user, with that id, completes it, once, and the answer's
// state and iss are checked as the callback checks them.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// maxPasted bounds the address a person pastes.
const maxPasted = 8 << 10

// pasteBinding is what a paste-back authorization's BindingHash is the
// hash of: its paste id and the uid that started it.
func pasteBinding(pasteID string, uid uint32) string {
	return hashHex("tokend paste\x00" + pasteID + "\x00" + strconv.FormatUint(uint64(uid), 10))
}

// authorizePaste starts a paste-back authorization of g for the operator p.
func (d *Daemon) authorizePaste(ctx context.Context, g *grant, p peer) (*api.AuthorizeResponse, error) {
	if g.typ != config.GrantAuthorizationCode {
		return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: grant %s is %s: only authorization_code grants are authorized by pasting an address", g.name, g.typ))
	}
	if !p.ok {
		return nil, authorizeFailed(kindForbidden, errors.New("daemon: the caller's uid is unknown, so a paste-back authorization cannot be bound to it"))
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return nil, authorizeFailed(kindProvider, err)
	}
	if prov.Endpoints.Authorization == "" {
		return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: provider of %s has no authorization endpoint", g.name))
	}
	if prov.Client.RedirectURI == "" {
		return nil, authorizeFailed(kindBadRequest, fmt.Errorf("daemon: client of %s has no redirect_uri (listen.callback is off and none is configured)", g.name))
	}
	now := d.clock.Now()
	req, pend := d.codeRequest(g, prov, now)
	pasteID := randomToken()
	pend.BindingHash = pasteBinding(pasteID, p.uid)
	if err := d.st.PutPending(pend); err != nil {
		return nil, authorizeFailed(kindInternal, fmt.Errorf("daemon: saving pending authorization: %w", err))
	}
	d.log.Info("paste-back authorization started", "grant", g.name, "uid", p.uid, "expires_at", pend.Deadline.UTC().Format(time.RFC3339))
	return &api.AuthorizeResponse{Grant: g.name, Kind: config.GrantAuthorizationCode, URL: prov.AuthCodeURL(req),
		ExpiresAt: pend.Deadline.UTC(), PasteID: pasteID}, nil
}

// pasteRefused is the refusal of a paste, with why.
func pasteRefused(format string, args ...any) error {
	return newError(kindBadRequest, api.CodePasteRefused, fmt.Sprintf(format, args...))
}

// completePaste completes the paste-back authorization of g that p
// started, from the address the browser ended on.
func (d *Daemon) completePaste(ctx context.Context, g *grant, p peer, req api.CompleteRequest) error {
	if req.PasteID == "" || len(req.PasteID) > 128 {
		return pasteRefused("paste_id must be the id tokend authorize --paste was given")
	}
	if len(req.URL) > maxPasted {
		return pasteRefused("the pasted address is longer than %d bytes", maxPasted)
	}
	u, err := url.Parse(strings.TrimSpace(req.URL))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return pasteRefused("the pasted text is not an absolute address: paste the whole address the browser ended on (http://127.0.0.1:…/callback?code=…&state=…)")
	}
	q := u.Query()
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		return pasteRefused("the pasted address has no state parameter: paste the whole address the browser ended on")
	}
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return wrapError(kindProvider, api.CodeAuthorizationFailed, err)
	}
	if !sameRedirect(u, prov.Client.RedirectURI) {
		return pasteRefused("the pasted address is not grant %s's redirect URI %s", g.name, prov.Client.RedirectURI)
	}
	binding := ""
	if p.ok {
		binding = pasteBinding(req.PasteID, p.uid)
	}
	pend, err := d.st.ConsumePending(state, binding, d.clock.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		d.warnLimited("paste unknown", "paste with an unknown or already used state", "grant", g.name)
		return pasteRefused("this authorization is unknown or was already used: start again with tokend authorize %s --paste", g.name)
	case errors.Is(err, store.ErrMismatch):
		d.warnLimited("paste unbound "+g.name, "paste refused: not the paste id and user that started the authorization", "grant", g.name, "uid", p.uid)
		return pasteRefused("this authorization was not started by this paste (another paste id, or another user): it is still pending for the one that started it")
	case errors.Is(err, store.ErrExpired):
		d.recordAuth(g, "paste after the authorization expired")
		return pasteRefused("this authorization expired: start again with tokend authorize %s --paste", g.name)
	case errors.Is(err, store.ErrCorrupt):
		return pasteRefused("this authorization was not started by tokend")
	case err != nil:
		return wrapError(kindInternal, api.CodeInternalError, fmt.Errorf("daemon: consuming pending authorization: %w", err))
	}
	if pend.Grant != g.name {
		// Consumed, as it was presented with its own id and user: a
		// paste for another grant is a mistake it does not survive.
		return pasteRefused("the pasted address answers an authorization of grant %s, not %s", pend.Grant, g.name)
	}
	if pend.Kind != config.GrantAuthorizationCode || pend.Verifier == "" {
		return pasteRefused("this authorization was not started by tokend")
	}
	code, _, err := oauth.ParseCallback(q, prov.Endpoints.Issuer, prov.Endpoints.IssuerParameterSupported)
	if err != nil {
		d.recordAuth(g, "pasted answer rejected: "+err.Error())
		d.log.Warn("pasted authorization answer rejected", "grant", g.name, "err", err)
		return pasteRefused("grant %s was not authorized: %v", g.name, err)
	}
	if err := d.exchangeCode(ctx, g, prov, code, pend.Verifier, "authorized by pasted authorization code"); err != nil {
		return wrapError(kindProvider, api.CodeAuthorizationFailed, err)
	}
	return nil
}

// sameRedirect reports whether u is at the redirect URI (scheme, host and
// path; the query is the answer).
func sameRedirect(u *url.URL, redirect string) bool {
	r, err := url.Parse(redirect)
	return err == nil && strings.EqualFold(u.Scheme, r.Scheme) && strings.EqualFold(u.Host, r.Host) && u.Path == r.Path
}

// exchangeCode trades an authorization code for g's new token set at prov
// (a dpop grant binds it to a new key) and installs it; outcome is what
// status says of the authorization.
func (d *Daemon) exchangeCode(ctx context.Context, g *grant, prov *oauth.Provider, code, verifier, outcome string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	xprov, key, err := dpopProvider(g, prov)
	if err != nil {
		d.recordAuth(g, "code exchange failed: "+err.Error())
		return err
	}
	tok, err := xprov.Exchange(ctx, code, oauth.NewSecret(verifier), d.grantParams(g, g.cfg().TokenParams))
	if err == nil {
		err = checkDPoP(g, tok)
	}
	if err != nil {
		d.recordAuth(g, "code exchange failed: "+err.Error())
		d.log.Warn("code exchange failed", "grant", g.name, "err", err)
		return err
	}
	if tok.Scope == "" {
		// No scope in the answer: the scopes asked for (RFC 6749 §5.1),
		// which a step-up's check compares with.
		tok.Scope = strings.Join(d.authorizeScopes(g, d.grantScopes(g)), " ")
	}
	if err := d.storeAuthorized(g, tok, key, outcome); err != nil {
		d.log.Error("saving authorized token", "grant", g.name, "err", err)
		return err
	}
	return nil
}
