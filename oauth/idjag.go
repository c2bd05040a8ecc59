package oauth

// Identity assertion grants (the Identity Assertion JWT Authorization
// Grant, "ID-JAG", of enterprise-managed authorization): an identity
// provider trades a person's token (RFC 8693) for a JWT addressed to
// another authorization server, which takes it with the JWT-bearer grant
// (RFC 7523 §2.1). The two requests go to two providers; IdentityAssertion
// is the first, JWTBearer the second.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// TokenTypeIDJAG is the token type of an Identity Assertion JWT
// Authorization Grant: what is requested of the identity provider and
// what it must say it issued.
const TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"

// opIdentityAssertion names the request for an ID-JAG in errors.
const opIdentityAssertion = "identity_assertion"

// IdentityAssertionRequest asks an identity provider for an ID-JAG.
type IdentityAssertionRequest struct {
	SubjectToken     Secret // the person's token at the identity provider
	SubjectTokenType string // TokenTypeID when empty
	// Audience is the issuer of the authorization server that is to
	// take the ID-JAG; required.
	Audience string
	Resource []string // RFC 8707: the resources the token is for
	Scopes   []string // scopes at that authorization server
}

// IdentityAssertion exchanges r.SubjectToken at p (the identity provider)
// for an ID-JAG and returns it. The answer must say it issued an ID-JAG
// (issued_token_type); its token_type is N_A and is not looked at. The
// subject token and the ID-JAG are scrubbed from provider messages. It is
// safe for concurrent use.
func (p *Provider) IdentityAssertion(ctx context.Context, r IdentityAssertionRequest) (Secret, error) {
	switch {
	case r.SubjectToken.IsZero():
		return Secret{}, &Error{Op: opIdentityAssertion, Class: Configuration, Err: errors.New("no subject token")}
	case r.Audience == "":
		return Secret{}, &Error{Op: opIdentityAssertion, Class: Configuration, Err: errors.New("no audience: the issuer of the authorization server the assertion is for")}
	}
	typ := r.SubjectTokenType
	if typ == "" {
		typ = TokenTypeID
	}
	fields := url.Values{
		"subject_token":        {r.SubjectToken.Reveal()},
		"subject_token_type":   {typ},
		"requested_token_type": {TokenTypeIDJAG},
		"audience":             {r.Audience},
	}
	if len(r.Resource) > 0 {
		fields["resource"] = r.Resource
	}
	t, err := p.grant(ctx, opIdentityAssertion, grantTokenExchange, r.Scopes, nil, fields, []string{r.SubjectToken.Reveal()}, "", func(t *Token) *Error {
		if t.IssuedTokenType != TokenTypeIDJAG {
			return &Error{Op: opIdentityAssertion, Class: Configuration,
				Err: fmt.Errorf("%w: the identity provider issued %q (issued_token_type), not %s", ErrUnservable, clean(t.IssuedTokenType, 100, nil), TokenTypeIDJAG)}
		}
		return nil
	})
	if err != nil {
		return Secret{}, err
	}
	return t.AccessToken, nil
}
