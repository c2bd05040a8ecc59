package daemon

// DPoP (RFC 9449): a dpop grant's key pair lives with its token set in
// the store (sealed, store.Token.DPoPKey). It is made when the grant first
// obtains a token without a person, made anew for every authorization,
// and kept across refreshes; every token request of the grant carries a
// proof made with it. Programs never see the key: they ask the daemon for
// a proof of one request (POST /v1/tokens/{name}/dpop).

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// dpopKey is a parsed key and the stored form it came from. unsaved marks
// a key made for a grant's first token and not yet stored with one: the
// retries of that first request sign with the same key.
type dpopKey struct {
	raw     string
	key     *oauth.DPoPKey
	unsaved bool
}

// newDPoPKey makes a key pair for a new token chain.
func newDPoPKey(g *grant) (*dpopKey, error) {
	k, err := oauth.NewDPoPKey()
	if err == nil {
		var b []byte
		if b, err = k.Marshal(); err == nil {
			return &dpopKey{raw: string(b), key: k, unsaved: true}, nil
		}
	}
	return nil, &oauth.Error{Op: "dpop", Class: oauth.Configuration, Err: err,
		Description: fmt.Sprintf("grant %s: making a DPoP key: %v", g.name, err)}
}

// dpopKeyOf returns the key of t, parsed once and cached on the grant.
func (g *grant) dpopKeyOf(t *store.Token) (*dpopKey, error) {
	if c := g.dpop.Load(); c != nil && c.raw == t.DPoPKey {
		if c.unsaved {
			// Stored with a token now: a chain that loses it (revocation)
			// starts again with a new key.
			c = &dpopKey{raw: c.raw, key: c.key}
			g.dpop.Store(c)
		}
		return c, nil
	}
	k, err := oauth.ParseDPoPKey([]byte(t.DPoPKey))
	if err != nil {
		// The stored key's bytes are never quoted.
		return nil, &oauth.Error{Op: "dpop", Class: oauth.Configuration,
			Description: fmt.Sprintf("grant %s: the stored DPoP key cannot be read; authorize the grant again", g.name)}
	}
	c := &dpopKey{raw: t.DPoPKey, key: k}
	g.dpop.Store(c)
	return c, nil
}

// dpopKeyFor is the key a token request of g signs with: cur's, or for a
// chain that has none yet a new one, kept until a token is stored with it.
func (g *grant) dpopKeyFor(cur *store.Token) (*dpopKey, error) {
	if cur.DPoPKey != "" {
		return g.dpopKeyOf(cur)
	}
	if c := g.dpop.Load(); c != nil && c.unsaved {
		return c, nil
	}
	c, err := newDPoPKey(g)
	if err != nil {
		return nil, err
	}
	g.dpop.Store(c)
	return c, nil
}

// dpopKeyUsed is the stored form of the key a successful obtain (under
// g.op, from cur) signed with: cur's, or the new one made for the chain;
// "" for a grant without dpop.
func (g *grant) dpopKeyUsed(cur *store.Token) string {
	switch {
	case !g.dpopOn:
		return ""
	case cur.DPoPKey != "":
		return cur.DPoPKey
	}
	if c := g.dpop.Load(); c != nil && c.unsaved {
		return c.raw
	}
	return ""
}

// dpopProvider returns prov signing g's token requests with a new key pair
// for a new authorization, and that key's stored form.
func dpopProvider(g *grant, prov *oauth.Provider) (*oauth.Provider, string, error) {
	if !g.dpopOn {
		return prov, "", nil
	}
	k, err := newDPoPKey(g)
	if err != nil {
		return nil, "", err
	}
	return prov.WithDPoP(k.key), k.raw, nil
}

// tokenFits reports whether t is of the kind g hands out: DPoP-bound for a
// dpop grant, not bound otherwise. A reload that turns dpop on or off
// leaves a token of the other kind until the grant's next token.
func (g *grant) tokenFits(t *store.Token) bool {
	return t.AccessToken == "" || g.dpopOn == strings.EqualFold(t.TokenType, "DPoP")
}

// checkDPoP refuses a token of the other kind than g hands out: not
// DPoP-bound for a dpop grant (a Bearer token must never be served as if
// it were bound), or DPoP-bound for a grant without dpop (nobody could use
// it). The oauth layer refuses both too; the error carries the answer's
// refresh token, as the oauth layer's does.
func checkDPoP(g *grant, t *oauth.Token) error {
	if g.dpopOn == strings.EqualFold(t.TokenType, "DPoP") {
		return nil
	}
	e := &oauth.Error{Op: "token", Class: oauth.Configuration, Err: oauth.ErrDPoPDowngrade,
		Description:  fmt.Sprintf("%v (token_type %q)", oauth.ErrDPoPDowngrade, oauth.Printable(t.TokenType)),
		RefreshToken: t.RefreshToken, RefreshExpiry: t.RefreshExpiry}
	if !g.dpopOn {
		e.Err = oauth.ErrUnservable
		e.Description = fmt.Sprintf("%v: token_type %q, a DPoP-bound token, although dpop is not set", oauth.ErrUnservable, oauth.Printable(t.TokenType))
	}
	return e
}

// proof answers a reader's proof request: g's current token (as a fetch
// would hand it out, refreshing first when it must) and a fresh proof of
// req signed with g's key.
func (d *Daemon) proof(ctx context.Context, g *grant, req api.DPoPRequest) (*api.DPoPResponse, error) {
	if !g.dpopOn {
		return nil, newError(kindBadRequest, api.CodeDPoPNotEnabled, "grant "+g.name+" does not use DPoP (set dpop: true); fetch its token with GET")
	}
	if err := d.proofTargetAllowed(ctx, g, req.URL); err != nil {
		return nil, err
	}
	t, err := d.fetch(ctx, g)
	if err != nil {
		return nil, err
	}
	if t.DPoPKey == "" || !strings.EqualFold(t.TokenType, "DPoP") {
		return nil, newError(kindUnavailable, api.CodeTemporarilyUnavailable, "the grant holds no DPoP-bound token yet (see tokend status "+g.name+")")
	}
	k, err := g.dpopKeyOf(t)
	if err != nil {
		return nil, wrapError(kindInternal, api.CodeInternalError, err)
	}
	now := d.clock.Now()
	pr, err := k.key.Proof(req.Method, req.URL, oauth.NewSecret(t.AccessToken), req.Nonce, now)
	if err != nil {
		return nil, newError(kindBadRequest, api.CodeInvalidRequest, "cannot make a proof for this request: "+oauth.Printable(err.Error()))
	}
	_, p := d.config()
	exp := expiryOf(t, p)
	return &api.DPoPResponse{
		AccessToken: t.AccessToken,
		TokenType:   "DPoP",
		DPoP:        pr.Reveal(),
		ExpiresIn:   int64(exp.Sub(now) / time.Second),
		ExpiresAt:   exp.UTC(),
	}, nil
}

// proofTargetAllowed refuses a proof for one of the endpoints of g's
// authorization server (oauth.Endpoints.AuthorizationServerURLs): with a
// proof of the grant's key a reader could ask for tokens, push
// authorization requests, revoke or introspect as the grant, where only
// tokend may. Proofs are for resource servers.
func (d *Daemon) proofTargetAllowed(ctx context.Context, g *grant, target string) error {
	prov, err := d.providerFor(ctx, g)
	if err != nil {
		return wrapError(kindUnavailable, api.CodeTemporarilyUnavailable, err)
	}
	t := proofTarget(target)
	for _, e := range prov.Endpoints.AuthorizationServerURLs() {
		if proofTarget(e) == t {
			return newError(kindForbidden, api.CodeForbidden,
				"no proof for "+oauth.Printable(e)+": it is an endpoint of the grant's authorization server, where only tokend acts for the grant; proofs are for resource servers")
		}
	}
	return nil
}

// proofTarget normalises a URL as a server compares a proof's htu with
// its own (RFC 9449 §4.3, RFC 3986 §6.2.2-6.2.3), and then some: scheme
// and host case, a default port, query and fragment, dot segments, a
// trailing slash and the case of the path do not make another endpoint.
func proofTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" || scheme == "https" && port == "443" || scheme == "http" && port == "80" {
		port = ""
	} else {
		port = ":" + port
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	p := path.Clean("/" + u.Path)
	return scheme + "://" + host + port + strings.TrimSuffix(strings.ToLower(p), "/")
}
