package server

// The socket API's callers: each connection is tied, at accept, to the
// user the kernel recorded for it (SO_PEERCRED, SO_PEERGROUPS; Identify
// in admit.go), never to what the process with that pid is now. A client
// can hand its connection to another process and exit, and its pid can
// then be reused by anyone. What a caller may do is the engine's to
// decide; the server only reads who it is.

import (
	"context"
	"net"

	"github.com/tokend/tokend/internal/engine"
)

// peer is a connection's caller as the kernel recorded it; ok is false
// when the kernel did not say (then every request is refused).
type peer struct {
	ok       bool
	uid, gid uint32
	// groups are the supplementary groups at connect time; nil when the
	// kernel could not say (then no group grants anything).
	groups []uint32
}

// caller is p as the engine judges it.
func (p peer) caller() Caller {
	if !p.ok {
		return engine.Unknown
	}
	return Caller{UID: p.uid, GID: p.gid, Groups: p.groups, HasGroups: true}
}

// credConn is a connection whose peer was read at accept (connLimiter).
type credConn interface {
	peerCred() peer
}

// peerContext records the caller on each accepted connection, once:
// every request on it is judged by this record.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	var p peer
	if cc, ok := c.(credConn); ok {
		p = cc.peerCred()
	} else {
		p = connPeer(c)
	}
	return WithCaller(ctx, p.caller())
}

// connPeer reads the kernel's record of the process that connected c, a
// unix socket connection. Failing closed: without the connect-time list
// of groups, the caller is judged by its uid and primary gid alone.
func connPeer(c net.Conn) peer {
	cl, err := unixPeer(c)
	if err != nil {
		return peer{}
	}
	return peer{ok: true, uid: cl.UID, gid: cl.GID, groups: cl.Groups}
}

// callerOf is the caller of r's connection (engine.Unknown when none was
// recorded).
func callerOf(ctx context.Context) Caller {
	if c, ok := CallerFrom(ctx); ok {
		return c
	}
	return engine.Unknown
}
