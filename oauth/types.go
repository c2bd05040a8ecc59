package oauth

import (
	"encoding/json"
	"net/http"
	"time"
)

// Endpoints are a provider's URLs. Issuer is set when they were discovered
// (or configured alongside explicit endpoints).
type Endpoints struct {
	Issuer              string `json:"issuer,omitempty"`
	Authorization       string `json:"authorization_endpoint,omitempty"`
	Token               string `json:"token_endpoint,omitempty"`
	Revocation          string `json:"revocation_endpoint,omitempty"`
	DeviceAuthorization string `json:"device_authorization_endpoint,omitempty"`
	Registration        string `json:"registration_endpoint,omitempty"`
	// PushedAuthorization (RFC 9126) and Introspection (RFC 7662) are
	// discovered only. tokend sends nothing there; it refuses to make
	// DPoP proofs for them (see AuthorizationServerURLs).
	PushedAuthorization string `json:"pushed_authorization_request_endpoint,omitempty"`
	Introspection       string `json:"introspection_endpoint,omitempty"`
	// IssuerParameterSupported is RFC 9207's
	// authorization_response_iss_parameter_supported.
	IssuerParameterSupported bool `json:"authorization_response_iss_parameter_supported,omitempty"`
	// MTLS are RFC 8705 §5's mtls_endpoint_aliases: used instead of the
	// plain endpoints by a client that authenticates with a certificate.
	MTLS *MTLSAliases `json:"mtls_endpoint_aliases,omitempty"`
	// TokenAuthSigningAlgs is token_endpoint_auth_signing_alg_values_supported.
	TokenAuthSigningAlgs []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	// DPoPSigningAlgs is dpop_signing_alg_values_supported (RFC 9449 §5.1).
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported,omitempty"`
}

// NamedURL is one endpoint of a provider, by its metadata name.
type NamedURL struct{ Name, URL string }

// Fields lists the endpoints tokend sends requests to, by their metadata
// names, the mTLS aliases (RFC 8705 §5) included, empty ones too: the
// URLs that discovery, and whoever reuses discovered metadata, must hold
// to the endpoint rule (CheckEndpointURL).
func (e Endpoints) Fields() []NamedURL {
	fs := []NamedURL{
		{"authorization_endpoint", e.Authorization},
		{"token_endpoint", e.Token},
		{"revocation_endpoint", e.Revocation},
		{"device_authorization_endpoint", e.DeviceAuthorization},
		{"registration_endpoint", e.Registration},
	}
	if m := e.MTLS; m != nil {
		fs = append(fs,
			NamedURL{"mtls_endpoint_aliases.token_endpoint", m.Token},
			NamedURL{"mtls_endpoint_aliases.revocation_endpoint", m.Revocation},
			NamedURL{"mtls_endpoint_aliases.device_authorization_endpoint", m.DeviceAuthorization},
			NamedURL{"mtls_endpoint_aliases.registration_endpoint", m.Registration},
		)
	}
	return fs
}

// MTLSAliases are the endpoints a provider serves with client-certificate
// authentication (RFC 8705 §5).
type MTLSAliases struct {
	Token               string `json:"token_endpoint,omitempty"`
	Revocation          string `json:"revocation_endpoint,omitempty"`
	DeviceAuthorization string `json:"device_authorization_endpoint,omitempty"`
	Registration        string `json:"registration_endpoint,omitempty"`
	PushedAuthorization string `json:"pushed_authorization_request_endpoint,omitempty"`
	Introspection       string `json:"introspection_endpoint,omitempty"`
}

// AuthorizationServerURLs are the endpoints where a request signed with a
// grant's keys acts on the grant at the authorization server itself:
// token, pushed authorization, revocation, introspection, device
// authorization and registration, and their mTLS aliases. Empty ones are
// left out.
func (e Endpoints) AuthorizationServerURLs() []string {
	all := []string{e.Token, e.PushedAuthorization, e.Revocation, e.Introspection, e.DeviceAuthorization, e.Registration}
	if m := e.MTLS; m != nil {
		all = append(all, m.Token, m.PushedAuthorization, m.Revocation, m.Introspection, m.DeviceAuthorization, m.Registration)
	}
	out := all[:0]
	for _, u := range all {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// AuthMethod is how the client authenticates at the token endpoint.
type AuthMethod string

// Client authentication methods (RFC 7591 token_endpoint_auth_method,
// RFC 7523 §2.2, RFC 8705 §2).
const (
	AuthBasic         AuthMethod = "client_secret_basic"
	AuthPost          AuthMethod = "client_secret_post"
	AuthNone          AuthMethod = "none"
	AuthPrivateKeyJWT AuthMethod = "private_key_jwt"
	AuthSecretJWT     AuthMethod = "client_secret_jwt"
	AuthTLS           AuthMethod = "tls_client_auth"
	AuthSelfSignedTLS AuthMethod = "self_signed_tls_client_auth"
)

// IsCertificate reports whether m authenticates the client with its TLS
// certificate (RFC 8705): tls_client_auth or self_signed_tls_client_auth.
func (m AuthMethod) IsCertificate() bool { return m == AuthTLS || m == AuthSelfSignedTLS }

// Client is our registration at a provider.
type Client struct {
	ID          string
	Secret      Secret
	AuthMethod  AuthMethod
	RedirectURI string
	// Key signs the client assertion of private_key_jwt (nil otherwise);
	// client_secret_jwt signs with Secret.
	Key *SigningKey
	// AssertionAudience is the aud of client assertions: "" means the
	// token endpoint; "issuer" the provider's issuer; else that URL, which
	// must be one of the two (AudienceOf).
	AssertionAudience string
}

// Token is a token set as the provider returned it, with absolute times
// computed from the injected clock at the moment the request was sent.
type Token struct {
	AccessToken  Secret
	TokenType    string // normalised: "Bearer" for any case of bearer
	RefreshToken Secret // zero when the provider returned none
	IDToken      Secret
	Scope        string        // as returned, through Printable; empty when the provider sent none
	ExpiresIn    time.Duration // 0 when the provider sent no expires_in
	// Expiry is Obtained+ExpiresIn, or zero when no expires_in was sent
	// (the caller applies its default lifetime).
	Expiry time.Time
	// RefreshExpiry comes from refresh_token_expires_in (Personium, Azure)
	// or refresh_expires_in (Keycloak); zero when neither was sent.
	RefreshExpiry time.Time
	Obtained      time.Time
	// IssuedTokenType is RFC 8693's issued_token_type (token exchange).
	IssuedTokenType string
}

// Provider speaks the protocol to one provider as one client. It is safe
// for concurrent use. The HTTP client must not retry: the caller's backoff
// is the only source of retries.
type Provider struct {
	Endpoints Endpoints
	Client    Client
	// HTTP is the client used for every request; nil means a client with
	// a 30 s timeout. Bodies are read through a 1 MiB limit. Redirects are
	// never followed, whatever its CheckRedirect says (ErrRedirect).
	HTTP *http.Client
	// Now is the clock used for Obtained/Expiry; nil means time.Now.
	Now func() time.Time

	// dpop, set by WithDPoP, makes token requests DPoP-bound.
	dpop *DPoPKey
}

// Params are extra form parameters (audience, resource, prompt, ...).
type Params map[string]string

// AuthRequest is what AuthCodeURL needs; State, Verifier and Nonce are
// generated by the caller (NewState, NewVerifier).
type AuthRequest struct {
	State    string
	Verifier Secret // PKCE S256 verifier; zero disables PKCE
	Nonce    string // sent when non-empty
	Scopes   []string
	Params   Params
}

// DeviceAuth is the answer of the device authorization endpoint (RFC 8628).
// UserCode and the verification URIs have been through Printable; the URIs
// are absolute http(s) URLs (VerificationURIComplete may be empty).
type DeviceAuth struct {
	DeviceCode              Secret
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	ExpiresAt               time.Time
	Interval                time.Duration // 5 s when the provider sent none
}

// RegistrationRequest is the client metadata sent to RFC 7591 registration.
type RegistrationRequest struct {
	ClientName      string
	RedirectURIs    []string
	GrantTypes      []string
	ResponseTypes   []string // nil: omitted (the server assumes ["code"]); empty: sent as []
	AuthMethod      AuthMethod
	Scope           string
	ApplicationType string // "native" for loopback redirect URIs
	// JWKS is the public key set of a private_key_jwt client (SigningKey.JWKS).
	JWKS json.RawMessage
	// SigningAlg is token_endpoint_auth_signing_alg (private_key_jwt).
	SigningAlg string
	// DPoPBound asks for dpop_bound_access_tokens (RFC 9449 §5.2).
	DPoPBound bool
}

// Registration is what the registration endpoint returned.
type Registration struct {
	ClientID                string
	ClientSecret            Secret
	RegistrationAccessToken Secret
	RegistrationClientURI   string
	ClientSecretExpiresAt   time.Time // zero: never
	AuthMethod              AuthMethod
}

// Class says what the caller should do about a failed request. The engine
// switches on it; nothing else inspects error codes.
type Class int

const (
	// Transient failures (network errors, timeouts, 5xx, 429,
	// temporarily_unavailable, server_error, malformed answers) are retried
	// with backoff.
	Transient Class = iota
	// Reauthorize: the grant is dead (invalid_grant, or Dex's
	// invalid_request about a refresh token, expired_token in the device
	// flow). A person must authorize again, or a password grant re-obtains.
	Reauthorize
	// Credentials: invalid_client, unauthorized_client.
	Credentials
	// Configuration: invalid_scope, unsupported_grant_type, invalid_request,
	// unsupported_response_type, invalid_target, ...
	Configuration
	// Denied: the resource owner refused (access_denied).
	Denied
)

// String returns the class as used in metrics labels and status output:
// "transient", "reauthorization", "credentials", "configuration", "denied".
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Reauthorize:
		return "reauthorization"
	case Credentials:
		return "credentials"
	case Configuration:
		return "configuration"
	case Denied:
		return "denied"
	}
	return "unknown"
}

// Error is every failure of a request to a provider. Its message never
// contains a secret or the raw response body.
type Error struct {
	Op          string // "refresh", "exchange", "client_credentials", "password", "device", "revoke", "discovery", "register", "callback"
	Code        string // RFC 6749 §5.2 error code; empty for transport or malformed answers
	Description string
	URI         string
	Status      int           // HTTP status; 0 when there was no response
	RetryAfter  time.Duration // from Retry-After on 429/503; 0 when absent
	Class       Class
	Err         error // the underlying cause, if any
	// RefreshToken is the new refresh token of a 2xx answer that was
	// refused (a downgraded or unservable token, a malformed field): the
	// provider may have retired the one that was sent when it answered,
	// so the caller must keep this one although it serves nothing else of
	// the answer. Zero otherwise. It is never part of the message.
	RefreshToken Secret
	// RefreshExpiry is RefreshToken's expiry when the answer gave one.
	RefreshExpiry time.Time
}
