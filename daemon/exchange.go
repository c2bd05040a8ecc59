package daemon

// The grants tokend re-obtains on its own besides client_credentials and
// password: jwt_bearer signs a fresh assertion for every request (RFC 7523
// §2.1), token_exchange trades another grant's current token for its own
// (RFC 8693) and follows that grant: a new subject token re-exchanges, a
// subject that needs a person puts the dependent in the same state.

import (
	"context"
	"errors"
	"fmt"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// jwtBearer signs a fresh assertion (a new jti, iat now) and exchanges it;
// or, for an identity_assertion, has an identity provider issue it.
func (d *Daemon) jwtBearer(ctx context.Context, g *grant, prov *oauth.Provider) (*oauth.Token, error) {
	gc := g.cfg()
	if gc.IdentityAssertion != nil {
		return d.identityAssertion(ctx, g, prov)
	}
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
	return prov.JWTBearer(ctx, assertion, d.grantScopes(g), d.grantParams(g, gc.TokenParams))
}

// tokenExchange trades the subject grant's current token (and the actor
// grant's) for a token of g. It asks nothing of the provider while the
// subject has no valid token: the failure names the subject grant.
func (d *Daemon) tokenExchange(ctx context.Context, g *grant, prov *oauth.Provider) (*oauth.Token, error) {
	gc := g.cfg()
	idToken, typ := gc.SubjectToken()
	subject, err := d.exchangeInput("token_exchange", "subject", gc.SubjectGrant, idToken)
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
		if req.ActorToken, err = d.exchangeInput("token_exchange", "actor", gc.ActorGrant, idToken); err != nil {
			return nil, err
		}
	}
	return prov.TokenExchange(ctx, req)
}

// exchangeInput returns the token of grant name (role "subject" or
// "actor" of an exchange, op in errors): its access token, or its id token.
func (d *Daemon) exchangeInput(op, role, name string, idToken bool) (oauth.Secret, error) {
	fail := func(class oauth.Class, format string, a ...any) (oauth.Secret, error) {
		return oauth.Secret{}, &oauth.Error{Op: op, Class: class, Description: fmt.Sprintf(format, a...)}
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
		return fail(oauth.Configuration, "%s grant %s holds no id token (%s_token_type is id_token)", role, name, role)
	case idToken:
		return oauth.NewSecret(t.IDToken), nil
	}
	return oauth.NewSecret(t.AccessToken), nil
}

// dependentsOf indexes the grants that exchange other grants' tokens
// (token_exchange: subject and actor; identity_assertion: subject) by
// those grants.
func dependentsOf(grants map[string]*grant) map[string][]*grant {
	deps := map[string][]*grant{}
	for _, g := range grants {
		for _, src := range sourcesOf(g) {
			if src != "" && src != g.name {
				deps[src] = append(deps[src], g)
			}
		}
	}
	return deps
}

// sourcesOf returns the grants whose tokens g exchanges ("" where a role
// names none).
func sourcesOf(g *grant) []string {
	gc := g.cfg()
	switch {
	case g.typ == config.GrantTokenExchange:
		return []string{gc.SubjectGrant, gc.ActorGrant}
	case g.typ == config.GrantJWTBearer && gc.IdentityAssertion != nil:
		return []string{gc.IdentityAssertion.SubjectGrant}
	}
	return nil
}

// missingSource reports whether g exchanges the token of a grant that is
// not configured.
func missingSource(g *grant, grants map[string]*grant) bool {
	for _, src := range sourcesOf(g) {
		if _, ok := grants[src]; src != "" && !ok {
			return true
		}
	}
	return g.typ == config.GrantTokenExchange && g.cfg().SubjectGrant == ""
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

// identityAssertion obtains g's token with an assertion an identity
// provider issues (enterprise-managed authorization): the subject token
// (a grant's, or the configured one) is exchanged at the identity provider
// for an ID-JAG addressed to prov's issuer, which prov then takes with the
// JWT-bearer grant. The ID-JAG is used once and not kept: it lives
// minutes, and a new token needs a new one.
func (d *Daemon) identityAssertion(ctx context.Context, g *grant, prov *oauth.Provider) (*oauth.Token, error) {
	const op = "identity_assertion"
	gc := g.cfg()
	ia := gc.IdentityAssertion
	subject := ia.SubjectToken
	if ia.SubjectGrant != "" {
		var err error
		if subject, err = d.exchangeInput(op, "subject", ia.SubjectGrant, ia.SubjectTokenURN() == oauth.TokenTypeID); err != nil {
			return nil, err
		}
	}
	aud := ia.Audience
	if aud == "" {
		aud = prov.Endpoints.Issuer
	}
	if aud == "" {
		return nil, &oauth.Error{Op: op, Class: oauth.Configuration,
			Description: fmt.Sprintf("grant %s: the authorization server has no issuer to address the ID-JAG to; set identity_assertion.audience", g.name)}
	}
	idp, err := d.clientProvider(ctx, g.name, ia.Client)
	if err != nil {
		return nil, err
	}
	resource := ia.Resource
	if r := d.resourceOf(g); len(resource) == 0 && r != "" {
		resource = []string{r}
	}
	scopes := d.grantScopes(g)
	jag, err := idp.IdentityAssertion(ctx, oauth.IdentityAssertionRequest{
		SubjectToken:     subject,
		SubjectTokenType: ia.SubjectTokenURN(),
		Audience:         aud,
		Resource:         resource,
		Scopes:           scopes,
	})
	if err != nil {
		return nil, subjectRefused(err, ia)
	}
	return prov.JWTBearer(ctx, jag, scopes, d.grantParams(g, gc.TokenParams))
}

// subjectRefused adds to the identity provider's refusal of the subject
// token (invalid_grant: expired, revoked) what a person does about it; any
// other failure is returned as it is.
func subjectRefused(err error, ia *config.IdentityAssertion) error {
	var e *oauth.Error
	if !errors.As(err, &e) || e.Class != oauth.Reauthorize {
		return err
	}
	var what string
	switch {
	case ia.SubjectGrant != "":
		what = "it is exchanged again when grant " + ia.SubjectGrant + " gets a new token"
	case ia.SubjectTokenFile != "":
		what = "put a new subject token in " + ia.SubjectTokenFile + " and run tokend reload"
	case ia.SubjectTokenCredential != "":
		what = "give credential " + ia.SubjectTokenCredential + " a new subject token and run tokend reload"
	default:
		what = "configure a new subject token"
	}
	n := *e
	desc := "the identity provider refused the subject token"
	if e.Description != "" {
		desc = e.Description + "; " + desc
	}
	n.Description = desc + ": " + what
	return &n
}

// newSubjectToken reports whether a reload gave g's identity assertion
// another subject token (from its file or credential) than prev had: the
// token the identity provider refused may have been replaced.
func newSubjectToken(prev, g *grant) bool {
	a, b := prev.cfg().IdentityAssertion, g.cfg().IdentityAssertion
	return b != nil && b.SubjectGrant == "" && (a == nil || a.SubjectToken.Reveal() != b.SubjectToken.Reveal())
}

// retryRefused lets a grant stopped by a refused input (reauthorization
// required, which no person's authorization fixes for a jwt_bearer grant)
// be tried again.
func retryRefused(t *store.Token) *store.Token {
	if t.State != api.StateReauthorizationRequired {
		return t
	}
	c := *t
	c.State = api.StateFailing
	return &c
}
