package oauth

// STUBS: replaced by the implementation. Signatures are the contract.

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Error formats as "oauth: <op>: <code>: <description> (HTTP <status>)".
func (e *Error) Error() string { panic("unimplemented") }
func (e *Error) Unwrap() error { return e.Err }

// ClassOf classifies any error returned by this package; errors that are not
// *Error (network failures, context deadline) are Transient.
func ClassOf(err error) Class { panic("unimplemented") }

// RetryAfter returns the provider's Retry-After for err, or 0.
func RetryAfter(err error) time.Duration { panic("unimplemented") }

// Secret holds a secret string. It prints as [REDACTED] through fmt, slog
// and encoding/json, does not compare with ==, and is revealed only by Reveal.
type Secret struct{ p *string }

func NewSecret(s string) Secret { panic("unimplemented") }
func (s Secret) Reveal() string { panic("unimplemented") }
func (s Secret) IsZero() bool   { return s.p == nil || *s.p == "" }

// NewState returns a random state value of 256 bits, base64url.
func NewState() string { panic("unimplemented") }

// NewVerifier returns a PKCE verifier (RFC 7636, 256 bits).
func NewVerifier() Secret { panic("unimplemented") }

// AuthCodeURL returns the authorization URL with response_type=code, client_id,
// redirect_uri, scope, state, code_challenge (S256) and nonce.
func (p *Provider) AuthCodeURL(r AuthRequest) string { panic("unimplemented") }

// ParseCallback checks a redirect's query: error=... becomes an *Error (Denied
// for access_denied, Configuration otherwise); a missing code is an error; when
// iss is present it must equal wantIssuer (RFC 9207), and when requireIss is
// true it must be present. It returns the code and state.
func ParseCallback(q url.Values, wantIssuer string, requireIss bool) (code, state string, err error) {
	panic("unimplemented")
}

// Exchange trades an authorization code (with its PKCE verifier) for tokens.
func (p *Provider) Exchange(ctx context.Context, code string, verifier Secret, params Params) (*Token, error) {
	panic("unimplemented")
}

// Refresh uses a refresh token (RFC 6749 §6). A response without a refresh
// token returns a Token whose RefreshToken is zero: the caller keeps the old.
func (p *Provider) Refresh(ctx context.Context, refresh Secret, scopes []string, params Params) (*Token, error) {
	panic("unimplemented")
}

// ClientCredentials obtains a token with the client_credentials grant.
func (p *Provider) ClientCredentials(ctx context.Context, scopes []string, params Params) (*Token, error) {
	panic("unimplemented")
}

// Password obtains a token with the resource owner password grant.
func (p *Provider) Password(ctx context.Context, username string, password Secret, scopes []string, params Params) (*Token, error) {
	panic("unimplemented")
}

// StartDevice calls the device authorization endpoint (RFC 8628 §3.1).
func (p *Provider) StartDevice(ctx context.Context, scopes []string, params Params) (*DeviceAuth, error) {
	panic("unimplemented")
}

// AwaitDevice polls the token endpoint at the given interval (slow_down adds
// 5 s) until the user approves (token), denies (Denied), the code expires
// (Reauthorize) or ctx ends.
func (p *Provider) AwaitDevice(ctx context.Context, da *DeviceAuth) (*Token, error) {
	panic("unimplemented")
}

// Revoke revokes a token at the revocation endpoint (RFC 7009); hint is
// "refresh_token" or "access_token".
func (p *Provider) Revoke(ctx context.Context, token Secret, hint string) error {
	panic("unimplemented")
}

// Discover fetches issuer metadata: RFC 8414
// (/.well-known/oauth-authorization-server) and then OpenID Connect
// discovery (/.well-known/openid-configuration); the issuer in the document
// must match.
func Discover(ctx context.Context, hc *http.Client, issuer string) (Endpoints, error) {
	panic("unimplemented")
}

// Register registers a client dynamically (RFC 7591).
func Register(ctx context.Context, hc *http.Client, endpoint string, r RegistrationRequest) (*Registration, error) {
	panic("unimplemented")
}
