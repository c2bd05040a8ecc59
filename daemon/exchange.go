package daemon

// The grants tokend re-obtains on its own besides client_credentials and
// password: jwt_bearer signs a fresh assertion for every request (RFC 7523
// §2.1), token_exchange trades another grant's current token for its own
// (RFC 8693) and follows that grant: a new subject token re-exchanges, a
// subject that needs a person puts the dependent in the same state.

import (
	"context"
	"fmt"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// jwtBearer signs a fresh assertion (a new jti, iat now) and exchanges it.
func (d *Daemon) jwtBearer(ctx context.Context, g *grant, prov *oauth.Provider) (*oauth.Token, error) {
	gc := g.cfg()
	a := gc.Assertion
	if a == nil {
		return nil, &oauth.Error{Op: "jwt_bearer", Class: oauth.Configuration,
			Description: fmt.Sprintf("grant %s: a jwt_bearer grant needs an assertion section", g.name)}
	}
	iss, aud := a.Issuer, a.Audience
	if sa := a.ServiceAccount; sa != nil {
		if iss == "" {
			iss = sa.ClientEmail
		}
		if aud == "" {
			aud = sa.TokenURI
		}
	}
	if aud == "" {
		aud = prov.TokenEndpoint()
	}
	// A signed assertion goes only to its audience: check-config refuses a
	// mismatch it can see; a discovered token endpoint is checked here.
	if !oauth.AudienceOf(aud, prov.TokenEndpoint(), prov.Endpoints.Issuer) {
		return nil, &oauth.Error{Op: "jwt_bearer", Class: oauth.Configuration,
			Description: fmt.Sprintf("grant %s: the assertion's audience %s is neither the token endpoint %s that would receive it nor the issuer %s; not signed",
				g.name, oauth.Printable(aud), oauth.Printable(prov.TokenEndpoint()), oauth.Printable(prov.Endpoints.Issuer))}
	}
	sub := a.Subject
	if sub == "" {
		sub = iss
	}
	assertion, err := oauth.SignAssertion(oauth.Assertion{
		Issuer: iss, Subject: sub, Audience: aud, Key: a.Key, Lifetime: a.Lifetime, Claims: a.Claims,
	}, d.clock.Now())
	if err != nil {
		return nil, &oauth.Error{Op: "jwt_bearer", Class: oauth.Configuration, Err: err,
			Description: fmt.Sprintf("grant %s: signing the assertion: %v", g.name, err)}
	}
	return prov.JWTBearer(ctx, assertion, gc.Scopes, oauth.Params(gc.TokenParams))
}

// tokenExchange trades the subject grant's current token (and the actor
// grant's) for a token of g. It asks nothing of the provider while the
// subject has no valid token: the failure names the subject grant.
func (d *Daemon) tokenExchange(ctx context.Context, g *grant, prov *oauth.Provider) (*oauth.Token, error) {
	gc := g.cfg()
	idToken, typ := gc.SubjectToken()
	subject, err := d.exchangeInput(g, "subject", gc.SubjectGrant, idToken)
	if err != nil {
		return nil, err
	}
	req := oauth.ExchangeRequest{
		SubjectToken:       subject,
		SubjectTokenType:   typ,
		RequestedTokenType: gc.RequestedTokenType,
		Audience:           gc.Audience,
		Resource:           gc.Resource,
		Scopes:             gc.Scopes,
		Params:             oauth.Params(gc.TokenParams),
	}
	if gc.ActorGrant != "" {
		idToken, req.ActorTokenType = gc.ActorToken()
		if req.ActorToken, err = d.exchangeInput(g, "actor", gc.ActorGrant, idToken); err != nil {
			return nil, err
		}
	}
	return prov.TokenExchange(ctx, req)
}

// exchangeInput returns the token of grant name (role "subject" or
// "actor" of g's exchange): its access token, or its id token.
func (d *Daemon) exchangeInput(g *grant, role, name string, idToken bool) (oauth.Secret, error) {
	fail := func(class oauth.Class, format string, a ...any) (oauth.Secret, error) {
		return oauth.Secret{}, &oauth.Error{Op: "token_exchange", Class: class, Description: fmt.Sprintf(format, a...)}
	}
	src := d.grant(name)
	if src == nil || name == "" {
		// config validates this; a reload that drops the grant must not
		// make the dependent crash or serve on.
		return fail(oauth.Configuration, "%s grant %q is not configured", role, name)
	}
	_, p := d.config()
	t := src.cur.Load()
	state := src.stateOf(t)
	usableNow := usable(d.clock.Now(), t, p)
	switch {
	case state == api.StateReauthorizationRequired || state == api.StatePendingAuthorization || !usableNow && !src.renewable(t):
		return fail(oauth.Reauthorize, "%s grant %s needs reauthorization (tokend authorize %s)", role, name, name)
	case !usableNow:
		// The dependent takes the subject's state: permanent when a
		// person must act on the subject, else retried.
		class := oauth.Transient
		switch state {
		case api.StateCredentialsError:
			class = oauth.Credentials
		case api.StateConfigurationError:
			class = oauth.Configuration
		}
		return fail(class, "%s grant %s has no valid token (%s)", role, name, state)
	case idToken && t.IDToken == "":
		return fail(oauth.Configuration, "%s grant %s holds no id token (%s_token_type id_token)", role, name, role)
	case idToken:
		return oauth.NewSecret(t.IDToken), nil
	}
	return oauth.NewSecret(t.AccessToken), nil
}

// dependentsOf indexes the token_exchange grants by the grants whose
// tokens they exchange (subject and actor).
func dependentsOf(grants map[string]*grant) map[string][]*grant {
	deps := map[string][]*grant{}
	for _, g := range grants {
		if g.typ != config.GrantTokenExchange {
			continue
		}
		gc := g.cfg()
		for _, src := range []string{gc.SubjectGrant, gc.ActorGrant} {
			if src != "" && src != g.name {
				deps[src] = append(deps[src], g)
			}
		}
	}
	return deps
}

// missingSource reports whether g exchanges the token of a grant that is
// not configured.
func missingSource(g *grant, grants map[string]*grant) bool {
	if g.typ != config.GrantTokenExchange {
		return false
	}
	gc := g.cfg()
	for _, src := range []string{gc.SubjectGrant, gc.ActorGrant} {
		if _, ok := grants[src]; src != "" && !ok {
			return true
		}
	}
	return gc.SubjectGrant == ""
}

// permanentState reports whether a grant in state waits for a person.
func permanentState(state string) bool {
	switch state {
	case api.StateReauthorizationRequired, api.StateCredentialsError, api.StateConfigurationError:
		return true
	}
	return false
}

// followSource makes the exchange grants that depend on g due at once when
// g's token set changed (prev → t): a new subject token is re-exchanged,
// and a subject that stopped for good (reauthorization, revocation, bad
// credentials or configuration) hands that on at once instead of at the
// dependents' expiry.
func (d *Daemon) followSource(g *grant, prev, t *store.Token) {
	if prev == t || !d.running.Load() {
		return
	}
	if prev != nil && prev.Generation == t.Generation && prev.AccessToken == t.AccessToken &&
		(prev.State == t.State || !permanentState(t.State)) {
		return
	}
	d.mu.RLock()
	deps := d.dependents[g.name]
	d.mu.RUnlock()
	if len(deps) == 0 {
		return
	}
	for _, dep := range deps {
		dep.sourceMoved.Store(true)
		dep.dueAt.Store(earliest)
	}
	d.queue.kick()
}
