package oauth

// The JWT-bearer grant (RFC 7523 §2.1): signing its assertion and
// exchanging it for a token.

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"time"
)

// grantJWTBearer is the grant_type of RFC 7523 §2.1.
const grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Assertion is a JWT-bearer grant assertion (RFC 7523 §3).
type Assertion struct {
	Issuer   string
	Subject  string
	Audience string
	Key      SigningKey
	Lifetime time.Duration  // exp - iat; 0 means 5 minutes
	Claims   map[string]any // extra claims; cannot override iss, sub, aud, iat, exp, jti
}

// reservedClaims are the claims SignAssertion sets itself.
var reservedClaims = []string{"iss", "sub", "aud", "iat", "exp", "jti"}

// SignAssertion signs a with a unique jti, iat = now, exp = now+Lifetime,
// with the algorithm ChooseAlg(nil) picks and the key's kid. An empty
// Subject sends no sub: RFC 7523 §3 wants one (the config layer sets it),
// but Google's service accounts take an assertion without sub as the
// account itself, as golang.org/x/oauth2/jwt sends it. Extra claims naming
// a reserved claim are a Configuration error.
func SignAssertion(a Assertion, now time.Time) (Secret, error) {
	if a.Issuer == "" || a.Audience == "" {
		return Secret{}, keyError("an assertion needs an issuer and an audience")
	}
	alg, err := a.Key.ChooseAlg(nil)
	if err != nil {
		return Secret{}, err
	}
	s, err := a.Key.signer(alg)
	if err != nil {
		return Secret{}, err
	}
	life := a.Lifetime
	if life <= 0 {
		life = 5 * time.Minute
	}
	claims := make(map[string]any, len(a.Claims)+6)
	for k, v := range a.Claims {
		if slices.Contains(reservedClaims, k) {
			return Secret{}, keyError("claim %q is set by tokend and cannot be overridden", clean(k, 40, nil))
		}
		claims[k] = v
	}
	claims["iss"], claims["aud"] = a.Issuer, a.Audience
	if a.Subject != "" {
		claims["sub"] = a.Subject
	}
	claims["iat"], claims["exp"], claims["jti"] = now.Unix(), now.Add(life).Unix(), newJTI()
	jwt, err := sign(s, claims)
	if err != nil {
		return Secret{}, err
	}
	return NewSecret(jwt), nil
}

// JWTBearer obtains a token with the JWT-bearer grant (RFC 7523 §2.1,
// grant_type urn:ietf:params:oauth:grant-type:jwt-bearer), authenticating
// the client as configured (none for an anonymous client). The assertion
// is scrubbed from provider messages. It is safe for concurrent use.
func (p *Provider) JWTBearer(ctx context.Context, assertion Secret, scopes []string, params Params) (*Token, error) {
	if assertion.IsZero() {
		return nil, &Error{Op: opJWTBearer, Class: Configuration, Err: errors.New("no assertion")}
	}
	return p.grant(ctx, opJWTBearer, grantJWTBearer, scopes, params, url.Values{"assertion": {assertion.Reveal()}}, []string{assertion.Reveal()}, "", nil)
}
