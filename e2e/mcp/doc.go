// Package mcp holds tokend's end-to-end tests against a real MCP server
// with OAuth, none of whose parts were written here: the server is the
// official TypeScript SDK's (McpServer, its Streamable HTTP transport with
// stateful sessions, its bearer-token middleware checking the token's
// audience, its protected-resource metadata router; testdata/server.mjs
// wires them), the authorization server is oidc-provider
// (e2e/oidc/server.mjs, with resource indicators giving JWT access tokens
// whose aud is the MCP resource, open dynamic registration, refresh-token
// rotation with reuse detection), and the MCP clients are the SDK's Client
// over StreamableHTTPClientTransport (to tokend's proxy, with no auth
// provider) and over StdioClientTransport (launching `tokend mcp NAME`;
// testdata/client.mjs drives them). tokend is the built binary.
//
// What is checked:
//   - a grant naming only the resource URL is discovered, registered and
//     authorized (paste mode), and tools are called through the proxy and
//     through the bridge; a token of a grant for another resource is
//     refused by the server;
//   - 8 bridges and a proxy on one grant call tools continuously across at
//     least 5 refresh-token rotations and a kill -9 and restart of tokend:
//     no refresh token is ever presented twice (oidc-provider would revoke
//     the grant), no tool call fails;
//   - attacks, against fake servers in Go: protected-resource metadata
//     naming another resource, authorization-server metadata with another
//     issuer, a challenge pointing at http:// metadata on a host that is not
//     loopback, a 64 KiB and a malformed WWW-Authenticate, and a local user
//     who is not a reader connecting to the proxy over TCP loopback and
//     over a unix socket: each refused with a clear error, nothing sent.
//
// The package has no non-test code. Its tests need node and the npm
// packages of testdata/ and of e2e/oidc, which scripts/test-deps installs.
// Without them the tests fail when $CI is set and skip, saying what is
// missing, elsewhere. The attack tests with fake servers need only the
// tokend binary.
//
// # Caveats
//
// The tests run on real time: access tokens live 12 s, and the shared-grant
// test runs until 5 rotations and a restart happened (about a minute).
// TOKEND_MCP_SOAK=1 makes it go on for $TOKEND_MCP_SOAK_ROTATIONS rotations
// (default 30) with a kill -9 every 5. E2E_RACE=0 builds tokend without the
// race detector.
package mcp
