// Package devprovider is the development provider: an in-process OAuth 2.0
// authorization server that `tokend dev` runs as a local demo provider and
// that tests and benchmarks run as the provider under test.
//
// It speaks plain HTTP (or HTTPS, [Server.StartTLS]) on a loopback address and implements, from the
// specifications rather than from tokend's own oauth package (which it must
// never import, so that the two can check each other):
//
//   - discovery (RFC 8414 at /.well-known/oauth-authorization-server and
//     OpenID Connect at /.well-known/openid-configuration);
//   - the authorization endpoint /authorize with PKCE S256 (required for
//     public clients), exact or loopback-any-port redirect URI matching
//     (RFC 8252 §7.3) and the iss response parameter (RFC 9207);
//   - the token endpoint /token for the authorization_code, refresh_token,
//     client_credentials, password and device_code grants, the JWT-bearer
//     grant (RFC 7523 §2.1, from issuers trusted in
//     [Options.AssertionIssuers]) and token exchange (RFC 8693, of access
//     and id tokens it issued, scope only narrowed), with client
//     authentication exactly per each client's method
//     (client_secret_basic, client_secret_post, none, private_key_jwt and
//     client_secret_jwt assertions with jti replay detection, and
//     tls_client_auth and self_signed_tls_client_auth (RFC 8705) at the
//     mtls_endpoint_aliases under /mtls/ when started with
//     [Server.StartTLS]);
//   - DPoP (RFC 9449): proofs at the token endpoint are verified (typ, alg,
//     public jwk, signature, htm, htu, iat window, jti replay, server nonce
//     with [Options.DPoPNonce]); tokens issued with one are bound to its key
//     (token_type DPoP; a public client's refresh token too), and
//     [Server.ResourceHandler] (also under /resource/) is a protected
//     resource that accepts a bound token only with a proof for that exact
//     request (ath, htm, htu, key, fresh jti);
//   - refresh token rotation with reuse detection that revokes the whole
//     token family, as oidc-provider and Ory Hydra do;
//   - revocation (RFC 7009) at /revoke, device authorization (RFC 8628) at
//     /device with a verification page at /device/verify, and dynamic client
//     registration (RFC 7591, with the RFC 7592 read and delete operations)
//     at /register.
//
// Tests drive it through [Server]: they add clients and users, inject
// faults ([Server.SetFault]) such as a provider that is down, slow, answers
// 5xx, 429 with Retry-After, HTML, huge or malformed bodies, invalid_grant,
// ignores DPoP (FaultDPoPDowngrade) or demands a new DPoP nonce forever
// (FaultDPoPNonceLoop); they inject a clock ([Options.Now]) to expire tokens
// without sleeping; and they inspect what happened ([Server.Stats],
// [Server.Valid], [Server.TokenInfo], [Server.Issued]).
//
// Production code must not use this package, except `tokend dev`, which
// runs it as a local demo provider (see [NewUnstarted] and [Server.Start]).
//
// # Caveats
//
//   - TLS (StartTLS, NewTLS) uses a CA the server makes for itself
//     ([Server.CACertPEM]); its certificates are valid from 2000 to 2100,
//     and client certificates are checked by the server's clock
//     (Options.Now).
//   - It is a test double, not a secure server: the authorization page asks
//     for no login (every approval is for the fixed subject "oauthtest-user"),
//     id tokens are HS256 JWTs signed with a per-server random key, and
//     nothing is persisted.
//   - Nothing is ever pruned (but the jti replay cache, past each jti's
//     expiry): every token stays in memory (and in
//     [Server.Issued]) for the life of the server. That is what tests want
//     and is small even for a long `tokend dev` session or a benchmark.
//   - Faults apply to the token endpoint only, unless [Fault.Endpoints]
//     names other endpoints.
//   - Secrets (client secrets, passwords, tokens, codes, PKCE verifiers,
//     assertions, DPoP proofs, keys) are never written to [Options.Logf]; client IDs, grant types, error codes
//     and paths (without query strings) are.
package devprovider
