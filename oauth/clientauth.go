package oauth

// Client authentication beyond shared secrets (RFC 7523 §2.2, OpenID Connect
// Core §9, RFC 8705), the JWT-bearer and token-exchange grants (RFC 7523
// §2.1, RFC 8693) and DPoP (RFC 9449).
//
// CONTRACT (issue 14): the exported names and signatures in this file are
// what the daemon codes against; their bodies are being written.

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"time"
)

// More client authentication methods (Client.AuthMethod).
const (
	AuthPrivateKeyJWT AuthMethod = "private_key_jwt"
	AuthSecretJWT     AuthMethod = "client_secret_jwt"
	AuthTLS           AuthMethod = "tls_client_auth"
	AuthSelfSignedTLS AuthMethod = "self_signed_tls_client_auth"
)

// Token type identifiers of RFC 8693 §3.
const (
	TokenTypeAccess  = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeRefresh = "urn:ietf:params:oauth:token-type:refresh_token"
	TokenTypeID      = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeJWT     = "urn:ietf:params:oauth:token-type:jwt"
)

var errNotYet = errors.New("not implemented yet")

// SigningKey is a private key that signs JWTs: client assertions, JWT-bearer
// assertions. It prints redacted (fmt, slog, JSON).
type SigningKey struct {
	Signer crypto.Signer // *rsa.PrivateKey, *ecdsa.PrivateKey (P-256, P-384), ed25519.PrivateKey
	KeyID  string        // "kid" header; empty sends none
	Alg    string        // "" chooses from the key (ChooseAlg)
}

// ServiceAccount is what a Google-style service-account JSON key file holds
// besides the key itself.
type ServiceAccount struct {
	ClientEmail string // issuer and subject of its assertions
	TokenURI    string // audience and token endpoint
	ClientID    string
}

// ParseSigningKey reads a private key: PEM (PKCS #8, PKCS #1, SEC 1) or a
// Google-style service-account JSON key file (then sa is not nil and the
// key's KeyID is its private_key_id). Errors never contain key material.
func ParseSigningKey(data []byte) (k SigningKey, sa *ServiceAccount, err error) {
	return SigningKey{}, nil, errNotYet
}

// ChooseAlg returns k.Alg when set (checked against the key's type), else
// the first of supported (a provider's *_signing_alg_values_supported; nil:
// any) the key can make, preferring RS256/ES256/ES384/EdDSA by key type.
func (k SigningKey) ChooseAlg(supported []string) (string, error) { return "", errNotYet }

// JWKS returns the public key as a JWK Set ({"keys":[…]}) with kid, use
// "sig" and alg, for dynamic registration (RFC 7591 jwks).
func (k SigningKey) JWKS() (json.RawMessage, error) { return nil, errNotYet }

// Assertion is a JWT-bearer grant assertion (RFC 7523 §3).
type Assertion struct {
	Issuer   string
	Subject  string
	Audience string
	Key      SigningKey
	Lifetime time.Duration  // exp - iat; 0 means 5 minutes
	Claims   map[string]any // extra claims; cannot override iss, sub, aud, iat, exp, jti
}

// SignAssertion signs a with a unique jti, iat = now, exp = now+Lifetime.
func SignAssertion(a Assertion, now time.Time) (Secret, error) { return Secret{}, errNotYet }

// JWTBearer obtains a token with the JWT-bearer grant (RFC 7523 §2.1,
// grant_type urn:ietf:params:oauth:grant-type:jwt-bearer), authenticating
// the client as configured (none for an anonymous client).
func (p *Provider) JWTBearer(ctx context.Context, assertion Secret, scopes []string, params Params) (*Token, error) {
	return nil, errNotYet
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
// issued_token_type is in Token.IssuedTokenType; token_type "N_A" is
// accepted.
func (p *Provider) TokenExchange(ctx context.Context, r ExchangeRequest) (*Token, error) {
	return nil, errNotYet
}

// DPoPKey is a grant's DPoP key pair (ES256) and the nonces servers gave
// it. Safe for concurrent use. It prints redacted.
type DPoPKey struct {
	signer crypto.Signer
}

// NewDPoPKey generates a fresh ES256 key.
func NewDPoPKey() (*DPoPKey, error) { return nil, errNotYet }

// ParseDPoPKey reads a key written by Marshal.
func ParseDPoPKey(b []byte) (*DPoPKey, error) { return nil, errNotYet }

// Marshal returns the private key for sealed storage (a private JWK).
func (k *DPoPKey) Marshal() ([]byte, error) { return nil, errNotYet }

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key (jkt).
func (k *DPoPKey) Thumbprint() string { return "" }

// Proof returns a DPoP proof JWT for one request: htm=method, htu=target
// without query and fragment, iat=now, a unique jti, nonce when not empty,
// and ath (base64url SHA-256 of accessToken) when accessToken is not zero.
func (k *DPoPKey) Proof(method, target string, accessToken Secret, nonce string, now time.Time) (Secret, error) {
	return Secret{}, errNotYet
}

// Nonce returns the last DPoP-Nonce the origin of target gave this key ("" if none).
func (k *DPoPKey) Nonce(target string) string { return "" }

// WithDPoP returns a copy of p that sends a DPoP proof made with k with every
// token-endpoint request (token, refresh, exchange, jwt-bearer, device
// polling), retries once on error use_dpop_nonce with the DPoP-Nonce the
// server sent, remembers nonces per origin in k, and refuses an answer whose
// token_type is not DPoP: a Configuration error wrapping ErrDPoPDowngrade,
// never a silent Bearer token.
func (p *Provider) WithDPoP(k *DPoPKey) *Provider { return p }

// ErrDPoPDowngrade is the cause of a refused answer: DPoP was asked for and
// the provider returned another token_type.
var ErrDPoPDowngrade = errors.New("provider returned a token that is not DPoP-bound although dpop is set")
