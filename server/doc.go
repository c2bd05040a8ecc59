// Package server owns everything of tokend that accepts connections: the
// socket API (api.go, dpop.go), the callback listener's redirect URIs and
// one-time start pages (callback.go), the metrics listener (metrics.go),
// the grants' local reverse proxies (proxy.go, challenge.go), who each
// caller is (peer.go for the socket, admit.go and sockdiag_linux.go for
// the proxies), connection bounds (connlimit.go), and the listeners
// themselves: the unix socket created with its mode and group or passed
// by systemd, and loopback TCP with its Host check (listen.go,
// tcplisten.go). Servers (servers.go) holds them together; cmd/tokend
// builds it over the engine and hands it to the engine's Run, which binds
// it once the store is open, before it says READY, and stops it first.
//
// The package knows neither the store nor the engine's internals: it
// asks an Engine, which it declares (engine.go), on behalf of the Caller
// the kernel named for the connection; what a caller may do is the
// engine's to decide. The engine fails with an *engine.Error (package
// internal/engine), and statusOf (errors.go) is the one place its kind
// becomes an HTTP status. A proxy asks a TokenSource: the engine, through
// engineSource, when the daemon serves it; the socket API when `tokend
// proxy` does.
//
// # Callers
//
// Every connection is tied, once, at accept, to the local user the
// kernel recorded for it (SO_PEERCRED and SO_PEERGROUPS on a unix socket,
// the owner of the peer's socket through NETLINK_SOCK_DIAG on loopback
// TCP), never to what the process with its pid is now. On the socket a
// caller the kernel did not name is judged as engine.Unknown (refused
// everything); a proxy closes its connection before reading a byte.
//
// # Caveats
//
// Over TCP the kernel records the uid of a socket and nothing else: a
// caller there is judged by its uid alone, so readers named by group reach
// a proxy through a unix socket only. The sock_diag lookup sees sockets
// of the proxy's own network namespace; a connection whose owner cannot be
// found (the peer closed it already, another namespace) is refused.
package server
