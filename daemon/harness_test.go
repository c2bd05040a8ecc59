package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

const testSecret = "s3cr3t-client"

// harness runs a daemon against the in-process provider with a fake clock,
// a real store in a temporary directory and a real unix socket.
type harness struct {
	t      *testing.T
	clock  *fakeClock
	prov   *devprovider.Server
	cfg    *config.Config
	d      *Daemon
	sock   string
	http   *http.Client
	cancel context.CancelFunc
	done   chan error
	logs   *testutil.SyncBuffer
	step   time.Duration
}

type harnessOpts struct {
	prov   devprovider.Options
	config func(*config.Config)
	noRun  bool
	// step is how far advance moves the clock at a time; it should match
	// the refresh schedule. 0 means 15 s.
	step time.Duration
	// provClock, when set, gives the provider its own clock derived from
	// the daemon's (to move one without the other).
	provClock func(*fakeClock) func() time.Time
	// tls serves the provider over HTTPS with its own CA (provider
	// ca_file) and mtls_endpoint_aliases.
	tls bool
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	clock := newFakeClock(t0)
	po := o.prov
	po.Now = clock.Now
	if o.provClock != nil {
		po.Now = o.provClock(clock)
	}
	if po.AccessTTL == 0 {
		po.AccessTTL = 10 * time.Minute
	}
	po.Clients = append(po.Clients, devprovider.Client{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"})
	var prov *devprovider.Server
	if o.tls {
		prov = devprovider.NewTLS(po)
	} else {
		prov = devprovider.New(po)
	}
	t.Cleanup(prov.Close)
	dir := t.TempDir()
	cfg := &config.Config{
		Store:   config.Store{Path: filepath.Join(dir, "tokend.db")},
		Listen:  config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"},
		Refresh: config.Refresh{Schedule: config.MustParseSchedule("@every 15s"), MinRemaining: 10 * time.Second},
		Log:     config.Log{Level: "debug"},
		Providers: map[string]config.Provider{
			"test": {Issuer: prov.URL(), CAs: caPool(prov, o.tls)},
		},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret)},
		},
		Grants: map[string]config.Grant{
			"cc": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}},
		},
	}
	if o.config != nil {
		o.config(cfg)
	}
	cfg.ApplyDefaults()
	h := &harness{t: t, clock: clock, prov: prov, cfg: cfg, sock: cfg.Listen.Socket, logs: &testutil.SyncBuffer{}, step: o.step}
	if h.step == 0 {
		h.step = 15 * time.Second
	}
	h.http = testutil.UnixHTTPClient(h.sock, 0)
	if !o.noRun {
		h.start()
	}
	return h
}

func caPool(prov *devprovider.Server, tls bool) *x509.CertPool {
	if !tls {
		return nil
	}
	return prov.CertPool()
}

// sameStore returns a harness, not started, for another daemon on h's
// store, socket, clock and provider, with a log of its own: to start one
// after h stopped.
func (h *harness) sameStore() *harness {
	return &harness{t: h.t, clock: h.clock, prov: h.prov, cfg: h.cfg, sock: h.sock, http: h.http, logs: &testutil.SyncBuffer{}, step: h.step}
}

func (h *harness) start() { h.startWith(Options{}) }

// startWith runs a daemon with o's collaborators, behind servers with
// sc's options (at most one); the harness supplies the
// logger, the fake clock and (unless o sets one) a 5 s fetch wait.
func (h *harness) startWith(o Options, sc ...server.Config) {
	h.t.Helper()
	o.Logger = NewLogger(h.logs, h.cfg.Log, false)
	o.Clock = h.clock
	if o.FetchWait == 0 {
		o.FetchWait = 5 * time.Second
	}
	d, err := New(h.cfg, o)
	if err != nil {
		h.t.Fatal(err)
	}
	h.d = d
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- d.Run(ctx, serversOf(d, sc...)) }()
	select {
	case <-d.Started():
	case err := <-h.done:
		h.t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("daemon did not start")
	}
	h.t.Cleanup(h.stop)
	h.settle()
}

// stop ends the daemon and waits for Run to return.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Error("daemon did not stop")
	}
	if h.t.Failed() {
		h.t.Logf("daemon log:\n%s", h.logs.String())
	}
}

// settle waits until nothing moves without the clock: no refresh is queued,
// every running refresh waits on a backoff timer, and the scheduler waits
// on its own timer.
func (h *harness) settle() {
	h.t.Helper()
	waitFor(h.t, "daemon idle", h.idle)
}

// idle reads what the daemon keeps of each grant for itself: queued (from
// the queue until its refresh is done), endRound (while a refresh round
// runs) and backingOff (while the round waits to retry).
func (h *harness) idle() bool {
	if h.d.queue.queuedLen() != 0 {
		return false
	}
	h.d.mu.RLock()
	states := h.d.states
	h.d.mu.RUnlock()
	waiting := 0
	for _, s := range states {
		switch running := s.endRound.Load() != nil; {
		case running && !s.backingOff.Load():
			return false // asking the provider, or writing the store
		case running:
			waiting++
		case s.queued.Load():
			return false // a worker took it: before its refresh, or just after
		}
	}
	// A timer for each round that waits, and the scheduler's.
	return h.clock.Waiters() > waiting
}

// advance moves the clock in schedule-sized steps, letting the daemon
// react after each.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	for d > 0 {
		step := min(d, h.step)
		h.clock.Advance(step)
		d -= step
		time.Sleep(time.Millisecond)
		h.settle()
	}
}

func (h *harness) get(path string) (int, []byte) {
	h.t.Helper()
	return h.do(http.MethodGet, path)
}

func (h *harness) do(method, path string) (int, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://tokend"+path, nil)
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *harness) token(name string) api.TokenResponse {
	h.t.Helper()
	code, body := h.get("/v1/tokens/" + name)
	if code != 200 {
		h.t.Fatalf("GET token %s: %d %s", name, code, body)
	}
	var tr api.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		h.t.Fatal(err)
	}
	return tr
}

func (h *harness) status(name string) api.GrantStatus {
	h.t.Helper()
	code, body := h.get("/v1/tokens/" + name + "/status")
	if code != 200 {
		h.t.Fatalf("GET status %s: %d %s", name, code, body)
	}
	var s api.GrantStatus
	if err := json.Unmarshal(body, &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// stored reads the grant's record straight from the store.
func (h *harness) stored(name string) store.Token {
	h.t.Helper()
	return storedIn(h.t, h.d.st, name)
}

// storedIn reads a grant's record from st; one that cannot be read fails
// the test.
func storedIn(t testing.TB, st Store, name string) store.Token {
	t.Helper()
	tok, err := st.Token(name)
	if err != nil {
		t.Fatalf("stored token %s: %v", name, err)
	}
	return tok
}

// logMustNotContain fails if any secret appears in the daemon's log.
func (h *harness) logMustNotContain(secrets ...string) {
	h.t.Helper()
	log := h.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(log, s) {
			h.t.Fatalf("secret %.6s… appears in the log", s)
		}
	}
}

func userGrant(c *config.Config) {
	c.Grants = map[string]config.Grant{"user": {Client: "app", Type: config.GrantAuthorizationCode, Scopes: []string{"openid", "offline_access"}}}
	cl := c.Clients["app"]
	cl.RedirectURI = "http://127.0.0.1:1/callback"
	c.Clients["app"] = cl
}

// authorizeViaCallback runs the authorization-code flow in a browser: the
// start page binds it, the provider approves at once, and its redirect is
// delivered to the daemon's callback with the binding cookie.
func (h *harness) authorizeViaCallback(name string) string {
	h.t.Helper()
	b := newBrowser(h.t)
	auth := h.openStart(b, h.startAuthorization(name))
	cb := h.codeFor(b, auth)
	resp, body := get(h.t, b, cb, "")
	if resp.StatusCode != 200 {
		h.t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	h.settle()
	return cb
}
