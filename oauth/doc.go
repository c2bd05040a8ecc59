// Package oauth speaks OAuth 2.0 to authorization servers on behalf of
// tokend: discovery (RFC 8414, OpenID Connect discovery), the authorization
// URL with state and PKCE (RFC 7636), the redirect callback with the issuer
// check of RFC 9207, code exchange, refresh (RFC 6749 §6), the client
// credentials and password grants, the device flow (RFC 8628), revocation
// (RFC 7009) and dynamic client registration (RFC 7591).
//
// It is built on golang.org/x/oauth2 for everything that package does
// (authorization URL, token requests, client authentication, the device
// flow's polling) and hand-writes only what it lacks (discovery, revocation,
// registration).
//
// It is also the one place where provider errors are classified: every
// failure is an [*Error] whose [Class] tells the caller what to do
// (retry with backoff, ask a person to authorize again, fix the credentials
// or the configuration). Callers switch on [ClassOf] and never on error
// codes.
//
// Secrets (client secrets, tokens, passwords, PKCE verifiers, device codes)
// are carried as [Secret], which redacts itself in fmt, log/slog and
// encoding/json. Error messages never contain a secret or a response body.
//
// Providers are not trusted further than the protocol requires:
//
//   - No request follows a redirect (a redirect is an [*Error] of class
//     Configuration wrapping [ErrRedirect]): a re-sent token request would
//     carry the client secret, password or refresh token wherever Location
//     points.
//   - Every endpoint, configured, discovered or returned by registration,
//     must pass [CheckEndpointURL]: https, or http to a loopback host.
//   - Provider-supplied text that leaves the package (scope, the device
//     flow's user code and URIs, error codes and descriptions, any error
//     message) goes through [Printable]; the device flow's URIs must be
//     http(s) URLs.
//   - A token answer whose access_token is not an RFC 6750 b64token, whose
//     token_type is not an HTTP token, whose refresh_token or id_token is
//     not visible ASCII, or that repeats a top-level key (as do device
//     authorization and registration answers with a repeated key) is
//     malformed ([ErrMalformed], Transient).
//
// The package knows nothing of storage, schedules or sockets, and it never
// retries: the caller's backoff is the only source of retries.
//
// # Caveats
//
//   - Token requests never use x/oauth2's AuthStyleAutoDetect, which retries
//     a failed request with the other client authentication style; the
//     client's [AuthMethod] decides. An empty AuthMethod means
//     client_secret_basic when the client has a secret and none otherwise.
//   - Refresh and Password are sent through golang.org/x/oauth2/clientcredentials
//     with grant_type overridden in EndpointParams (a behaviour x/oauth2
//     supports and tests): oauth2.Config's refresher sends neither scope nor
//     extra parameters, and PasswordCredentialsToken takes no extra
//     parameters. The wire format (form body, client authentication, answer
//     parsing) is x/oauth2's either way.
//   - x/oauth2 parses expires_in as an integer (a JSON number or a string
//     holding one); a fractional value such as 3600.5 makes the whole answer
//     malformed (Transient).
//   - [Provider.AwaitDevice] polls on real time (x/oauth2's
//     DeviceAccessToken), at whole seconds: at least 1 s between polls.
//   - Obtained is taken from [Provider.Now] when the request that produced
//     the token was sent, so computed expiries err on the early side.
package oauth
