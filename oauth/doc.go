// Package oauth speaks OAuth 2.0 to authorization servers on behalf of
// tokend: discovery (RFC 8414, OpenID Connect discovery), the authorization
// URL with state and PKCE (RFC 7636), the redirect callback with the issuer
// check of RFC 9207, code exchange, refresh (RFC 6749 §6), the client
// credentials and password grants, the device flow (RFC 8628), revocation
// (RFC 7009) and dynamic client registration (RFC 7591); discovery from a
// protected resource ([DiscoverResource]: its Bearer challenge, RFC 9728
// metadata, the authorization server's metadata in the order of the MCP
// authorization specification, and its 2025-03-26 fallbacks), with the
// choices that follow from it ([SelectScopes], [ChooseAuthMethod]) and
// the Client ID Metadata Document a client publishes
// ([ClientMetadataDocument]); the JWT-bearer
// (RFC 7523 §2.1) and token-exchange (RFC 8693) grants; client
// authentication beyond shared secrets: private_key_jwt and
// client_secret_jwt (RFC 7523 §2.2, OpenID Connect Core §9) and
// certificate authentication with the provider's mtls_endpoint_aliases
// (RFC 8705); and DPoP-bound tokens (RFC 9449) with [Provider.WithDPoP] and
// [DPoPKey.Proof].
//
// It owns the keys it signs with: [ParseSigningKey] reads PEM (PKCS #8,
// PKCS #1, SEC 1: RSA of 2048 bits or more, EC P-256/P-384, Ed25519) and
// Google-style service-account JSON files; [SigningKey.ChooseAlg] matches
// a key to what the provider accepts; [DPoPKey] is a grant's ES256 key
// with the nonces servers gave it. JWS and JWK are go-jose's
// (github.com/go-jose/go-jose/v4). The TLS client certificate is not this
// package's: it is in the *http.Client the caller gives.
//
// It is built on golang.org/x/oauth2 for everything that package does
// (authorization URL, token requests, client authentication, the device
// flow's polling) and hand-writes only what it lacks (discovery, revocation,
// registration, WWW-Authenticate parsing).
//
// It is also the one place where provider errors are classified: every
// failure is an [*Error] whose [Class] tells the caller what to do
// (retry with backoff, ask a person to authorize again, fix the credentials
// or the configuration). Callers switch on [ClassOf] and never on error
// codes.
//
// Secrets (client secrets, tokens, passwords, PKCE verifiers, device codes,
// assertions, DPoP proofs) are carried as [Secret], which redacts itself in
// fmt, log/slog and encoding/json; [SigningKey] and [DPoPKey] print as
// their type, kid or thumbprint only. Error messages never contain a
// secret, a key or a response body: what a provider echoes of a request
// has the request's secrets, client assertions and proofs replaced.
//
// Providers are not trusted further than the protocol requires:
//
//   - No request follows a redirect (a redirect is an [*Error] of class
//     Configuration wrapping [ErrRedirect]): a re-sent token request would
//     carry the client secret, password or refresh token wherever Location
//     points.
//   - Every endpoint, configured, discovered or returned by registration,
//     must pass [CheckEndpointURL]: https, or http to a loopback host. So
//     must a protected resource, the metadata URL its challenge names,
//     and the authorization servers its metadata lists.
//   - A protected resource's metadata must name that resource (or a
//     parent of it on its origin), and an authorization server's metadata
//     the issuer it was fetched for: tokend never asks for a token for
//     another resource, nor from another server than the one named.
//   - A WWW-Authenticate over [MaxChallengeBytes] is refused unread.
//   - Provider-supplied text that leaves the package (scope, the device
//     flow's user code and URIs, error codes and descriptions, any error
//     message) goes through [Printable]; the device flow's URIs must be
//     http(s) URLs.
//   - A token answer whose access_token is not an RFC 6750 b64token, whose
//     token_type is not an HTTP token, whose refresh_token or id_token is
//     not visible ASCII, or that repeats a top-level key (as do device
//     authorization and registration answers with a repeated key) is
//     malformed ([ErrMalformed], Transient).
//   - A token answer that holds no token the caller can serve as asked
//     (token_type DPoP without [Provider.WithDPoP], no access_token, a
//     token exchange issuing another type than requested) is refused as
//     [ErrUnservable], Configuration: asking again gets the same answer.
//   - A refused 2xx token answer's new refresh token is handed back in
//     [Error.RefreshToken]: the provider may have retired the one that was
//     sent, and the caller must keep the new one.
//   - A DPoP-Nonce over [MaxDPoPNonce] bytes is not kept, and a demand for
//     one is a Configuration error ([ErrDPoPNonceTooLong]).
//
// The package knows nothing of storage, schedules or sockets, and it never
// retries: the caller's backoff is the only source of retries. The one
// re-send is DPoP's own step (RFC 9449 §8): a token request answered
// use_dpop_nonce with a DPoP-Nonce is sent once more with that nonce; a
// second demand is a Transient failure ([ErrDPoPNonceLoop]).
//
// Client assertions and DPoP proofs are made fresh for every HTTP request
// (a unique jti, iat from [Provider.Now]) by the RoundTripper through which
// x/oauth2 sends, so every grant, the device flow's polling included, gets
// them from one place. With DPoP, an answer whose token_type is not DPoP is
// refused ([ErrDPoPDowngrade], Configuration): a bearer token is never
// handed out in place of a bound one.
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
//   - client_secret_jwt needs a client secret at least as long as its HMAC
//     (32 bytes for HS256, RFC 7518 §3.2); a shorter one is a Configuration
//     error, not a weak signature.
//   - A client assertion's aud is the token endpoint for every request,
//     revocation and device authorization included (OpenID Connect Core
//     §9); [Client.AssertionAudience] makes it the issuer, or a URL that
//     must be the token endpoint or the issuer ([AudienceOf]): a signed
//     assertion goes only to its audience.
//   - The device authorization request carries the client assertion but no
//     DPoP proof: RFC 9449 binds tokens, and only the token endpoint issues
//     them.
//   - Obtained is taken from [Provider.Now] when the request that produced
//     the token was sent, so computed expiries err on the early side.
package oauth
