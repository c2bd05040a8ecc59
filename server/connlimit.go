package server

import (
	"container/list"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/api"
)

// connLimits bound one listener's connections. Every connection holds a
// descriptor: without a bound, anyone who can connect could take all of the
// process's descriptors, and refreshes to providers, the store and the
// other listeners would then fail with EMFILE.
type connLimits struct {
	// Max is the most connections at once, from anyone.
	Max int
	// Reserved of Max are kept for root and tokend's own user: the CLI's
	// status, refresh and revoke still get through a flood by others.
	// Only the socket knows its peers; TCP listeners reserve nothing.
	Reserved int
	// PerUID is the most connections one other uid may hold, so that one
	// user cannot take the whole of Max from everyone else. TCP peers
	// are all one unknown uid: for them it equals Max.
	PerUID int
	// Pressure is the count above which idle keep-alive connections
	// (and connections that have sent nothing yet) are closed, oldest
	// first, long before the server's IdleTimeout would.
	Pressure int
	// PressureAge is how long a connection must have been idle before
	// pressure closes it: a client that has just been answered may be
	// sending its next request on the same connection.
	PressureAge time.Duration
}

const (
	// maxAPIConns caps the socket's connections whatever the descriptor
	// limit: a local API has no use for more, and each costs memory.
	maxAPIConns = 4096
	// maxPerUID caps one uid's connections: a program's connection pool
	// rarely holds more than a few dozen.
	maxPerUID = 128
	// The callback serves a browser a start page and a redirect per
	// authorization: a handful of connections at once, a few dozen with
	// several people authorizing.
	minCallbackConns, maxCallbackConns = 4, 64
	// The metrics listener serves a scraper or two and a health check.
	minMetricsConns, maxMetricsConns = 4, 32
)

// listenerBudget is what each listener may hold of the process's
// descriptors. Together they hold at most half of RLIMIT_NOFILE (under a
// limit of 32, their floors): the other half stays for provider requests,
// the store, hook and sink commands, and the log.
type listenerBudget struct {
	API, Callback, Metrics connLimits
}

// budgetFor derives the listeners' bounds from the descriptor limit: the
// callback gets 1/32 of it and metrics 1/64 (within their floors and caps),
// and the socket API the rest of the half, up to maxAPIConns.
func budgetFor(nofile uint64) listenerBudget {
	cb := min(max(nofile/32, minCallbackConns), maxCallbackConns)
	mt := min(max(nofile/64, minMetricsConns), maxMetricsConns)
	api := uint64(0)
	if half := nofile / 2; half > cb+mt {
		api = min(half-cb-mt, maxAPIConns)
	}
	return listenerBudget{
		API:      socketLimits(max(int(api), 8)),
		Callback: tcpLimits(int(cb)),
		Metrics:  tcpLimits(int(mt)),
	}
}

// socketLimits are the socket API's bounds for m connections: an eighth
// kept for root and tokend's user, at most maxPerUID (or a quarter) for
// any other uid.
func socketLimits(m int) connLimits {
	limits := connLimits{Max: m, PressureAge: time.Second}
	limits.Reserved = max(m/8, 1)
	limits.PerUID = max(min(maxPerUID, m/4), 1)
	limits.Pressure = m * 3 / 4
	return limits
}

// tcpLimits are a TCP listener's bounds for m connections. Its peers are
// not known (a browser, a scraper, anyone on the machine): no reserve and
// no per-uid share, but idle and silent connections make room first.
func tcpLimits(m int) connLimits {
	return connLimits{Max: m, PerUID: m, Pressure: m * 3 / 4, PressureAge: time.Second}
}

// nofileLimit is the soft descriptor limit, the one that applies: the Go
// runtime raised it to the hard limit at start-up where it could (a
// seccomp filter on setrlimit leaves it as it was).
func nofileLimit() uint64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Cur
}

// ListenerMetrics is implemented by a Metrics that also counts what the
// listeners refuse and fail to accept (metrics.Metrics does). listener is
// api, callback or metrics. The servers find it with a type assertion on
// Config.Metrics.
type ListenerMetrics interface {
	// ObserveConnRefused counts a connection closed at accept because its
	// listener held all it may and none of them was idle.
	ObserveConnRefused(listener string)
	// ObserveIdleConnsClosed counts n idle (or silent) connections closed
	// to make room for new ones.
	ObserveIdleConnsClosed(listener string, n int)
	// ObserveAcceptError counts an accept that failed; reason is emfile
	// or enfile (out of descriptors) or other.
	ObserveAcceptError(listener, reason string)
	// SetOpenConns exports how many connections the listener holds.
	SetOpenConns(listener string, n int)
}

type nopListenerMetrics struct{}

func (nopListenerMetrics) ObserveConnRefused(string)          {}
func (nopListenerMetrics) ObserveIdleConnsClosed(string, int) {}
func (nopListenerMetrics) ObserveAcceptError(string, string)  {}
func (nopListenerMetrics) SetOpenConns(string, int)           {}

// acceptLogEvery spaces the log lines of a listener's refusals and of its
// failed accepts: a flood must not turn into a flood of log lines.
const acceptLogEvery = 10 * time.Second

// unknownUID is the bucket of peers the kernel did not identify (not a
// unix socket): they share one per-uid allowance.
const unknownUID = ^uint32(0)

// connLimiter wraps a listener (the socket API's, the callback's, the
// metrics'): a connection over a bound is closed at accept, and its
// server's ConnState hook (connState) keeps track of which connections are
// idle so that they can be closed under pressure. On the socket the peer's
// credentials are read once here, at accept, and the request handlers
// judge the caller by that record (peerContext). A failed accept (out of
// descriptors) is counted and logged at WARN.
type connLimiter struct {
	net.Listener
	name       string // api, callback, metrics: in logs and metric labels
	limits     connLimits
	privileged func(uid uint32) bool
	log        *slog.Logger
	metrics    ListenerMetrics
	// peerOf reads a connection's peer; tests replace it.
	peerOf func(net.Conn) peer
	now    func() time.Time

	mu      sync.Mutex
	total   int
	others  int // connections of unprivileged peers
	byUID   map[uint32]int
	idle    list.List // of *limitedConn: new or idle, oldest first
	lastLog time.Time
	// failed accepts since the last line that logged them, and its time
	acceptFails   int64
	lastAcceptLog time.Time

	refused atomic.Int64 // connections closed at accept
	evicted atomic.Int64 // idle connections closed to make room
}

// newConnLimiter bounds ln, named name in logs and metrics. privileged
// says which uids the reserve is for (nil: none); m may be nil.
func newConnLimiter(name string, ln net.Listener, limits connLimits, privileged func(uint32) bool, log *slog.Logger, m ListenerMetrics) *connLimiter {
	if m == nil {
		m = nopListenerMetrics{}
	}
	l := &connLimiter{
		Listener:   ln,
		name:       name,
		limits:     limits,
		privileged: privileged,
		log:        log,
		metrics:    m,
		peerOf:     connPeer,
		now:        time.Now,
		byUID:      make(map[uint32]int),
	}
	if _, ok := ln.Addr().(*net.UnixAddr); !ok {
		// The kernel records no process for a TCP peer.
		l.peerOf = func(net.Conn) peer { return peer{} }
	}
	m.SetOpenConns(name, 0)
	return l
}

// limitedConn is an admitted connection. elem, since and released are
// guarded by the limiter's mu; the other fields never change.
type limitedConn struct {
	net.Conn
	l        *connLimiter
	p        peer
	uid      uint32
	priv     bool
	elem     *list.Element // in l.idle while new or idle
	since    time.Time     // when it entered l.idle
	released bool
}

func (c *limitedConn) peerCred() peer { return c.p }

// Close gives the connection's place back at once, whoever closes it.
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// tooMany is written to a refused connection before it is closed, so the
// client says why instead of "connection reset".
var tooMany = func() []byte {
	body := `{"error":"` + api.CodeTooManyConnections + `","error_description":"tokend has too many open connections; try again later"}` + "\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// Accept returns the next connection within the bounds; one over them is
// answered 503 and closed here, and never reaches the server.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.acceptFailed(err)
			return nil, err
		}
		p := l.peerOf(c)
		lc, victims := l.admit(c, p)
		for _, v := range victims {
			_ = v.Conn.Close()
		}
		if lc != nil {
			return lc, nil
		}
		l.refuse(c, p)
	}
}

// admit counts c in, or returns nil when it is over a bound no idle
// connection can be closed for. victims are idle connections already
// released, for the caller to close outside the lock.
func (l *connLimiter) admit(c net.Conn, p peer) (lc *limitedConn, victims []*limitedConn) {
	uid := unknownUID
	if p.ok {
		uid = p.uid
	}
	priv := p.ok && l.privileged != nil && l.privileged(uid)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// A uid at its own bound makes room among its own idle connections
	// only: its pool may be larger than it needs, everyone else's is not
	// its business.
	if !priv && l.byUID[uid] >= l.limits.PerUID {
		v := l.oldestIdle(func(o *limitedConn) bool { return o.uid == uid }, now, 0)
		if v == nil {
			return nil, nil
		}
		victims = append(victims, v)
	}
	if !priv && l.others >= l.limits.Max-l.limits.Reserved {
		v := l.oldestIdle(func(o *limitedConn) bool { return !o.priv }, now, 0)
		if v == nil {
			return nil, victims
		}
		victims = append(victims, v)
	}
	if l.total >= l.limits.Max {
		v := l.oldestIdle(nil, now, 0)
		if v == nil {
			return nil, victims
		}
		victims = append(victims, v)
	}
	lc = &limitedConn{Conn: c, l: l, p: p, uid: uid, priv: priv}
	l.total++
	l.byUID[uid]++
	if !priv {
		l.others++
	}
	// A new connection is reapable until its first request arrives
	// (ReadHeaderTimeout closes it anyway after 5 s).
	lc.since = now
	lc.elem = l.idle.PushBack(lc)
	for l.total > l.limits.Pressure {
		v := l.oldestIdle(func(o *limitedConn) bool { return o != lc }, now, l.limits.PressureAge)
		if v == nil {
			break
		}
		victims = append(victims, v)
	}
	if n := len(victims); n > 0 {
		l.evicted.Add(int64(n))
		l.metrics.ObserveIdleConnsClosed(l.name, n)
		l.noteLocked(now, uid)
	}
	l.metrics.SetOpenConns(l.name, l.total)
	return lc, victims
}

// oldestIdle releases and returns the oldest new-or-idle connection that
// match accepts and that has been so for at least age, or nil.
func (l *connLimiter) oldestIdle(match func(*limitedConn) bool, now time.Time, age time.Duration) *limitedConn {
	for e := l.idle.Front(); e != nil; e = e.Next() {
		o := e.Value.(*limitedConn)
		if now.Sub(o.since) < age {
			// The list is in order of since: the rest are younger.
			return nil
		}
		if match == nil || match(o) {
			l.releaseLocked(o)
			return o
		}
	}
	return nil
}

func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	if c.elem != nil {
		l.idle.Remove(c.elem)
		c.elem = nil
	}
	l.total--
	if n := l.byUID[c.uid] - 1; n > 0 {
		l.byUID[c.uid] = n
	} else {
		delete(l.byUID, c.uid)
	}
	if !c.priv {
		l.others--
	}
	l.metrics.SetOpenConns(l.name, l.total)
}

// refuse answers 503 and closes. The write cannot wait: the accept loop
// is single, and a client that does not read must not stall it.
func (l *connLimiter) refuse(c net.Conn, p peer) {
	l.refused.Add(1)
	l.metrics.ObserveConnRefused(l.name)
	uid := unknownUID
	if p.ok {
		uid = p.uid
	}
	l.mu.Lock()
	l.noteLocked(l.now(), uid)
	l.mu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, _ = c.Write(tooMany)
	_ = c.Close()
}

// noteLocked logs a refusal or an idle connection closed to make room, at
// most every acceptLogEvery and with running totals: a flood must not turn
// into a flood of log lines.
func (l *connLimiter) noteLocked(now time.Time, uid uint32) {
	if l.log == nil || now.Sub(l.lastLog) < acceptLogEvery {
		return
	}
	args := []any{"listener", l.name, "refused_total", l.refused.Load(), "idle_closed_total", l.evicted.Load(),
		"connections", l.total, "max", l.limits.Max}
	if uid != unknownUID {
		args = append(args, "last_uid", int64(uid), "per_uid", l.limits.PerUID)
	}
	l.log.Warn("connection limit reached: refusing new connections and closing idle ones", args...)
	l.lastLog = now
}

// acceptFailed counts a failed accept and logs it at WARN, at most every
// acceptLogEvery per listener, with the failures since the last line. Out of
// descriptors, net/http retries the accept (sleeping up to a second),
// connections wait in the kernel's queue, and provider requests and the
// store fail alike: the outage must leave a trace at the default level.
func (l *connLimiter) acceptFailed(err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	reason := acceptErrorReason(err)
	l.metrics.ObserveAcceptError(l.name, reason)
	l.mu.Lock()
	l.acceptFails++
	now := l.now()
	if l.log == nil || now.Sub(l.lastAcceptLog) < acceptLogEvery {
		l.mu.Unlock()
		return
	}
	n, open := l.acceptFails, l.total
	l.acceptFails, l.lastAcceptLog = 0, now
	l.mu.Unlock()
	msg := "accepting a connection failed"
	if reason != "other" {
		msg = "out of file descriptors: connections cannot be accepted, and provider requests and the store fail alike"
	}
	l.log.Warn(msg, "listener", l.name, "err", err, "failures", n, "open_connections", open)
}

// acceptErrorReason classifies an accept's error for the metric's label.
func acceptErrorReason(err error) string {
	switch {
	case errors.Is(err, syscall.EMFILE):
		return "emfile"
	case errors.Is(err, syscall.ENFILE):
		return "enfile"
	}
	return "other"
}

// connState is the API server's ConnState hook: it keeps l.idle to the
// connections that are waiting for a request.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.released {
		return
	}
	switch s {
	case http.StateIdle:
		if lc.elem != nil {
			l.idle.Remove(lc.elem)
		}
		lc.since = l.now()
		lc.elem = l.idle.PushBack(lc)
	case http.StateActive, http.StateHijacked, http.StateClosed:
		if lc.elem != nil {
			l.idle.Remove(lc.elem)
			lc.elem = nil
		}
	}
}

// counts returns the connections held, overall and of uid.
func (l *connLimiter) counts(uid uint32) (total, ofUID int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.byUID[uid]
}
