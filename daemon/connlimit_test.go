package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
)

func TestConnLimitsFromNofile(t *testing.T) {
	for _, c := range []struct {
		nofile                          uint64
		max, reserved, perUID, pressure int
	}{
		{1024, 512, 64, 128, 384},
		{20000, 4096, 512, 128, 3072},
		{65536, 4096, 512, 128, 3072},
		{1 << 40, 4096, 512, 128, 3072},
		{64, 32, 4, 8, 24},
		{0, 8, 1, 2, 6},
	} {
		got := connLimitsFor(c.nofile)
		if got.Max != c.max || got.Reserved != c.reserved || got.PerUID != c.perUID || got.Pressure != c.pressure {
			t.Errorf("connLimitsFor(%d) = %+v, want max %d reserved %d per-uid %d pressure %d", c.nofile, got, c.max, c.reserved, c.perUID, c.pressure)
		}
	}
	// Whatever the limit, the API leaves half of the descriptors to the
	// rest of the daemon, and one uid cannot take what the others need.
	for n := uint64(16); n < 100000; n = n*3/2 + 1 {
		l := connLimitsFor(n)
		if uint64(l.Max) > n/2 || l.PerUID > l.Max-l.Reserved || l.Pressure >= l.Max || l.Reserved < 1 {
			t.Errorf("connLimitsFor(%d) = %+v", n, l)
		}
	}
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
	lt.l = newConnLimiter(ln, limits, func(uid uint32) bool { return uid == 0 }, NewLogger(lt.logs, config.Log{}, false))
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
