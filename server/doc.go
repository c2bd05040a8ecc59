// Package server owns what accepts connections from local programs. Today
// that is the local reverse proxy (Proxy) to a grant's protected resource
// and its caller admission: every connection is tied at accept to the
// local user the kernel names for it (SO_PEERCRED on a unix socket, the
// owner of the peer's socket through NETLINK_SOCK_DIAG on loopback TCP),
// and each request is served only if that user may read the grant.
//
// The package knows neither the store nor the engine: it asks a
// TokenSource, which it declares, for tokens, reports of rejected tokens
// and step-ups, on behalf of the Caller. The daemon implements it with
// its engine, `tokend proxy` with the socket API.
//
// # Caveats
//
// Over TCP the kernel records the uid of a socket and nothing else: a
// caller there is judged by its uid alone, so readers named by group reach
// the proxy through a unix socket only. The sock_diag lookup sees sockets
// of the proxy's own network namespace; a connection whose owner cannot be
// found (the peer closed it already, another namespace) is refused.
package server
