package daemon

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/api"
)

// connLimits bound the fetch API's connections. Every connection holds a
// descriptor: without a bound, any user allowed to connect could take all
// of the process's descriptors, and refreshes to providers, the store, the
// callback and metrics would then fail with EMFILE.
type connLimits struct {
	// Max is the most connections at once, from anyone.
	Max int
	// Reserved of Max are kept for root and tokend's own user: the CLI's
	// status, refresh and revoke still get through a flood by others.
	Reserved int
	// PerUID is the most connections one other uid may hold, so that one
	// user cannot take the whole of Max from everyone else.
	PerUID int
	// Pressure is the count above which idle keep-alive connections
	// (and connections that have sent nothing yet) are closed, oldest
	// first, long before the server's 2-minute IdleTimeout would.
	Pressure int
	// PressureAge is how long a connection must have been idle before
	// pressure closes it: a client that has just been answered may be
	// sending its next request on the same connection.
	PressureAge time.Duration
}

const (
	// maxAPIConns caps connections whatever the descriptor limit: a local
	// API has no use for more, and each costs memory.
	maxAPIConns = 4096
	// maxPerUID caps one uid's connections: a program's connection pool
	// rarely holds more than a few dozen.
	maxPerUID = 128
)

// connLimitsFor derives the bounds from the descriptor limit: the API gets
// at most half of the descriptors, the rest stay for provider connections,
// the store, the other listeners and the log.
func connLimitsFor(nofile uint64) connLimits {
	m := uint64(maxAPIConns)
	if nofile/2 < m {
		m = nofile / 2
	}
	limits := connLimits{Max: max(int(m), 8), PressureAge: time.Second}
	limits.Reserved = max(limits.Max/8, 1)
	limits.PerUID = max(min(maxPerUID, limits.Max/4), 1)
	limits.Pressure = limits.Max * 3 / 4
	return limits
}

// apiConnLimits derives the bounds from the soft descriptor limit, the one
// that applies: the Go runtime raised it to the hard limit at start-up
// where it could (a seccomp filter on setrlimit leaves it as it was).
func apiConnLimits() connLimits {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return connLimitsFor(1024)
	}
	return connLimitsFor(r.Cur)
}

// unknownUID is the bucket of peers the kernel did not identify (not a
// unix socket): they share one per-uid allowance.
const unknownUID = ^uint32(0)

// connLimiter wraps the API listener: a connection over a bound is closed
// at accept, and its server's ConnState hook (connState) keeps track of
// which connections are idle so that they can be closed under pressure.
// The peer's credentials are read once here, at accept, and the request
// handlers judge the caller by that record (peerContext).
type connLimiter struct {
	net.Listener
	limits     connLimits
	privileged func(uid uint32) bool
	log        *slog.Logger
	// peerOf reads a connection's peer; tests replace it.
	peerOf func(net.Conn) peer
	now    func() time.Time

	mu      sync.Mutex
	total   int
	others  int // connections of unprivileged peers
	byUID   map[uint32]int
	idle    list.List // of *limitedConn: new or idle, oldest first
	lastLog time.Time

	refused atomic.Int64 // connections closed at accept
	evicted atomic.Int64 // idle connections closed to make room
}

func newConnLimiter(ln net.Listener, limits connLimits, privileged func(uint32) bool, log *slog.Logger) *connLimiter {
	return &connLimiter{
		Listener:   ln,
		limits:     limits,
		privileged: privileged,
		log:        log,
		peerOf:     connPeer,
		now:        time.Now,
		byUID:      make(map[uint32]int),
	}
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
		l.noteLocked(now, uid)
	}
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
}

// refuse answers 503 and closes. The write cannot wait: the accept loop
// is single, and a client that does not read must not stall it.
func (l *connLimiter) refuse(c net.Conn, p peer) {
	l.refused.Add(1)
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
// most every 10 s and with running totals: a flood must not turn into a
// flood of log lines.
func (l *connLimiter) noteLocked(now time.Time, uid uint32) {
	if l.log == nil || now.Sub(l.lastLog) < 10*time.Second {
		return
	}
	l.log.Warn("API socket connection limit reached: refusing new connections and closing idle ones",
		"refused_total", l.refused.Load(), "idle_closed_total", l.evicted.Load(), "last_uid", int64(uid),
		"connections", l.total, "max", l.limits.Max, "per_uid", l.limits.PerUID)
	l.lastLog = now
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
