package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// reservedParams are the token request parameters this package sets itself;
// Params may not override them.
var reservedParams = map[string]bool{
	"grant_type": true, "scope": true, "code": true, "code_verifier": true,
	"redirect_uri": true, "refresh_token": true, "username": true,
	"password": true, "client_id": true, "client_secret": true,
	"device_code": true, "client_assertion": true, "client_assertion_type": true,
	"assertion": true, "subject_token": true, "subject_token_type": true,
	"actor_token": true, "actor_token_type": true, "requested_token_type": true,
}

// authRequestParams are the authorization request parameters AuthCodeURL
// sets itself; Params cannot override them.
var authRequestParams = map[string]bool{
	"response_type": true, "client_id": true, "redirect_uri": true,
	"scope": true, "state": true, "code_challenge": true,
	"code_challenge_method": true, "nonce": true,
}

// clientAuth returns the x/oauth2 auth style and the secret to send for the
// client's AuthMethod. It never returns AuthStyleAutoDetect, which retries a
// failed request the other way.
func (p *Provider) clientAuth(op string) (oauth2.AuthStyle, string, error) {
	switch p.Client.AuthMethod {
	case AuthBasic:
		return oauth2.AuthStyleInHeader, p.Client.Secret.Reveal(), nil
	case AuthPost:
		return oauth2.AuthStyleInParams, p.Client.Secret.Reveal(), nil
	case AuthNone, AuthTLS, AuthSelfSignedTLS, AuthPrivateKeyJWT, AuthSecretJWT:
		// client_id in the body, no secret even if one is configured:
		// the certificate (in the HTTP client) or the client assertion
		// (added by the probe) authenticates.
		return oauth2.AuthStyleInParams, "", nil
	case "":
		if p.Client.Secret.IsZero() {
			return oauth2.AuthStyleInParams, "", nil
		}
		return oauth2.AuthStyleInHeader, p.Client.Secret.Reveal(), nil // RFC 7591 §2's default
	}
	return 0, "", &Error{Op: op, Class: Configuration, Err: fmt.Errorf("unsupported client authentication method %q", p.Client.AuthMethod)}
}

// config is the x/oauth2 view of the provider.
func (p *Provider) config(op string, scopes []string) (*oauth2.Config, error) {
	style, secret, err := p.clientAuth(op)
	if err != nil {
		return nil, err
	}
	ep := p.endpoints()
	return &oauth2.Config{
		ClientID:     p.Client.ID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       ep.Authorization,
			DeviceAuthURL: ep.DeviceAuthorization,
			TokenURL:      ep.Token,
			AuthStyle:     style,
		},
		RedirectURL: p.Client.RedirectURI,
		Scopes:      scopes,
	}, nil
}

func checkParams(op string, params Params) error {
	for k := range params {
		if reservedParams[k] {
			return &Error{Op: op, Class: Configuration, Err: fmt.Errorf("parameter %q is set by the grant and cannot be overridden", k)}
		}
	}
	return nil
}

// needEndpoint checks, before a request is sent, that the endpoint is set
// and follows CheckEndpointURL's rule, wherever it came from (the
// configuration, discovery, a cache of either, a caller).
func needEndpoint(op, name, u string) error {
	if u == "" {
		return &Error{Op: op, Class: Configuration, Err: fmt.Errorf("provider has no %s endpoint", name)}
	}
	if err := CheckEndpointURL(u); err != nil {
		return &Error{Op: op, Class: Configuration, Err: fmt.Errorf("%s endpoint %w", name, err)}
	}
	return nil
}

// AuthCodeURL returns the authorization URL with response_type=code,
// client_id, redirect_uri, scope, state, code_challenge (S256) and nonce,
// plus r.Params (which cannot override those). It is safe for concurrent
// use.
func (p *Provider) AuthCodeURL(r AuthRequest) string {
	cfg := &oauth2.Config{
		ClientID:    p.Client.ID,
		Endpoint:    oauth2.Endpoint{AuthURL: p.Endpoints.Authorization},
		RedirectURL: p.Client.RedirectURI,
		Scopes:      r.Scopes,
	}
	var opts []oauth2.AuthCodeOption
	for k, v := range r.Params {
		if !authRequestParams[k] {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	if !r.Verifier.IsZero() {
		opts = append(opts, oauth2.S256ChallengeOption(r.Verifier.Reveal()))
	}
	if r.Nonce != "" {
		opts = append(opts, oauth2.SetAuthURLParam("nonce", r.Nonce))
	}
	return cfg.AuthCodeURL(r.State, opts...)
}

// Exchange trades an authorization code (with its PKCE verifier; zero sends
// none) for tokens, sending the client's redirect URI. It is safe for
// concurrent use.
func (p *Provider) Exchange(ctx context.Context, code string, verifier Secret, params Params) (*Token, error) {
	if err := needEndpoint(opExchange, "token", p.endpoints().Token); err != nil {
		return nil, err
	}
	if err := checkParams(opExchange, params); err != nil {
		return nil, err
	}
	cfg, err := p.config(opExchange, nil)
	if err != nil {
		return nil, err
	}
	var opts []oauth2.AuthCodeOption
	if !verifier.IsZero() {
		opts = append(opts, oauth2.VerifierOption(verifier.Reveal()))
	}
	for k, v := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	pr, hc, err := p.tokenProbe(opExchange)
	if err != nil {
		return nil, err
	}
	tok, err := cfg.Exchange(withClient(ctx, hc), code, opts...)
	if err != nil {
		return nil, tokenAnswerError(opExchange, p.now(), pr, err, []string{code, verifier.Reveal(), cfg.ClientSecret}, "")
	}
	return p.finish(opExchange, pr, tok, "", nil)
}

// tokenProbe returns the probe and client for a request to the token
// endpoint: with the client's assertions and, after WithDPoP, DPoP proofs.
func (p *Provider) tokenProbe(op string) (*probe, *http.Client, error) {
	a, err := p.assertionMaker(op)
	if err != nil {
		return nil, nil, err
	}
	pr, hc := newProbe(p.HTTP, p.now, "token endpoint")
	pr.assertion, pr.dpop = a, p.dpop
	return pr, hc, nil
}

// finish checks a token answer x/oauth2 accepted (checkToken, servable)
// and converts it. accept, when set, is the operation's own check of the
// converted answer (token exchange: issued_token_type). A refused answer's
// refresh token travels in the error (keepRefresh).
func (p *Provider) finish(op string, pr *probe, tok *oauth2.Token, sentRefresh string, accept func(*Token) *Error) (*Token, error) {
	r := pr.last()
	if e := checkToken(op, r, tok); e != nil {
		return nil, keepRefresh(e, r, sentRefresh)
	}
	t := convert(tok, r.sent, sentRefresh)
	e := p.servable(op, r.status, t)
	if e == nil && accept != nil {
		e = accept(t)
	}
	if e != nil {
		return nil, keepRefresh(e, r, sentRefresh)
	}
	if p.dpop != nil {
		t.TokenType = "DPoP"
	}
	return t, nil
}

// ErrUnservable is the cause (test with errors.Is) of a refused answer that
// holds no token tokend can serve as asked: a DPoP-bound token where dpop is
// not set, no access_token, a token exchange that issued another type of
// token than the one requested. Such an answer is a Configuration error:
// asking again gets the same answer.
var ErrUnservable = errors.New("the provider's answer holds no token that can be served for this grant")

// servable refuses an answer whose token_type is not the kind asked for:
// with DPoP, a token_type other than DPoP (the token would be a bearer
// token, usable by whoever sees it, where the configuration asked for one
// bound to a key: ErrDPoPDowngrade); without, token_type DPoP (the token
// is bound to a key this request did not prove, and nobody could use it:
// ErrUnservable).
func (p *Provider) servable(op string, status int, t *Token) *Error {
	dpop := strings.EqualFold(t.TokenType, "DPoP")
	switch {
	case p.dpop != nil && !dpop:
		return &Error{Op: op, Status: status, Class: Configuration,
			Err: fmt.Errorf("%w (token_type %q)", ErrDPoPDowngrade, clean(t.TokenType, 40, nil))}
	case p.dpop == nil && dpop:
		return &Error{Op: op, Status: status, Class: Configuration,
			Err: fmt.Errorf("%w: the provider returned token_type %q, a DPoP-bound token, although dpop is not set", ErrUnservable, clean(t.TokenType, 40, nil))}
	}
	return nil
}

// tokenAnswerError is the *Error for a token request x/oauth2 failed. A
// 2xx answer that parses and carries no access_token (nor an error code)
// is unservable, not malformed: the provider meant it, and asking again
// gets the same answer. A refresh token in a 2xx answer travels in the
// error (keepRefresh).
func tokenAnswerError(op string, now time.Time, pr *probe, err error, secrets []string, sentRefresh string) *Error {
	e := fromXOAuth2(op, now, pr, err, "access_token", secrets)
	r := pr.last()
	if r.status < 200 || r.status > 299 {
		return e
	}
	if e.Code == "" && errors.Is(e, ErrMalformed) {
		if f, ok := answerFields(r); ok && f["access_token"] == "" {
			e.Class = Configuration
			e.Err = fmt.Errorf("%w: %w", ErrUnservable, e.Err)
		}
	}
	return keepRefresh(e, r, sentRefresh)
}

// answerFields returns the string fields of a complete 2xx answer that is
// a JSON object or a form; false when it is neither.
func answerFields(r reply) (map[string]string, bool) {
	if !r.complete || len(r.body) == 0 {
		return nil, false
	}
	out := map[string]string{}
	if isFormAnswer(r.header) {
		q, err := url.ParseQuery(string(r.body))
		if err != nil {
			return nil, false
		}
		for k := range q {
			out[k] = q.Get(k)
		}
		return out, true
	}
	var m map[string]any
	if json.Unmarshal(r.body, &m) != nil || m == nil {
		return nil, false
	}
	for k, v := range m {
		switch x := v.(type) {
		case string:
			out[k] = x
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		}
	}
	return out, true
}

// keepRefresh puts the refresh token of a refused 2xx answer into e: the
// provider may have retired the one that was sent (rotation) the moment it
// answered, so whatever else is wrong with the answer, the caller must keep
// this one or lose the grant. Only a new refresh token is carried (not the
// one sent), and only one that could be sent back (visible ASCII).
func keepRefresh(e *Error, r reply, sentRefresh string) *Error {
	if r.status < 200 || r.status > 299 {
		return e
	}
	f, ok := answerFields(r)
	if !ok {
		return e
	}
	rt := f["refresh_token"]
	if rt == "" || rt == sentRefresh || !isVisibleASCII(rt) || len(rt) > maxRefreshToken {
		return e
	}
	e.RefreshToken = NewSecret(rt)
	for _, k := range []string{"refresh_token_expires_in", "refresh_expires_in"} {
		if in, ok := seconds(f[k]); ok {
			e.RefreshExpiry = r.sent.Add(in)
			break
		}
	}
	return e
}

// maxRefreshToken bounds a refresh token kept from a refused answer.
const maxRefreshToken = 16 << 10

// Refresh uses a refresh token (RFC 6749 §6), sending scopes (if any) and
// params. A response without a refresh token returns a Token whose
// RefreshToken is zero: the caller keeps the old one. It is safe for
// concurrent use.
func (p *Provider) Refresh(ctx context.Context, refresh Secret, scopes []string, params Params) (*Token, error) {
	return p.grant(ctx, opRefresh, "refresh_token", scopes, params, url.Values{"refresh_token": {refresh.Reveal()}}, []string{refresh.Reveal()}, refresh.Reveal(), nil)
}

// ClientCredentials obtains a token with the client_credentials grant
// (RFC 6749 §4.4). It is safe for concurrent use.
func (p *Provider) ClientCredentials(ctx context.Context, scopes []string, params Params) (*Token, error) {
	return p.grant(ctx, opClientCredentials, "client_credentials", scopes, params, nil, nil, "", nil)
}

// Password obtains a token with the resource owner password grant
// (RFC 6749 §4.3). It is safe for concurrent use.
func (p *Provider) Password(ctx context.Context, username string, password Secret, scopes []string, params Params) (*Token, error) {
	return p.grant(ctx, opPassword, "password", scopes, params, url.Values{"username": {username}, "password": {password.Reveal()}}, []string{password.Reveal()}, "", nil)
}

// grant sends a token request through clientcredentials.Config, whose
// EndpointParams may set grant_type: one code path, x/oauth2's, for every
// grant that is a plain form POST. secrets are the grant's own (refresh
// token, password, assertion, subject token), scrubbed from provider
// messages; sentRefresh is the refresh token of a refresh request.
func (p *Provider) grant(ctx context.Context, op, grantType string, scopes []string, params Params, fields url.Values, secrets []string, sentRefresh string, accept func(*Token) *Error) (*Token, error) {
	if err := needEndpoint(op, "token", p.endpoints().Token); err != nil {
		return nil, err
	}
	if err := checkParams(op, params); err != nil {
		return nil, err
	}
	style, clientSecret, err := p.clientAuth(op)
	if err != nil {
		return nil, err
	}
	form := url.Values{"grant_type": {grantType}}
	for k, v := range fields {
		form[k] = v
	}
	for k, v := range params {
		form.Set(k, v)
	}
	cfg := &clientcredentials.Config{
		ClientID:       p.Client.ID,
		ClientSecret:   clientSecret,
		TokenURL:       p.endpoints().Token,
		Scopes:         scopes,
		EndpointParams: form,
		AuthStyle:      style,
	}
	pr, hc, err := p.tokenProbe(op)
	if err != nil {
		return nil, err
	}
	tok, err := cfg.Token(withClient(ctx, hc))
	if err != nil {
		return nil, tokenAnswerError(op, p.now(), pr, err, append(secrets, clientSecret), sentRefresh)
	}
	return p.finish(op, pr, tok, sentRefresh, accept)
}

// convert builds a Token from x/oauth2's (checked by checkToken), with
// times from obtained (the injected clock when the request was sent). The
// scope goes through Printable. sentRefresh is the refresh
// token of a refresh request: x/oauth2 copies it into an answer that had
// none, and the contract is to return none.
func convert(t *oauth2.Token, obtained time.Time, sentRefresh string) *Token {
	out := &Token{
		AccessToken: NewSecret(t.AccessToken),
		// Type() normalises any case of bearer to "Bearer" (and an absent
		// token_type to "Bearer", which is what the caller would assume).
		TokenType:    t.Type(),
		RefreshToken: NewSecret(t.RefreshToken),
		IDToken:      NewSecret(extraString(t, "id_token")),
		Scope:        Printable(extraString(t, "scope")),
		Obtained:     obtained,
		// RFC 8693 §2.2.1; a token type URI, through Printable like scope.
		IssuedTokenType: Printable(extraString(t, "issued_token_type")),
	}
	if sentRefresh != "" && t.RefreshToken == sentRefresh && extraString(t, "refresh_token") == "" {
		out.RefreshToken = Secret{}
	}
	// clientcredentials drops ExpiresIn; the raw answer has it.
	in, ok := seconds(t.Extra("expires_in"))
	if !ok && t.ExpiresIn > 0 {
		in, ok = time.Duration(t.ExpiresIn)*time.Second, true
	}
	if ok {
		out.ExpiresIn = in
		out.Expiry = obtained.Add(in)
	}
	for _, k := range []string{"refresh_token_expires_in", "refresh_expires_in"} {
		if in, ok := seconds(t.Extra(k)); ok {
			out.RefreshExpiry = obtained.Add(in)
			break
		}
	}
	return out
}

// extraString returns a string field of the raw answer. A form-encoded
// answer's numeric values come back from Extra as numbers.
func extraString(t *oauth2.Token, key string) string {
	switch v := t.Extra(key).(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// seconds reads a lifetime in seconds given as a JSON number or a string;
// false when absent, invalid or not positive. It caps at MaxInt32 seconds
// (68 years), as x/oauth2 does, so no arithmetic overflows.
func seconds(v any) (time.Duration, bool) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case int64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case string:
		var err error
		if f, err = strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || f < 1 {
		return 0, false
	}
	return time.Duration(min(f, math.MaxInt32)) * time.Second, true
}
