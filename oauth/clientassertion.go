package oauth

// Client authentication beyond shared secrets: client assertions
// (private_key_jwt and client_secret_jwt, RFC 7523 §2.2, OpenID Connect
// Core §9) and the mTLS endpoint aliases of clients that authenticate with a
// certificate (RFC 8705).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// assertionTypeJWT is the client_assertion_type of RFC 7523 §2.2.
const assertionTypeJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is exp - iat of client assertions: one request's worth.
const assertionLifetime = 60 * time.Second

// clientAssertion is a client's way of making client assertions
// (private_key_jwt, client_secret_jwt), set up once per operation.
type clientAssertion struct {
	id, aud string
	signer  jose.Signer
}

// make returns a fresh client assertion (RFC 7523 §3; OIDC Core §9): a new
// jti every time, since servers refuse a replayed one.
func (c *clientAssertion) make(now time.Time) (string, error) {
	return sign(c.signer, map[string]any{
		"iss": c.id, "sub": c.id, "aud": c.aud,
		"jti": newJTI(), "iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	})
}

// hmacAlgs are client_secret_jwt's algorithms, preferred first.
var hmacAlgs = []string{"HS256", "HS384", "HS512"}

// assertionMaker returns how the client makes client assertions, or nil
// when its AuthMethod uses none. A missing key, an algorithm the provider
// does not accept or a client secret too short for HMAC (RFC 7518 §3.2) is
// a Configuration error, found before anything is sent.
func (p *Provider) assertionMaker(op string) (*clientAssertion, error) {
	conf := func(format string, a ...any) error {
		return &Error{Op: op, Class: Configuration, Err: fmt.Errorf(format, a...)}
	}
	asOp := func(err error) error {
		var e *Error
		if errors.As(err, &e) {
			c := *e
			c.Op = op
			return &c
		}
		return err
	}
	var s jose.Signer
	switch p.Client.AuthMethod {
	case AuthPrivateKeyJWT, AuthSecretJWT:
		if p.Client.ID == "" {
			return nil, conf("%s needs a client_id (the issuer and subject of its assertions)", p.Client.AuthMethod)
		}
	}
	switch p.Client.AuthMethod {
	case AuthPrivateKeyJWT:
		if p.Client.Key == nil || p.Client.Key.Signer == nil {
			return nil, conf("private_key_jwt needs a private key")
		}
		alg, err := p.Client.Key.ChooseAlg(p.Endpoints.TokenAuthSigningAlgs)
		if err != nil {
			return nil, asOp(err)
		}
		if s, err = p.Client.Key.signer(alg); err != nil {
			return nil, asOp(err)
		}
	case AuthSecretJWT:
		secret := p.Client.Secret.Reveal()
		if secret == "" {
			return nil, conf("client_secret_jwt needs a client secret")
		}
		alg := ""
		for _, a := range hmacAlgs {
			if len(p.Endpoints.TokenAuthSigningAlgs) == 0 || slices.Contains(p.Endpoints.TokenAuthSigningAlgs, a) {
				alg = a
				break
			}
		}
		if alg == "" {
			return nil, conf("client_secret_jwt: the provider accepts none of HS256, HS384, HS512 (it lists %s)", clean(strings.Join(p.Endpoints.TokenAuthSigningAlgs, ", "), 200, nil))
		}
		// RFC 7518 §3.2: the key must be at least as long as the hash.
		if need := map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}[alg]; len(secret) < need {
			return nil, conf("client_secret_jwt with %s needs a client secret of at least %d bytes (RFC 7518 §3.2); this one has %d", alg, need, len(secret))
		}
		var err error
		s, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: []byte(secret)}, (&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, conf("client_secret_jwt: cannot sign with %s", alg)
		}
	default:
		return nil, nil
	}
	aud := p.endpoints().Token
	switch a := p.Client.AssertionAudience; a {
	case "":
	case "issuer":
		if p.Endpoints.Issuer == "" {
			return nil, conf("assertion audience is the issuer, but the provider has none configured or discovered")
		}
		aud = p.Endpoints.Issuer
	default:
		// A signed assertion goes only to its audience: a configured URL
		// that is neither the endpoint receiving it nor the issuer would
		// hand the receiver a credential another server accepts.
		if !AudienceOf(a, p.endpoints().Token, p.Endpoints.Issuer) {
			return nil, conf("assertion audience %s is neither the token endpoint %s that receives the assertion nor the issuer %s", clean(a, 200, nil), clean(p.endpoints().Token, 200, nil), clean(p.Endpoints.Issuer, 200, nil))
		}
		aud = a
	}
	return &clientAssertion{id: p.Client.ID, aud: aud, signer: s}, nil
}

// AudienceOf reports whether aud names the server an assertion is sent
// to: the token endpoint that receives it, or its issuer (a trailing slash
// aside).
func AudienceOf(aud, tokenEndpoint, issuer string) bool {
	switch {
	case aud == "":
		return false
	case aud == tokenEndpoint:
		return true
	}
	return issuer != "" && strings.TrimSuffix(aud, "/") == strings.TrimSuffix(issuer, "/")
}

// TokenEndpoint is the URL token requests are sent to: the provider's
// token endpoint, or its mTLS alias for a client that authenticates with a
// certificate.
func (p *Provider) TokenEndpoint() string { return p.endpoints().Token }

// usesTLSAuth reports whether the client authenticates with a certificate
// (RFC 8705), and so uses the provider's mtls_endpoint_aliases.
func (p *Provider) usesTLSAuth() bool {
	return p.Client.AuthMethod.IsCertificate()
}

// endpoints returns the endpoints this client sends to: the provider's,
// with its mtls_endpoint_aliases in their place when the client
// authenticates with a certificate (RFC 8705 §5).
func (p *Provider) endpoints() Endpoints {
	if !p.usesTLSAuth() {
		return p.Endpoints
	}
	return p.Endpoints.ForTLSClientAuth()
}

// ForTLSClientAuth returns e with the mtls_endpoint_aliases (RFC 8705 §5)
// that are set in place of the plain endpoints: where a client
// authenticating with a certificate sends its requests, registration
// included.
func (e Endpoints) ForTLSClientAuth() Endpoints {
	if e.MTLS == nil {
		return e
	}
	for _, f := range []struct {
		dst   *string
		alias string
	}{
		{&e.Token, e.MTLS.Token},
		{&e.Revocation, e.MTLS.Revocation},
		{&e.DeviceAuthorization, e.MTLS.DeviceAuthorization},
		{&e.Registration, e.MTLS.Registration},
	} {
		if f.alias != "" {
			*f.dst = f.alias
		}
	}
	return e
}
