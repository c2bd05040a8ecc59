package oauth

// Client authentication beyond shared secrets (RFC 7523 §2.2, OpenID Connect
// Core §9, RFC 8705), the JWT-bearer and token-exchange grants (RFC 7523
// §2.1, RFC 8693) and DPoP (RFC 9449).

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// Token type identifiers of RFC 8693 §3.
const (
	TokenTypeAccess  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"
	TokenTypeID      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
)

// Grant types and the client assertion type of RFC 7523 and RFC 8693.
const (
	grantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	assertionTypeJWT   = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// SigningKey is a private key that signs JWTs: client assertions, JWT-bearer
// assertions. It prints redacted (fmt, slog, JSON).
type SigningKey struct {
	Signer crypto.Signer // *rsa.PrivateKey, *ecdsa.PrivateKey (P-256, P-384), ed25519.PrivateKey
	KeyID  string        // "kid" header; empty sends none
	Alg    string        // "" chooses from the key (ChooseAlg)
}

// describe names the key without any of its material: type, kid, alg.
func (k SigningKey) describe() string {
	var b strings.Builder
	b.WriteString("SigningKey{")
	b.WriteString(keyType(k.Signer))
	if k.KeyID != "" {
		fmt.Fprintf(&b, " kid=%q", Printable(k.KeyID))
	}
	if k.Alg != "" {
		fmt.Fprintf(&b, " alg=%s", Printable(k.Alg))
	}
	b.WriteString(" " + redacted + "}")
	return b.String()
}

// String describes the key (type, kid, alg) with its material redacted.
func (k SigningKey) String() string { return k.describe() }

// GoString is String, for %#v.
func (k SigningKey) GoString() string { return k.describe() }

// Format prints String for every verb, so that no verb reaches the key.
func (k SigningKey) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", k.describe())
		return
	}
	fmt.Fprint(f, k.describe())
}

// LogValue makes log/slog print String.
func (k SigningKey) LogValue() slog.Value { return slog.StringValue(k.describe()) }

// MarshalJSON encodes String: a key never leaves the process through
// encoding/json.
func (k SigningKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.describe()) }

// keyType names a key's type for messages: "RSA 2048", "EC P-256", "Ed25519".
func keyType(s crypto.Signer) string {
	switch k := s.(type) {
	case nil:
		return "no key"
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", s)
}

// ServiceAccount is what a Google-style service-account JSON key file holds
// besides the key itself.
type ServiceAccount struct {
	ClientEmail string // issuer and subject of its assertions
	TokenURI    string // audience and token endpoint
	ClientID    string
}

// opKey is the Op of errors about keys and algorithms.
const opKey = "key"

func keyError(format string, a ...any) *Error {
	return &Error{Op: opKey, Class: Configuration, Err: fmt.Errorf(format, a...)}
}

// ParseSigningKey reads a private key: PEM (PKCS #8, PKCS #1, SEC 1) or a
// Google-style service-account JSON key file (then sa is not nil and the
// key's KeyID is its private_key_id). Errors never contain key material:
// parser errors are not passed on, since they may quote the input.
func ParseSigningKey(data []byte) (k SigningKey, sa *ServiceAccount, err error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		var f struct {
			Type         string `json:"type"`
			PrivateKey   string `json:"private_key"`
			PrivateKeyID string `json:"private_key_id"`
			ClientEmail  string `json:"client_email"`
			ClientID     string `json:"client_id"`
			TokenURI     string `json:"token_uri"`
		}
		if json.Unmarshal([]byte(trimmed), &f) != nil {
			return SigningKey{}, nil, keyError("key file starts with { but is not valid JSON (a service-account key file was expected)")
		}
		switch {
		case f.PrivateKey == "":
			return SigningKey{}, nil, keyError("service-account key file has no private_key")
		case f.ClientEmail == "":
			return SigningKey{}, nil, keyError("service-account key file has no client_email")
		case f.Type != "" && f.Type != "service_account":
			return SigningKey{}, nil, keyError("key file is of type %q, not service_account", clean(f.Type, 40, nil))
		}
		k, err := parsePEMKey([]byte(f.PrivateKey))
		if err != nil {
			return SigningKey{}, nil, err
		}
		k.KeyID = f.PrivateKeyID
		return k, &ServiceAccount{ClientEmail: f.ClientEmail, TokenURI: f.TokenURI, ClientID: f.ClientID}, nil
	}
	k, err = parsePEMKey(data)
	return k, nil, err
}

// parsePEMKey reads the one private key of a PEM file, skipping other
// blocks (certificates, EC PARAMETERS).
func parsePEMKey(data []byte) (SigningKey, error) {
	var found crypto.Signer
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return SigningKey{}, keyError("encrypted private keys are not supported: decrypt it (openssl pkcs8 -topk8 -nocrypt) and protect the file by its mode")
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return SigningKey{}, keyError("PEM block %q is not a supported private key (PKCS #8, PKCS #1 or SEC 1)", clean(b.Type, 40, nil))
			}
			continue
		}
		if err != nil {
			return SigningKey{}, keyError("PEM block %q does not hold a valid private key", b.Type)
		}
		if found != nil {
			return SigningKey{}, keyError("more than one private key in the file")
		}
		s, err := checkKey(key)
		if err != nil {
			return SigningKey{}, err
		}
		found = s
	}
	if found == nil {
		return SigningKey{}, keyError("no PEM private key found (PKCS #8 \"PRIVATE KEY\", PKCS #1 \"RSA PRIVATE KEY\" or SEC 1 \"EC PRIVATE KEY\")")
	}
	return SigningKey{Signer: found}, nil
}

// checkKey accepts the key types and sizes tokend signs with.
func checkKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < 2048 {
			return nil, keyError("RSA key of %d bits: at least 2048 are needed", n)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, keyError("EC key on curve %s: P-256 or P-384 is needed", k.Curve.Params().Name)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey:
		return *k, nil
	}
	return nil, keyError("unsupported key type %T: RSA, EC P-256/P-384 or Ed25519 is needed", key)
}

// algsFor lists the algorithms a key can make, the preferred first.
func algsFor(s crypto.Signer) []string {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		return []string{"RS256", "PS256", "RS384", "PS384", "RS512", "PS512"}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		}
	case ed25519.PrivateKey:
		return []string{"EdDSA"}
	}
	return nil
}

// ChooseAlg returns k.Alg when set (checked against the key's type), else
// the first of supported (a provider's *_signing_alg_values_supported; nil:
// any) the key can make, preferring RS256/ES256/ES384/EdDSA by key type.
// When none fits, the error (class Configuration) says what the key can
// make and what the provider accepts.
func (k SigningKey) ChooseAlg(supported []string) (string, error) {
	can := algsFor(k.Signer)
	if len(can) == 0 {
		return "", keyError("unsupported key type %s: RSA, EC P-256/P-384 or Ed25519 is needed", keyType(k.Signer))
	}
	if k.Alg != "" {
		if !slices.Contains(can, k.Alg) {
			return "", keyError("signing_alg %s does not fit the %s key (it can make %s)", Printable(k.Alg), keyType(k.Signer), strings.Join(can, ", "))
		}
		if len(supported) > 0 && !slices.Contains(supported, k.Alg) {
			return "", keyError("signing_alg %s is not one the provider accepts (%s)", Printable(k.Alg), clean(strings.Join(supported, ", "), 200, nil))
		}
		return k.Alg, nil
	}
	if len(supported) == 0 || slices.Contains(supported, can[0]) {
		return can[0], nil
	}
	for _, a := range supported {
		if slices.Contains(can, a) {
			return a, nil
		}
	}
	return "", keyError("the provider accepts %s, none of which a %s key can make (%s)", clean(strings.Join(supported, ", "), 200, nil), keyType(k.Signer), strings.Join(can, ", "))
}

// signer returns a go-jose signer for alg with k's key and kid, typ JWT.
func (k SigningKey) signer(alg string) (jose.Signer, error) {
	var key any = k.Signer
	switch k.Signer.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		key = cryptosigner.Opaque(k.Signer) // an HSM or agent key
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.KeyID != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), k.KeyID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		return nil, keyError("cannot sign with %s and the %s key", alg, keyType(k.Signer))
	}
	return s, nil
}

// JWKS returns the public key as a JWK Set ({"keys":[…]}) with kid, use
// "sig" and alg, for dynamic registration (RFC 7591 jwks). The alg is the
// key's only one (EC, Ed25519) or k.Alg; an RSA key without k.Alg has none,
// since it may sign with RS256 or PS256 as the provider allows
// (ChooseAlg), and a server refuses a signature whose alg is not its key's.
func (k SigningKey) JWKS() (json.RawMessage, error) {
	alg, err := k.ChooseAlg(nil)
	if err != nil {
		return nil, err
	}
	if len(algsFor(k.Signer)) > 1 && k.Alg == "" {
		alg = ""
	}
	jwk := jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KeyID, Use: "sig", Algorithm: alg}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, keyError("cannot encode the public key as a JWK")
	}
	return b, nil
}

// newJTI returns a unique JWT ID: 128 random bits, base64url.
func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign signs claims as a compact JWS.
func sign(s jose.Signer, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", keyError("cannot encode claims: %v", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", keyError("signing failed")
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		return "", keyError("signing failed")
	}
	return out, nil
}

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

// DPoPKey is a grant's DPoP key pair (ES256) and the nonces servers gave
// it. Safe for concurrent use. It prints redacted.
type DPoPKey struct {
	signer *ecdsa.PrivateKey
	jose   jose.Signer // typ dpop+jwt, alg ES256, the public key as jwk header
	jkt    string

	mu     sync.Mutex
	nonces map[string]string // origin → last DPoP-Nonce
}

// opDPoP is the Op of errors about DPoP keys and proofs.
const opDPoP = "dpop"

func newDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	if priv.Curve != elliptic.P256() {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not an ES256 (P-256) key")}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot sign with the DPoP key")}
	}
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot compute the DPoP key's thumbprint")}
	}
	return &DPoPKey{signer: priv, jose: s, jkt: base64.RawURLEncoding.EncodeToString(tp), nonces: map[string]string{}}, nil
}

// NewDPoPKey generates a fresh ES256 key.
func NewDPoPKey() (*DPoPKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Transient, Err: err}
	}
	return newDPoPKey(priv)
}

// ParseDPoPKey reads a key written by Marshal. Errors never contain key
// material.
func ParseDPoPKey(b []byte) (*DPoPKey, error) {
	var jwk jose.JSONWebKey
	if json.Unmarshal(b, &jwk) != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not a valid JWK")}
	}
	priv, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not an EC private key")}
	}
	return newDPoPKey(priv)
}

// Marshal returns the private key for sealed storage (a private JWK).
func (k *DPoPKey) Marshal() ([]byte, error) {
	b, err := json.Marshal(jose.JSONWebKey{Key: k.signer, Algorithm: string(jose.ES256), Use: "sig"})
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot encode the DPoP key")}
	}
	return b, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key (jkt).
func (k *DPoPKey) Thumbprint() string { return k.jkt }

func (k *DPoPKey) describe() string {
	if k == nil {
		return "DPoPKey{}"
	}
	return "DPoPKey{ES256 jkt=" + k.jkt + " " + redacted + "}"
}

// String describes the key by its thumbprint, with the private key redacted.
func (k *DPoPKey) String() string { return k.describe() }

// GoString is String, for %#v.
func (k *DPoPKey) GoString() string { return k.describe() }

// Format prints String for every verb.
func (k *DPoPKey) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", k.describe())
		return
	}
	fmt.Fprint(f, k.describe())
}

// LogValue makes log/slog print String.
func (k *DPoPKey) LogValue() slog.Value { return slog.StringValue(k.describe()) }

// MarshalJSON encodes String; Marshal is the way to store the key.
func (k *DPoPKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.describe()) }

// htu returns target without query and fragment (RFC 9449 §4.2), and its
// origin (scheme://host) for the nonce memory.
func htu(target string) (htu, origin string, err error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP target is not an absolute http(s) URL")}
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, scheme + "://" + host, nil
}

// Proof returns a DPoP proof JWT for one request: htm=method, htu=target
// without query and fragment, iat=now, a unique jti, nonce when not empty,
// and ath (base64url SHA-256 of accessToken) when accessToken is not zero.
func (k *DPoPKey) Proof(method, target string, accessToken Secret, nonce string, now time.Time) (Secret, error) {
	u, _, err := htu(target)
	if err != nil {
		return Secret{}, err
	}
	if method == "" || !isHTTPToken(method) {
		return Secret{}, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP method is not an HTTP method")}
	}
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce,omitempty"`
		ATH   string `json:"ath,omitempty"`
	}{JTI: newJTI(), HTM: method, HTU: u, IAT: now.Unix(), Nonce: nonce}
	if !accessToken.IsZero() {
		h := sha256.Sum256([]byte(accessToken.Reveal()))
		claims.ATH = base64.RawURLEncoding.EncodeToString(h[:])
	}
	jwt, err := sign(k.jose, claims)
	if err != nil {
		return Secret{}, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("signing the DPoP proof failed")}
	}
	return NewSecret(jwt), nil
}

// Nonce returns the last DPoP-Nonce the origin of target gave this key ("" if none).
func (k *DPoPKey) Nonce(target string) string {
	_, origin, err := htu(target)
	if err != nil {
		return ""
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nonces[origin]
}

// SetNonce remembers a DPoP-Nonce the origin of target gave (RFC 9449 §8):
// for a resource server's answers, which this package does not see. A
// nonce over MaxDPoPNonce bytes, or with characters other than visible
// ASCII, is not kept.
func (k *DPoPKey) SetNonce(target, nonce string) {
	_, origin, err := htu(target)
	if err != nil || nonce == "" || len(nonce) > MaxDPoPNonce || !isVisibleASCII(nonce) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nonces[origin] = nonce
}

// WithDPoP returns a copy of p that sends a DPoP proof made with k with every
// token-endpoint request (token, refresh, exchange, jwt-bearer, device
// polling), retries once on error use_dpop_nonce with the DPoP-Nonce the
// server sent, remembers nonces per origin in k, and refuses an answer whose
// token_type is not DPoP: a Configuration error wrapping ErrDPoPDowngrade,
// never a silent Bearer token. A nil k returns a copy without DPoP.
func (p *Provider) WithDPoP(k *DPoPKey) *Provider {
	q := *p
	q.dpop = k
	return &q
}

// ErrDPoPDowngrade is the cause of a refused answer: DPoP was asked for and
// the provider returned another token_type.
var ErrDPoPDowngrade = errors.New("provider returned a token that is not DPoP-bound although dpop is set")

// MaxDPoPNonce bounds the DPoP-Nonce a server may give (bytes): a longer
// one is not kept, and a demand for one is ErrDPoPNonceTooLong.
const MaxDPoPNonce = 1 << 10

// ErrDPoPNonceTooLong is the cause of a failure where the token endpoint
// demanded a DPoP nonce longer than MaxDPoPNonce (a Configuration error).
var ErrDPoPNonceTooLong = errors.New("DPoP-Nonce over the 1 KiB bound")

// ErrDPoPNonceLoop is the cause of a failure where the server demanded a
// new DPoP nonce again after the retry that carried the nonce it gave.
var ErrDPoPNonceLoop = errors.New("the server keeps demanding a new DPoP nonce (nonce loop)")
