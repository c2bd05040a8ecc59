// Package mcpbridge is `tokend mcp`: a bridge between an MCP client that
// speaks the stdio transport (newline-delimited JSON-RPC on its child's
// stdin and stdout) and an MCP server that speaks Streamable HTTP
// (transport revision 2025-11-25), with the grant's token from the daemon
// on every request. Stdio-only clients launch it where they would launch
// mcp-remote; ten bridges on one grant share the daemon's one refresher
// and never race a refresh-token rotation.
//
// The bridge passes messages through unchanged (only compacted to one
// line); it owns the transport: one POST per client message, JSON or SSE
// answers, the session id and protocol version headers, resumption of a
// dropped SSE stream with Last-Event-ID, the server's GET stream, and
// DELETE of the session when stdin ends. It owns the authorization of
// each request too: a 401 is reported to the daemon once (which refreshes
// when the refused token is still the grant's) and the request sent again;
// a 403 insufficient_scope is recorded as a step-up, the bridge waits for a
// person to authorize the wider scopes, and sends the request again, at
// most twice per request.
//
// Whatever cannot be delivered becomes a JSON-RPC error answer to the
// client's request (the client would otherwise wait forever); everything
// for people goes to stderr, since stdout is the protocol.
//
// The transport is written here rather than taken from the Go MCP SDK:
// its client connection learns the negotiated version and opens the GET
// stream only when driven by its own ClientSession, which answers pings,
// types every method and would not pass other messages through unchanged;
// and its failures do not become answers to the request that failed. The
// SDK's server is what the tests check the bridge against.
//
// # Caveats
//
//   - The HTTP+SSE transport of 2024-11-05 (a GET that announces a POST
//     endpoint) is not spoken: servers of that age are reached through
//     mcp-remote or upgraded.
//   - A request whose SSE stream drops before its answer and carried no
//     event id cannot be resumed (the transport gives no way to): the
//     client gets an error answer for it.
package mcpbridge
