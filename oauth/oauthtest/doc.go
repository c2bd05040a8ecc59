// Package oauthtest is an in-process OAuth 2.0 authorization server for
// tests, benchmarks and the `tokend dev` demo.
//
// It speaks plain HTTP on a loopback address and implements, from the
// specifications rather than from tokend's own oauth package (which it must
// never import, so that the two can check each other):
//
//   - discovery (RFC 8414 at /.well-known/oauth-authorization-server and
//     OpenID Connect at /.well-known/openid-configuration);
//   - the authorization endpoint /authorize with PKCE S256 (required for
//     public clients), exact or loopback-any-port redirect URI matching
//     (RFC 8252 §7.3) and the iss response parameter (RFC 9207);
//   - the token endpoint /token for the authorization_code, refresh_token,
//     client_credentials, password and device_code grants, with client
//     authentication exactly per each client's method
//     (client_secret_basic, client_secret_post or none);
//   - refresh token rotation with reuse detection that revokes the whole
//     token family, as oidc-provider and Ory Hydra do;
//   - revocation (RFC 7009) at /revoke, device authorization (RFC 8628) at
//     /device with a verification page at /device/verify, and dynamic client
//     registration (RFC 7591, with the RFC 7592 read and delete operations)
//     at /register.
//
// Tests drive it through [Server]: they add clients and users, inject
// faults ([Server.SetFault]) such as a provider that is down, slow, answers
// 5xx, 429 with Retry-After, HTML, huge or malformed bodies, or
// invalid_grant; they inject a clock ([Options.Now]) to expire tokens
// without sleeping; and they inspect what happened ([Server.Stats],
// [Server.Valid], [Server.Issued]).
//
// Production code must not use this package, except `tokend dev`, which
// runs it as a local demo provider (see [NewUnstarted] and [Server.Start]).
//
// # Caveats
//
//   - It is a test double, not a secure server: the authorization page asks
//     for no login (every approval is for the fixed subject "oauthtest-user"),
//     id tokens are HS256 JWTs signed with a per-server random key, and
//     nothing is persisted.
//   - Nothing is ever pruned: every token stays in memory (and in
//     [Server.Issued]) for the life of the server. That is what tests want
//     and is small even for a long `tokend dev` session or a benchmark.
//   - Faults apply to the token endpoint only, unless [Fault.Endpoints]
//     names other endpoints.
//   - Secrets (client secrets, passwords, tokens, codes, PKCE verifiers) are
//     never written to [Options.Logf]; client IDs, grant types, error codes
//     and paths (without query strings) are.
package oauthtest
