package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
)

func TestListenerBudgetFromNofile(t *testing.T) {
	for _, c := range []struct {
		nofile                          uint64
		max, reserved, perUID, pressure int
		callback, metrics               int
	}{
		{1024, 464, 58, 116, 348, 32, 16},
		{20000, 4096, 512, 128, 3072, 64, 32},
		{65536, 4096, 512, 128, 3072, 64, 32},
		{1 << 40, 4096, 512, 128, 3072, 64, 32},
		{256, 116, 14, 29, 87, 8, 4},
		{64, 24, 3, 6, 18, 4, 4},
		{0, 8, 1, 2, 6, 4, 4},
	} {
		b := budgetFor(c.nofile)
		got := b.API
		if got.Max != c.max || got.Reserved != c.reserved || got.PerUID != c.perUID || got.Pressure != c.pressure {
			t.Errorf("budgetFor(%d).API = %+v, want max %d reserved %d per-uid %d pressure %d", c.nofile, got, c.max, c.reserved, c.perUID, c.pressure)
		}
		if b.Callback.Max != c.callback || b.Metrics.Max != c.metrics {
			t.Errorf("budgetFor(%d): callback %d, metrics %d; want %d, %d", c.nofile, b.Callback.Max, b.Metrics.Max, c.callback, c.metrics)
		}
	}
	// Whatever the limit, the listeners together leave half of the
	// descriptors to the rest of the daemon, and on the socket one uid
	// cannot take what the others need.
	for n := uint64(32); n < 100000; n = n*3/2 + 1 {
		b := budgetFor(n)
		l := b.API
		if uint64(l.Max+b.Callback.Max+b.Metrics.Max) > n/2 {
			t.Errorf("budgetFor(%d): the listeners hold %d+%d+%d, more than half", n, l.Max, b.Callback.Max, b.Metrics.Max)
		}
		if l.PerUID > l.Max-l.Reserved || l.Pressure >= l.Max || l.Reserved < 1 {
			t.Errorf("budgetFor(%d).API = %+v", n, l)
		}
		for _, tl := range []connLimits{b.Callback, b.Metrics} {
			if tl.Max < 4 || tl.Reserved != 0 || tl.PerUID != tl.Max || tl.Pressure >= tl.Max {
				t.Errorf("budgetFor(%d): TCP listener %+v", n, tl)
			}
		}
	}
}

// listenerMetrics records what the limiters report.
type listenerMetrics struct {
	nopFetchMetrics
	mu        sync.Mutex
	refused   map[string]int
	closed    map[string]int
	errs      map[string]int // listener/reason
	open, top map[string]int // now, and the most seen
}

func newListenerMetrics() *listenerMetrics {
	return &listenerMetrics{refused: map[string]int{}, closed: map[string]int{}, errs: map[string]int{}, open: map[string]int{}, top: map[string]int{}}
}

func (m *listenerMetrics) ObserveConnRefused(l string) { m.mu.Lock(); m.refused[l]++; m.mu.Unlock() }
func (m *listenerMetrics) ObserveIdleConnsClosed(l string, n int) {
	m.mu.Lock()
	m.closed[l] += n
	m.mu.Unlock()
}
func (m *listenerMetrics) ObserveAcceptError(l, reason string) {
	m.mu.Lock()
	m.errs[l+"/"+reason]++
	m.mu.Unlock()
}
func (m *listenerMetrics) SetOpenConns(l string, n int) {
	m.mu.Lock()
	m.open[l] = n
	m.top[l] = max(m.top[l], n)
	m.mu.Unlock()
}

// get reads one of the maps under the lock.
func (m *listenerMetrics) get(which map[string]int, key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return which[key]
}

// limTest serves a small handler through a connLimiter. Clients bind their
// end of the socket to a name that carries the uid they stand for, and the
// limiter's peerOf reads it back: one process can then play many users.
type limTest struct {
	t       *testing.T
	dir     string
	sock    string
	l       *connLimiter
	logs    *testutil.SyncBuffer
	n       atomic.Int64
	entered chan struct{} // one per request reaching /block
	release chan struct{} // closed to let /block requests finish
	once    sync.Once
}

func newLimTest(t *testing.T, limits connLimits, opts ...func(*connLimiter)) *limTest {
	t.Helper()
	lt := &limTest{t: t, dir: t.TempDir(), logs: &testutil.SyncBuffer{}, entered: make(chan struct{}, 100), release: make(chan struct{})}
	lt.sock = filepath.Join(lt.dir, "api.sock")
	ln, err := net.Listen("unix", lt.sock)
	if err != nil {
		t.Fatal(err)
	}
	lt.l = newConnLimiter("api", ln, limits, func(uid uint32) bool { return uid == 0 }, slog.New(slog.NewTextHandler(lt.logs, nil)), nil)
	lt.l.peerOf = func(c net.Conn) peer {
		name := filepath.Base(c.RemoteAddr().String())
		u, _, _ := strings.Cut(strings.TrimPrefix(name, "u"), "-")
		uid, err := strconv.ParseUint(u, 10, 32)
		if err != nil {
			return peer{}
		}
		return peer{ok: true, uid: uint32(uid), gid: uint32(uid)}
	}
	for _, o := range opts {
		o(lt.l)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				lt.entered <- struct{}{}
				<-lt.release
			}
			_, _ = io.WriteString(w, "ok")
		}),
		ConnState:         lt.l.connState,
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(lt.l); close(done) }()
	t.Cleanup(func() {
		lt.unblock()
		_ = srv.Close()
		<-done
	})
	return lt
}

func (lt *limTest) unblock() { lt.once.Do(func() { close(lt.release) }) }

// limClient is one connection, standing for uid.
type limClient struct {
	t *testing.T
	c *net.UnixConn
	r *bufio.Reader
}

func (lt *limTest) dial(uid uint32) *limClient {
	lt.t.Helper()
	laddr := &net.UnixAddr{Name: filepath.Join(lt.dir, fmt.Sprintf("u%d-%d", uid, lt.n.Add(1))), Net: "unix"}
	c, err := net.DialUnix("unix", laddr, &net.UnixAddr{Name: lt.sock, Net: "unix"})
	if err != nil {
		lt.t.Fatal(err)
	}
	lt.t.Cleanup(func() { c.Close() })
	return &limClient{t: lt.t, c: c, r: bufio.NewReader(c)}
}

// send writes a request for path.
func (c *limClient) send(path string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, "GET "+path+" HTTP/1.1\r\nHost: tokend\r\n\r\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// answer reads one response: its status, or 0 when the server closed the
// connection without one.
func (c *limClient) answer() int {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatal("no answer and no close within 10s")
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (c *limClient) get(path string) int {
	c.t.Helper()
	c.send(path)
	return c.answer()
}

// closed reports whether the server has closed the connection: a read
// sees the end of the stream (or a reset) instead of waiting.
func (c *limClient) closed() bool {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// idle waits until n connections wait for a request (ConnState said so).
func (lt *limTest) idle(n int) {
	lt.t.Helper()
	waitFor(lt.t, fmt.Sprintf("%d idle connections", n), func() bool {
		lt.l.mu.Lock()
		defer lt.l.mu.Unlock()
		return lt.l.idle.Len() == n
	})
}

// A uid whose connections are all busy gets no more than PerUID of them;
// another uid still does.
func TestConnLimiterPerUID(t *testing.T) {
	lt := newLimTest(t, connLimits{Max: 20, Reserved: 2, PerUID: 3, Pressure: 20})
	for range 3 {
		lt.dial(1000).send("/block")
		<-lt.entered
	}
	over := lt.dial(1000)
	if code := over.answer(); code != http.StatusServiceUnavailable {
		t.Fatalf("a 4th busy connection of uid 1000: %d, want 503", code)
	}
	if !over.closed() {
		t.Fatal("the refused connection was left open")
	}
	if code := lt.dial(1001).get("/"); code != http.StatusOK {
		t.Fatalf("another uid: %d, want 200", code)
	}
	if total, mine := lt.l.counts(1000); mine != 3 || total < 3 {
		t.Fatalf("counts after a refusal: total %d, uid 1000 %d", total, mine)
	}
	if lt.l.refused.Load() != 1 {
		t.Fatalf("refused = %d, want 1", lt.l.refused.Load())
	}
}

// At its bound, a uid's oldest idle keep-alive connection makes room for
// its new one: a client whose pool grew is not refused.
func TestConnLimiterClosesOwnIdleAtBound(t *testing.T) {
	lt := newLimTest(t, connLimits{Max: 20, Reserved: 2, PerUID: 3, Pressure: 20})
	var cs []*limClient
	for i := range 3 {
		c := lt.dial(1000)
		if code := c.get("/"); code != http.StatusOK {
			t.Fatalf("GET: %d", code)
		}
		// One at a time, so that the first is the oldest idle one.
		lt.idle(i + 1)
		cs = append(cs, c)
	}
	other := lt.dial(1001)
	if code := other.get("/"); code != http.StatusOK {
		t.Fatalf("GET as 1001: %d", code)
	}
	lt.idle(4)
	if code := lt.dial(1000).get("/"); code != http.StatusOK {
		t.Fatalf("a 4th connection of uid 1000: %d, want 200", code)
	}
	if !cs[0].closed() {
		t.Fatal("the oldest idle connection of uid 1000 was not closed")
	}
	for _, c := range cs[1:] {
		if code := c.get("/"); code != http.StatusOK {
			t.Fatalf("a younger connection was closed too: %d", code)
		}
	}
	if code := other.get("/"); code != http.StatusOK {
		t.Fatalf("another uid's idle connection was closed: %d", code)
	}
	if _, mine := lt.l.counts(1000); mine != 3 {
		t.Fatalf("uid 1000 holds %d connections, want 3", mine)
	}
}

// Root keeps a share of the connections that other users cannot take.
func TestConnLimiterReserve(t *testing.T) {
	lt := newLimTest(t, connLimits{Max: 6, Reserved: 2, PerUID: 10, Pressure: 6})
	for uid := uint32(1000); uid < 1004; uid++ {
		lt.dial(uid).send("/block")
		<-lt.entered
	}
	if code := lt.dial(1004).answer(); code != http.StatusServiceUnavailable {
		t.Fatalf("a user past Max-Reserved: %d, want 503", code)
	}
	for range 2 {
		lt.dial(0).send("/block")
		<-lt.entered
	}
	if code := lt.dial(0).answer(); code != http.StatusServiceUnavailable {
		t.Fatalf("root past Max with every connection busy: %d, want 503", code)
	}
	lt.unblock()
	waitFor(t, "connections idle", func() bool { lt.l.mu.Lock(); defer lt.l.mu.Unlock(); return lt.l.idle.Len() == 6 })
	if code := lt.dial(0).get("/"); code != http.StatusOK {
		t.Fatalf("root at Max with idle connections: %d, want 200", code)
	}
}

// Over Pressure, connections idle for PressureAge are closed, oldest first,
// without waiting for the server's IdleTimeout; younger ones are kept.
func TestConnLimiterPressure(t *testing.T) {
	for _, c := range []struct {
		name  string
		age   time.Duration
		close bool
	}{{"old enough", 0, true}, {"too young", time.Hour, false}} {
		t.Run(c.name, func(t *testing.T) {
			lt := newLimTest(t, connLimits{Max: 10, Reserved: 1, PerUID: 10, Pressure: 4, PressureAge: c.age})
			var cs []*limClient
			for i := range 4 {
				cl := lt.dial(uint32(1000 + i))
				if code := cl.get("/"); code != http.StatusOK {
					t.Fatalf("GET: %d", code)
				}
				lt.idle(i + 1)
				cs = append(cs, cl)
			}
			lt.idle(4)
			if code := lt.dial(2000).get("/"); code != http.StatusOK {
				t.Fatalf("5th connection: %d", code)
			}
			// The limiter closes its victims before it hands the new
			// connection to the server: by now the oldest is closed or
			// it stays open.
			if c.close && !cs[0].closed() {
				t.Fatal("the oldest idle connection was left open")
			}
			if !c.close && cs[0].get("/") != http.StatusOK {
				t.Fatal("a connection idle for less than PressureAge was closed")
			}
			if code := cs[1].get("/"); code != http.StatusOK {
				t.Fatalf("second oldest: %d", code)
			}
		})
	}
}

// Every way a connection ends gives its place back.
func TestConnLimiterAccounting(t *testing.T) {
	lt := newLimTest(t, connLimits{Max: 8, Reserved: 1, PerUID: 2, Pressure: 8})
	for round := range 5 {
		a, b := lt.dial(1000), lt.dial(1000)
		a.send("/block")
		b.send("/block")
		<-lt.entered
		<-lt.entered
		if code := lt.dial(1000).answer(); code != http.StatusServiceUnavailable {
			t.Fatalf("round %d: 3rd busy connection: %d, want 503", round, code)
		}
		a.c.Close()
		b.c.Close()
		lt.release <- struct{}{}
		lt.release <- struct{}{}
		waitFor(t, "connections released", func() bool { total, _ := lt.l.counts(1000); return total == 0 })
	}
	if total, mine := lt.l.counts(1000); total != 0 || mine != 0 {
		t.Fatalf("counts after every client left: %d %d", total, mine)
	}
}

// A flood of refusals is logged once per interval, not once per
// connection.
func TestConnLimiterLogsRateLimited(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lt := newLimTest(t, connLimits{Max: 4, Reserved: 1, PerUID: 1, Pressure: 4}, func(l *connLimiter) {
		l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	lt.dial(1000).send("/block")
	<-lt.entered
	for range 20 {
		if code := lt.dial(1000).answer(); code != http.StatusServiceUnavailable {
			t.Fatalf("refused connection: %d", code)
		}
	}
	if n := strings.Count(lt.logs.String(), "connection limit"); n != 1 {
		t.Fatalf("%d log lines for 20 refusals in one instant, want 1:\n%s", n, lt.logs)
	}
	mu.Lock()
	now = now.Add(11 * time.Second)
	mu.Unlock()
	lt.dial(1000).answer()
	log := lt.logs.String()
	if n := strings.Count(log, "connection limit"); n != 2 {
		t.Fatalf("%d log lines after the interval, want 2:\n%s", n, log)
	}
	if !strings.Contains(log, "refused_total=21") {
		t.Fatalf("the log does not count the refusals:\n%s", log)
	}
}

// failingListener's Accept fails with err.
type failingListener struct{ err error }

func (l failingListener) Accept() (net.Conn, error) { return nil, l.err }
func (failingListener) Close() error                { return nil }
func (failingListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8785}
}

// Out of descriptors, every accept fails: the failures are counted each,
// and logged at WARN at most every 10 s with the count since the last line.
func TestConnLimiterAcceptErrorsLogged(t *testing.T) {
	var logs testutil.SyncBuffer
	m := newListenerMetrics()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The default level (info): the lines must show without debug.
	l := newConnLimiter("callback", failingListener{emfile}, tcpLimits(8), nil, slog.New(slog.NewTextHandler(&logs, nil)), m)
	l.now = func() time.Time { return now }
	accept := func(n int) {
		t.Helper()
		for range n {
			if c, err := l.Accept(); c != nil || !errors.Is(err, syscall.EMFILE) {
				t.Fatalf("Accept = %v, %v; want the listener's EMFILE", c, err)
			}
		}
	}
	lines := func() []string {
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if line != "" {
				out = append(out, line)
			}
		}
		return out
	}

	accept(50)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "out of file descriptors") ||
		!strings.Contains(got[0], "listener=callback") || !strings.Contains(got[0], "failures=1 ") {
		t.Fatalf("after 50 failed accepts in one instant, want one WARN line for the first:\n%s", logs.String())
	}
	now = now.Add(5 * time.Second)
	accept(20)
	if n := len(lines()); n != 1 {
		t.Fatalf("%d lines 5 s later, want still 1:\n%s", n, logs.String())
	}
	now = now.Add(5 * time.Second)
	accept(1)
	got := lines()
	if len(got) != 2 || !strings.Contains(got[1], "failures=70 ") || !strings.Contains(got[1], "level=WARN") {
		t.Fatalf("10 s after the first line, want a second one counting the 70 failures since:\n%s", logs.String())
	}
	if n := m.get(m.errs, "callback/emfile"); n != 71 {
		t.Fatalf("accept errors counted: %d, want 71", n)
	}

	// Another reason, and a closed listener (the end of Serve) is neither
	// counted nor logged.
	l.Listener = failingListener{&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ENFILE)}}
	_, _ = l.Accept()
	l.Listener = failingListener{net.ErrClosed}
	_, _ = l.Accept()
	if m.get(m.errs, "callback/enfile") != 1 || len(m.errs) != 2 {
		t.Fatalf("accept errors by reason: %v", m.errs)
	}
	if n := len(lines()); n != 2 {
		t.Fatalf("%d lines, want 2:\n%s", n, logs.String())
	}
}

// A flood of the callback and metrics listeners, with silent connections
// and keep-alive ones that sent a request, never holds more than their
// share of the descriptor budget: each connection past it closes an idle
// one or is refused, and is counted. The socket API serves fetches
// throughout, and both listeners answer once the flood ends.
func TestListenerFloodBounded(t *testing.T) {
	m := newListenerMetrics()
	s := runServers(t, Config{Metrics: m, NoFile: 256}, func(c *config.Config) { c.Listen.Metrics = "127.0.0.1:0" })
	b := budgetFor(256)
	const flood = 100
	for _, l := range []struct {
		name, addr, path string
		max, want        int
	}{
		{"callback", s.CallbackAddr(), "/callback?state=unknown&code=x", b.Callback.Max, http.StatusBadRequest},
		{"metrics", s.MetricsAddr(), "/healthz", b.Metrics.Max, http.StatusOK},
	} {
		t.Run(l.name, func(t *testing.T) {
			req := "GET " + l.path + " HTTP/1.1\r\nHost: " + l.addr + "\r\n\r\n"
			conns := make([]net.Conn, 0, flood)
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			for i := range flood {
				c, err := net.Dial("tcp", l.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				if i%2 == 1 {
					_, _ = io.WriteString(c, req)
				}
			}
			waitFor(t, "every flooding connection admitted or refused", func() bool {
				return m.get(m.closed, l.name)+m.get(m.refused, l.name) >= flood-l.max
			})
			if top := m.get(m.top, l.name); top > l.max || top == 0 {
				t.Fatalf("the %s listener held up to %d connections; its bound is %d", l.name, top, l.max)
			}
			if code, body := s.get(t, "/v1/tokens/cc"); code != http.StatusOK {
				t.Fatalf("fetch during the flood: %d %s", code, body)
			}
			for _, c := range conns {
				c.Close()
			}
			waitFor(t, "the flood's connections released", func() bool { return m.get(m.open, l.name) == 0 })
			if code := statusOfGet(t, "http://"+l.addr+l.path); code != l.want {
				t.Fatalf("%s after the flood: %d, want %d", l.path, code, l.want)
			}
			t.Logf("%s: %d idle closed, %d refused, at most %d open", l.name, m.get(m.closed, l.name), m.get(m.refused, l.name), m.get(m.top, l.name))
		})
	}
}
