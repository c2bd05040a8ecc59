package daemon

// Operations: the daemon as systemd and Prometheus see it. These tests run
// the daemon with the real collaborators cmd/tokend wires in (the systemd
// notifier speaking sd_notify to a datagram socket the test reads, the
// metrics registry scraped over HTTP) and check what arrives.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/metrics"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/systemd"
)

// opsNotifier is the real systemd notifier, as cmd/tokend wires it.
type opsNotifier struct{}

func (opsNotifier) Ready() error            { return systemd.Ready() }
func (opsNotifier) Reloading() error        { return systemd.Reloading() }
func (opsNotifier) Status(msg string) error { return systemd.Status(msg) }
func (opsNotifier) Stopping() error         { return systemd.Stopping() }
func (opsNotifier) Watchdog() error         { return systemd.Watchdog() }

var _ Notifier = opsNotifier{}

// notifySocket plays systemd's side of sd_notify: a datagram socket named
// by $NOTIFY_SOCKET whose messages the test reads in order.
type notifySocket struct {
	t    *testing.T
	msgs chan string
	// onReady runs in the reading goroutine as soon as the first READY=1
	// arrives, before anything else is read: it checks what must already
	// hold when systemd considers the unit started.
	onReady   func() error
	readyErr  chan error
	markerSeq atomic.Int64
}

func listenNotify(t *testing.T, onReady func() error) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	n := &notifySocket{t: t, msgs: make(chan string, 4096), onReady: onReady, readyErr: make(chan error, 1)}
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 8192)
		first := true
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			m := string(buf[:k])
			if first && hasAssignment(m, "READY=1") {
				first = false
				if n.onReady != nil {
					n.readyErr <- n.onReady()
				}
			}
			n.msgs <- m
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return n
}

// hasAssignment reports whether the sd_notify message m carries the
// assignment a (messages are newline-separated assignments).
func hasAssignment(m, a string) bool {
	return slices.Contains(strings.Split(m, "\n"), a)
}

// until reads messages up to and including the first one that carries the
// assignment a, and returns them all.
func (n *notifySocket) until(a string) []string {
	n.t.Helper()
	var seen []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				n.t.Fatalf("notify socket closed before %s; got %q", a, seen)
			}
			seen = append(seen, m)
			if hasAssignment(m, a) {
				return seen
			}
		case <-timeout:
			n.t.Fatalf("no %s notification; got %q", a, seen)
		}
	}
}

// sync sends a marker of the test's own to the socket and reads up to it,
// returning every message the daemon sent before it. A datagram is queued
// at the receiver when sendto returns, so everything the daemon had sent
// before this call is returned.
func (n *notifySocket) sync() []string {
	n.t.Helper()
	marker := fmt.Sprintf("X_TOKEND_TEST_MARKER=%d", n.markerSeq.Add(1))
	if sent, err := systemd.Notify(marker); err != nil || !sent {
		n.t.Fatalf("sending marker: sent=%v err=%v", sent, err)
	}
	seen := n.until(marker)
	return seen[:len(seen)-1]
}

func count(msgs []string, a string) int {
	c := 0
	for _, m := range msgs {
		if hasAssignment(m, a) {
			c++
		}
	}
	return c
}

// wedgeStore wraps the real store so that a test can make the scheduler's
// tick hang in PrunePending, as a wedged disk would.
type wedgeStore struct {
	Store
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func newWedgeStore() *wedgeStore {
	return &wedgeStore{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (w *wedgeStore) open(c config.Store, log *slog.Logger) (Store, error) {
	st, err := openStore(c, log)
	if err != nil {
		return nil, err
	}
	w.Store = st
	return w, nil
}

func (w *wedgeStore) PrunePending(now time.Time) (int, error) {
	if w.armed.Load() {
		select {
		case w.entered <- struct{}{}:
		default:
		}
		<-w.release
	}
	return w.Store.PrunePending(now)
}

func (w *wedgeStore) unwedge() { w.once.Do(func() { close(w.release) }) }

func TestNotifyLifecycle(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	// When READY=1 arrives the API socket accepts and serves, and the
	// store is open (its lock is held).
	onReady := func() error {
		resp, err := h.http.Get("http://tokend/v1/tokens")
		if err != nil {
			return fmt.Errorf("API socket after READY=1: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /v1/tokens after READY=1: %d", resp.StatusCode)
		}
		st, err := store.Open(store.Options{Path: h.cfg.Store.Path, LockTimeout: 50 * time.Millisecond})
		if err == nil {
			st.Close()
			return errors.New("the store was not open (not locked) when READY=1 was sent")
		}
		if !errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("opening the store after READY=1: %w", err)
		}
		return nil
	}
	n := listenNotify(t, onReady)
	h.startWith(Options{Notifier: opsNotifier{}, WatchdogInterval: 10 * time.Second})

	seen := n.until("READY=1")
	if err := <-n.readyErr; err != nil {
		t.Fatal(err)
	}
	if c := count(seen, "STOPPING=1") + count(seen, "RELOADING=1"); c != 0 {
		t.Fatalf("unexpected messages before READY=1: %q", seen)
	}

	// The status counts valid grants; it is updated on the scheduler's tick.
	h.advance(15 * time.Second)
	seen = n.sync()
	if !slices.ContainsFunc(seen, func(m string) bool { return hasAssignment(m, "STATUS=1 of 1 grants hold a valid token") }) {
		t.Fatalf("no STATUS=1 of 1 grants hold a valid token after a tick; got %q", seen)
	}

	// Reload: RELOADING=1 (with MONOTONIC_USEC) then READY=1, also when
	// the new configuration is rejected, or systemd would wait forever.
	n.sync()
	cfg := *h.cfg
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	checkReload(t, n.until("READY=1"))
	bad := *h.cfg
	bad.Grants = map[string]config.Grant{"x": {Client: "nope", Type: config.GrantClientCredentials}}
	if err := h.d.Reload(&bad); err == nil {
		t.Fatal("reload with an unknown client succeeded")
	}
	checkReload(t, n.until("READY=1"))
	h.settle()

	// Shutdown says STOPPING=1, and nothing claims readiness after it.
	h.stop()
	n.until("STOPPING=1")
	if after := n.sync(); count(after, "READY=1") != 0 {
		t.Fatalf("READY=1 after STOPPING=1: %q", after)
	}
}

// The watchdog is pinged from the scheduler loop, on the injected clock,
// and only while that loop turns.
func TestWatchdogFollowsSchedulerLoop(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	n := listenNotify(t, nil)
	wedge := newWedgeStore()
	const wd = 10 * time.Second
	h.startWith(Options{Notifier: opsNotifier{}, WatchdogInterval: wd, OpenStore: wedge.open})
	// Registered after startOps's h.stop, so it runs before it (cleanups
	// run last-in first-out): a wedged daemon cannot stop.
	t.Cleanup(wedge.unwedge)
	n.until("READY=1")
	n.sync()

	// Each move of the clock by the watchdog interval wakes the scheduler
	// loop, which pings exactly once.
	for i := range 3 {
		h.advance(wd)
		if got := count(n.sync(), "WATCHDOG=1"); got != 1 {
			t.Fatalf("advance %d by the watchdog interval: %d WATCHDOG=1 pings, want 1", i, got)
		}
	}

	// A wedged scheduler stops pinging, so systemd would restart the
	// process; the API keeps serving meanwhile.
	wedge.armed.Store(true)
	for i, entered := 0, false; !entered; i++ {
		if i == 3 {
			t.Fatalf("no tick in %v of watchdog wake-ups with schedule %s", 3*wd, h.cfg.Refresh.Schedule)
		}
		h.clock.Advance(wd)
		waitFor(t, "scheduler reacts to the clock", func() bool {
			select {
			case <-wedge.entered:
				entered = true
				return true
			default:
				return h.clock.Waiters() > 0
			}
		})
	}
	n.sync()
	for range 5 {
		h.clock.Advance(wd)
	}
	if tok := h.token("cc"); tok.AccessToken == "" {
		t.Fatal("no token served while the scheduler is wedged")
	}
	if got := count(n.sync(), "WATCHDOG=1"); got != 0 {
		t.Fatalf("%d WATCHDOG=1 pings while the scheduler loop was wedged", got)
	}
	wedge.armed.Store(false)
	wedge.unwedge()
	n.until("WATCHDOG=1")
	h.settle()
	n.sync() // a catch-up tick for the schedule missed while wedged may ping too
	h.advance(wd)
	if got := count(n.sync(), "WATCHDOG=1"); got != 1 {
		t.Fatalf("after the wedge: %d WATCHDOG=1 pings per watchdog interval, want 1", got)
	}
}

// Watchdog wake-ups must not push the schedule back: with an "@every"
// schedule longer than the watchdog interval, the scheduler still ticks
// and tokens are still refreshed before they expire.
func TestWatchdogDoesNotStarveScheduler(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	const wd = 10 * time.Second // shorter than the 15 s schedule
	h.startWith(Options{WatchdogInterval: wd})
	first := h.stored("cc")
	for elapsed := time.Duration(0); elapsed < 9*time.Minute; elapsed += wd {
		h.advance(wd)
	}
	if st := h.status("cc"); st.Generation < 2 || st.State != api.StateValid {
		t.Fatalf("after 9 min of %v steps with schedule %s: generation %d, state %s (first token expires %v): the scheduler never ticked",
			wd, h.cfg.Refresh.Schedule, st.Generation, st.State, first.Expiry.Sub(t0))
	}
}

// checkReload checks that msgs, read up to a READY=1, hold RELOADING=1
// with MONOTONIC_USEC before it.
func checkReload(t *testing.T, msgs []string) {
	t.Helper()
	i := slices.IndexFunc(msgs, func(m string) bool { return hasAssignment(m, "RELOADING=1") })
	if i < 0 {
		t.Fatalf("READY=1 without RELOADING=1 before it: %q", msgs)
	}
	if !strings.Contains(msgs[i], "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msgs[i])
	}
}

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape is a parsed /metrics answer.
type scrape struct {
	body    string
	samples []sample
}

func parseExposition(t *testing.T, body string) scrape {
	t.Helper()
	s := scrape{body: body}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		smp, err := parseSample(line)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.samples = append(s.samples, smp)
	}
	return s
}

func parseSample(line string) (sample, error) {
	smp := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return smp, errors.New("no name")
	}
	smp.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, "=\"")
			if eq <= 0 {
				return smp, errors.New("bad label")
			}
			key := line[:eq]
			line = line[eq+2:]
			var v strings.Builder
			for {
				if line == "" {
					return smp, errors.New("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' && line != "" {
					switch line[0] {
					case 'n':
						v.WriteByte('\n')
					default:
						v.WriteByte(line[0])
					}
					line = line[1:]
					continue
				}
				v.WriteByte(c)
			}
			smp.labels[key] = v.String()
			line = strings.TrimPrefix(line, ",")
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return smp, errors.New("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return smp, err
	}
	smp.value = v
	return smp, nil
}

// value returns the sample of name whose label set is exactly kv (pairs).
func (s scrape) value(name string, kv ...string) (float64, bool) {
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		want[kv[i]] = kv[i+1]
	}
	for _, smp := range s.samples {
		if smp.name == name && mapsEqual(smp.labels, want) {
			return smp.value, true
		}
	}
	return 0, false
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sum adds up every sample of name that carries the labels kv.
func (s scrape) sum(name string, kv ...string) float64 {
	total := 0.0
outer:
	for _, smp := range s.samples {
		if smp.name != name {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if smp.labels[kv[i]] != kv[i+1] {
				continue outer
			}
		}
		total += smp.value
	}
	return total
}

func (s scrape) want(t *testing.T, want float64, name string, kv ...string) {
	t.Helper()
	got, ok := s.value(name, kv...)
	if !ok {
		t.Errorf("%s%v missing", name, kv)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, kv, got, want)
	}
}

// wantState checks that the grant's state series say state and only it.
func (s scrape) wantState(t *testing.T, grant, state string) {
	t.Helper()
	for _, st := range api.States() {
		if st == state {
			s.want(t, 1, "tokend_grant_state", "grant", grant, "state", st)
		} else if _, ok := s.value("tokend_grant_state", "grant", grant, "state", st); ok {
			t.Errorf("tokend_grant_state{grant=%q,state=%q} present while the state is %q", grant, st, state)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (h *harness) scrapeMetrics() scrape {
	h.t.Helper()
	code, body := httpGet(h.t, "http://"+h.d.MetricsAddr()+"/metrics")
	if code != http.StatusOK {
		h.t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	s := parseExposition(h.t, body)
	// No secret appears anywhere in a scrape, label values included.
	secrets := append(h.prov.Issued(), testSecret)
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		if strings.Contains(body, sec) {
			h.t.Fatalf("secret %.6s… appears in /metrics", sec)
		}
		for _, smp := range s.samples {
			for k, v := range smp.labels {
				if strings.Contains(v, sec) {
					h.t.Fatalf("label %s of %s carries a secret", k, smp.name)
				}
			}
		}
	}
	return s
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }

func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) { c.Listen.Metrics = "127.0.0.1:0" }})
	m := metrics.New(metrics.BuildInfo{Version: "test", Revision: "r1"})
	h.startWith(Options{Metrics: m}, server.Config{MetricsHandler: func(ready func() error) http.Handler { return m.Handler(ready) }})
	base := "http://" + h.d.MetricsAddr()
	if h.d.MetricsAddr() == "" || strings.HasSuffix(h.d.MetricsAddr(), ":0") {
		t.Fatalf("MetricsAddr() = %q, want the bound address", h.d.MetricsAddr())
	}
	for _, p := range []string{"/readyz", "/healthz"} {
		if code, body := httpGet(t, base+p); code != http.StatusOK {
			t.Fatalf("GET %s while running: %d %s", p, code, body)
		}
	}

	// A successful refresh at start, then fetches.
	first := h.token("cc")
	h.token("cc")
	if code, _ := h.get("/v1/tokens/nope"); code != http.StatusNotFound {
		t.Fatalf("unknown grant: %d", code)
	}
	s := h.scrapeMetrics()
	s.want(t, 1, "tokend_refresh_total", "grant", "cc", "result", "success")
	s.want(t, 1, "tokend_refresh_duration_seconds_count", "grant", "cc")
	if !first.ExpiresAt.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("token expires at %v, want %v", first.ExpiresAt, t0.Add(10*time.Minute))
	}
	s.want(t, unixSeconds(first.ExpiresAt), "tokend_token_expiry_timestamp_seconds", "grant", "cc")
	s.want(t, unixSeconds(t0), "tokend_last_refresh_success_timestamp_seconds", "grant", "cc")
	s.wantState(t, "cc", api.StateValid)
	s.want(t, 2, "tokend_fetch_requests_total", "grant", "cc", "code", "200")
	s.want(t, 1, "tokend_fetch_requests_total", "grant", metrics.UnknownGrant, "code", "404")
	if got := s.sum("tokend_fetch_requests_total", "grant", "nope"); got != 0 {
		t.Errorf("the requested unknown name became a grant label (%v)", got)
	}
	s.want(t, 1, "tokend_build_info", "version", "test", "revision", "r1", "goversion", runtime.Version())

	// The provider fails (500, transient) past the token's expiry: the
	// rounds that gave up are counted as transient, the grant is expired,
	// and the expiry gauge still says when the old token expired.
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500})
	h.advance(10*time.Minute + 30*time.Second)
	s = h.scrapeMetrics()
	transient, _ := s.value("tokend_refresh_total", "grant", "cc", "result", "transient")
	if transient < 1 {
		t.Errorf("tokend_refresh_total{result=transient} = %v after a failed round, want ≥ 1", transient)
	}
	s.want(t, 1, "tokend_refresh_total", "grant", "cc", "result", "success")
	s.want(t, s.sum("tokend_refresh_total", "grant", "cc"), "tokend_refresh_duration_seconds_count", "grant", "cc")
	s.want(t, unixSeconds(first.ExpiresAt), "tokend_token_expiry_timestamp_seconds", "grant", "cc")
	s.wantState(t, "cc", api.StateExpired)

	// The provider is back: the next tick refreshes, and the gauges follow.
	h.prov.ClearFault()
	h.advance(15 * time.Second)
	second := h.token("cc")
	if second.AccessToken == first.AccessToken {
		t.Fatal("not refreshed after the provider came back")
	}
	s = h.scrapeMetrics()
	s.want(t, 2, "tokend_refresh_total", "grant", "cc", "result", "success")
	s.want(t, unixSeconds(second.ExpiresAt), "tokend_token_expiry_timestamp_seconds", "grant", "cc")
	s.want(t, unixSeconds(h.stored("cc").LastSuccess), "tokend_last_refresh_success_timestamp_seconds", "grant", "cc")
	s.wantState(t, "cc", api.StateValid)
	s.want(t, 3, "tokend_fetch_requests_total", "grant", "cc", "code", "200")

	// invalid_client is a credentials failure; the still-valid token
	// keeps its expiry gauge.
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidClient})
	if code, body := h.do(http.MethodPost, "/v1/tokens/cc/refresh"); code != http.StatusOK {
		t.Fatalf("manual refresh: %d %s", code, body)
	}
	s = h.scrapeMetrics()
	s.want(t, 1, "tokend_refresh_total", "grant", "cc", "result", "credentials")
	s.wantState(t, "cc", api.StateCredentialsError)
	s.want(t, unixSeconds(second.ExpiresAt), "tokend_token_expiry_timestamp_seconds", "grant", "cc")

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("GET /readyz with a failing grant: %d %s", code, body)
	}
}
