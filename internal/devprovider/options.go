package devprovider

import (
	"crypto/x509"
	"encoding/json"
	"time"
)

// Client authentication methods (RFC 7591 token_endpoint_auth_method).
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodNone  = "none"
	// AuthMethodPrivateKeyJWT signs a client assertion with a private key
	// whose public key is in Client.JWKS (RFC 7523 §2.2).
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	// AuthMethodSecretJWT signs a client assertion with HMAC keyed by the
	// client secret.
	AuthMethodSecretJWT = "client_secret_jwt"
	// AuthMethodTLS presents a CA-issued client certificate whose subject
	// is Client.TLSSubjectDN (RFC 8705 §2.1).
	AuthMethodTLS = "tls_client_auth"
	// AuthMethodSelfSignedTLS presents a self-signed client certificate
	// pinned in Client.JWKS (RFC 8705 §2.2).
	AuthMethodSelfSignedTLS = "self_signed_tls_client_auth"
)

// Grant types accepted by the token endpoint.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Client is a client registered at the server.
//
// AuthMethod is client_secret_basic, client_secret_post or none. When it is
// empty, [Server.AddClient] picks none for a client without a secret and
// client_secret_basic (the RFC 6749 default) otherwise.
//
// RedirectURIs are matched exactly, except that an http URI on 127.0.0.1,
// [::1] or localhost matches any port (RFC 8252 §7.3). A client with no
// RedirectURIs accepts any http loopback redirect URI, which keeps tests
// short.
//
// JWKS (a JWK set, {"keys":[...]}, of public keys: see [JWKS] and
// [CertJWKS]) verifies private_key_jwt assertions and pins
// self_signed_tls_client_auth certificates; a JWKS that does not parse or
// holds a private key makes each use fail with invalid_client. A
// client_secret_jwt Secret must be at least as long as its alg's hash (32
// bytes for HS256, RFC 7518 §3.2). SigningAlg,
// when set, is the only alg its assertions may use
// (token_endpoint_auth_signing_alg). DPoPBound makes every token request of
// the client carry a DPoP proof (RFC 9449 §5.2 dpop_bound_access_tokens).
type Client struct {
	ID, Secret   string
	AuthMethod   string
	RedirectURIs []string
	JWKS         json.RawMessage
	SigningAlg   string
	// TLSSubjectDN is the subject of a tls_client_auth client's
	// certificate, as crypto/x509/pkix.Name.String renders it (RFC 4514
	// order, e.g. "CN=app,O=Example").
	TLSSubjectDN string
	DPoPBound    bool
}

// Options configure a [Server]. The zero value is usable: it has no
// clients and no users.
type Options struct {
	// AccessTTL is the lifetime of access tokens; 0 means 30 s.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of a refresh token from its issue; 0 means
	// refresh tokens never expire. When it is positive, responses carry
	// refresh_token_expires_in (the remaining lifetime, in seconds).
	RefreshTTL time.Duration
	// Rotate issues a new refresh token on every refresh and invalidates the
	// old one. Reusing an old one answers invalid_grant and revokes the
	// whole family (every refresh and access token descending from the same
	// authorization), counted in Stats().Reuses. Without Rotate, a refresh
	// answers with the same refresh token.
	Rotate bool
	// RefreshForClientCredentials also issues refresh tokens for the
	// client_credentials grant.
	RefreshForClientCredentials bool
	// Clients are registered at start, as if by [Server.AddClient].
	Clients []Client
	// Users are username → password for the password grant.
	Users map[string]string
	// AllowRegistration enables dynamic client registration (RFC 7591) at
	// /register and advertises it in discovery.
	AllowRegistration bool
	// MetadataDocuments advertises client_id_metadata_document_supported.
	// The server fetches no document: a test registers the client whose
	// client_id is the document's URL (AuthMethod none) in Clients.
	MetadataDocuments bool
	// AutoApprove makes GET /authorize redirect straight back with a code,
	// and GET /device/verify?user_code=... approve at once, with no page.
	AutoApprove bool
	// DeviceInterval is the polling interval the device endpoint returns
	// (rounded up to whole seconds, at least 1 s); 0 means 1 s.
	DeviceInterval time.Duration
	// Now is the clock used to issue and expire codes and tokens; nil means
	// time.Now. Fault delays and latency use real time.
	Now func() time.Time
	// Logf, when set, receives one line per request: method, path without
	// query, status, client_id, grant type and error code. Never secrets.
	Logf func(format string, args ...any)

	// ClientCAs verify tls_client_auth certificates; nil means the
	// server's own CA ([Server.IssueClientCert]).
	ClientCAs *x509.CertPool
	// AssertionIssuers are trusted to sign JWT-bearer grant assertions.
	AssertionIssuers []AssertionIssuer
	// ClockSkew is how far in the future an iat or nbf may be; 0 means
	// 30 s.
	ClockSkew time.Duration
	// DPoPAlgs are the proof algs accepted (and advertised in
	// dpop_signing_alg_values_supported); nil means ES256, ES384, ES512,
	// RS256, PS256 and EdDSA. Symmetric algs and "none" are never
	// accepted.
	DPoPAlgs []string
	// DPoPWindow is how far a proof's iat may be from the server's clock,
	// either way; 0 means 60 s.
	DPoPWindow time.Duration
	// DPoPNonce makes the token endpoint demand a server nonce in DPoP
	// proofs (RFC 9449 §8): a proof without the current one is answered
	// 400 use_dpop_nonce with a DPoP-Nonce header.
	DPoPNonce bool
	// ResourceNonce makes the resource server ([Server.ResourceHandler])
	// demand its own nonce (RFC 9449 §9): 401 use_dpop_nonce.
	ResourceNonce bool
}

// AssertionIssuer is an issuer trusted for the JWT-bearer grant (RFC 7523
// §2.1), such as a service account.
type AssertionIssuer struct {
	// Issuer is the iss its assertions carry.
	Issuer string
	// JWKS is a JWK set of its public keys.
	JWKS json.RawMessage
	// Audiences the assertion's aud may name besides the token endpoint URL
	// and the issuer URL, which are always accepted.
	Audiences []string
	// Subjects restricts the sub its assertions may name; empty means any.
	Subjects []string
	// SubjectOptional accepts an assertion without sub as one for the
	// issuer itself, as Google does for a service account; RFC 7523 §3
	// requires sub, and so does the server by default.
	SubjectOptional bool
}

func (o *Options) skew() time.Duration {
	if o.ClockSkew > 0 {
		return o.ClockSkew
	}
	return defaultSkew
}
