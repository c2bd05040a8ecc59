package oauth

// Token exchange (RFC 8693).

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Token type identifiers of RFC 8693 §3.
const (
	TokenTypeAccess  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"
	TokenTypeID      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
)

// grantTokenExchange is the grant_type of RFC 8693 §2.1.
const grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

// ExchangeRequest is an RFC 8693 token exchange request.
type ExchangeRequest struct {
	SubjectToken       Secret
	SubjectTokenType   string // TokenTypeAccess when empty
	ActorToken         Secret // zero: none
	ActorTokenType     string // TokenTypeAccess when empty and ActorToken set
	RequestedTokenType string // optional
	Audience           []string
	Resource           []string
	Scopes             []string
	Params             Params
}

// TokenExchange performs an RFC 8693 token exchange. An answer's
// issued_token_type is in Token.IssuedTokenType and must be the requested
// type (issuedAsRequested); token_type "N_A" is accepted. Params cannot set audience or resource (use the fields). The
// subject and actor tokens are scrubbed from provider messages. It is safe
// for concurrent use.
func (p *Provider) TokenExchange(ctx context.Context, r ExchangeRequest) (*Token, error) {
	if r.SubjectToken.IsZero() {
		return nil, &Error{Op: opTokenExchange, Class: Configuration, Err: errors.New("no subject token")}
	}
	for _, k := range []string{"audience", "resource"} {
		if _, ok := r.Params[k]; ok {
			return nil, &Error{Op: opTokenExchange, Class: Configuration, Err: fmt.Errorf("parameter %q is set by the grant and cannot be overridden", k)}
		}
	}
	typ := r.SubjectTokenType
	if typ == "" {
		typ = TokenTypeAccess
	}
	fields := url.Values{"subject_token": {r.SubjectToken.Reveal()}, "subject_token_type": {typ}}
	secrets := []string{r.SubjectToken.Reveal()}
	if !r.ActorToken.IsZero() {
		at := r.ActorTokenType
		if at == "" {
			at = TokenTypeAccess
		}
		fields.Set("actor_token", r.ActorToken.Reveal())
		fields.Set("actor_token_type", at)
		secrets = append(secrets, r.ActorToken.Reveal())
	}
	if r.RequestedTokenType != "" {
		fields.Set("requested_token_type", r.RequestedTokenType)
	}
	if len(r.Audience) > 0 {
		fields["audience"] = r.Audience
	}
	if len(r.Resource) > 0 {
		fields["resource"] = r.Resource
	}
	return p.grant(ctx, opTokenExchange, grantTokenExchange, r.Scopes, r.Params, fields, secrets, "", func(t *Token) *Error {
		return issuedAsRequested(r.RequestedTokenType, t)
	})
}

// issuedAsRequested checks a token exchange answer's issued_token_type
// (RFC 8693 §2.2.1): the requested type, or, when none was requested, an
// access token or a JWT, which is what the caller serves as an access
// token. An answer without issued_token_type (which RFC 8693 requires) is
// taken for an access token, as any token endpoint answer is. Anything
// else (a refresh token, an id token, a SAML assertion) is unservable.
func issuedAsRequested(requested string, t *Token) *Error {
	issued := t.IssuedTokenType
	if issued == "" {
		issued = TokenTypeAccess
	}
	switch {
	case requested != "" && issued == requested:
		return nil
	case requested == "" && (issued == TokenTypeAccess || issued == TokenTypeJWT):
		return nil
	}
	want := requested
	if want == "" {
		want = TokenTypeAccess + " or " + TokenTypeJWT
	}
	return &Error{Op: opTokenExchange, Class: Configuration,
		Err: fmt.Errorf("%w: the provider issued %q (issued_token_type), not %s", ErrUnservable, clean(t.IssuedTokenType, 100, nil), want)}
}
