package daemon

// The daemon's tests reach the engine as programs do: through the servers
// of package server in front of it, as cmd/tokend wires them.

import (
	"context"
	"net"
	"net/http"

	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/server"
)

// serversOf are the servers cmd/tokend puts in front of d; each of sc
// (at most one) adds its options.
func serversOf(d *Daemon, sc ...server.Config) *server.Servers {
	var c server.Config
	if len(sc) > 0 {
		c = sc[0]
	}
	c.Engine, c.Log = d, d.log
	if m, ok := d.metrics.(server.FetchMetrics); ok {
		c.Metrics = m
	}
	return server.New(c)
}

// apiServer serves the socket API of d (its requests' callers set by
// withPeer).
func (d *Daemon) apiServer() *http.Server {
	m, _ := d.metrics.(server.FetchMetrics)
	return &http.Server{Handler: server.APIHandler(d, m)}
}

// callbackServer serves d's callback pages.
func (d *Daemon) callbackServer() *http.Server {
	return &http.Server{Handler: server.CallbackHandler(d, d.CallbackAddr)}
}

// handleCallback serves one request to the redirect URI.
func (d *Daemon) handleCallback(w http.ResponseWriter, r *http.Request) {
	d.callbackServer().Handler.ServeHTTP(w, r)
}

// withPeer is ctx carrying p as the caller the server read.
func withPeer(ctx context.Context, p peer) context.Context {
	return server.WithCaller(ctx, callerOf(p))
}

// callerOf is p as the server passes it to the engine.
func callerOf(p peer) engine.Caller {
	if !p.ok {
		return engine.Unknown
	}
	return engine.Caller{UID: p.uid, GID: p.gid, Groups: p.groups, HasGroups: true}
}

// connPeer is the caller of c as the server reads it, as the engine
// judges it.
func connPeer(c net.Conn) peer {
	cl, err := server.Identify(c)
	if err != nil {
		return peer{}
	}
	return peerOf(cl)
}

func bindingCookieName(state string, secure bool) string {
	return server.BindingCookieName(state, secure)
}
