package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// Faults of the machine around the daemon: a store that cannot write, a
// wall clock that jumps, a provider that is down for a long time.

// faultyStore is the real store with PutToken failing on demand, as on a
// full disk or a file system remounted read-only. (A real read-only file
// cannot be had: bbolt keeps the descriptor it opened read-write, so a
// chmod of the open file changes nothing.)
type faultyStore struct {
	Store
	failPut  atomic.Bool
	failures atomic.Int64
}

func (f *faultyStore) PutToken(t store.Token, a *store.Attempt) error {
	if f.failPut.Load() {
		f.failures.Add(1)
		// What the real store returns for a failed bbolt commit.
		return fmt.Errorf("store: write token: write %s: %w", "tokend.db", syscall.ENOSPC)
	}
	return f.Store.PutToken(t, a)
}

// faultHarness is the harness with a store wrapper and a provider clock of
// its own: the provider's time is the daemon's fake clock plus skew, so a
// test can move the daemon's wall clock alone.
type faultHarness struct {
	*harness
	fs    *faultyStore
	skew  *atomic.Int64 // time.Duration added to the fake clock for the provider
	ticks *tickCounter
	// fetchWait is Options.FetchWait.
	fetchWait time.Duration
}

// tickCounter is a Notifier that counts status updates: the scheduler
// sends one per tick.
type tickCounter struct {
	nopNotifier
	n atomic.Int64
}

func (c *tickCounter) Status(string) error { c.n.Add(1); return nil }

type faultOpts struct {
	prov   devprovider.Options
	config func(*config.Config)
	noRun  bool
	// fetchWait caps a fetch's wait for a refresh (real time); 0 means 5 s.
	fetchWait time.Duration
}

func newFaultHarness(t *testing.T, o faultOpts) *faultHarness {
	t.Helper()
	skew := new(atomic.Int64)
	h := newHarness(t, harnessOpts{prov: o.prov, config: o.config, noRun: true,
		provClock: func(c *fakeClock) func() time.Time {
			return func() time.Time { return c.Now().Add(time.Duration(skew.Load())) }
		}})
	fh := &faultHarness{harness: h, skew: skew, ticks: &tickCounter{}, fetchWait: o.fetchWait}
	if fh.fetchWait == 0 {
		fh.fetchWait = 5 * time.Second
	}
	if !o.noRun {
		fh.start()
	}
	return fh
}

// start runs a daemon whose store is wrapped in a fresh faultyStore, with
// Options.OpenStore as the seam.
func (fh *faultHarness) start() {
	fh.t.Helper()
	fs := &faultyStore{}
	fh.fs = fs
	openStore := func(c config.Store, log *slog.Logger) (Store, error) {
		st, err := store.Open(store.Options{Path: c.Path, Key: c.Key, Logger: log})
		if err != nil {
			return nil, err
		}
		fs.Store = st
		return fs, nil
	}
	fh.startWith(Options{FetchWait: fh.fetchWait, OpenStore: openStore, Notifier: fh.ticks})
}

// restart stops the daemon and starts a new one on the same store.
func (fh *faultHarness) restart() {
	fh.t.Helper()
	fh.stop()
	fh.logs = &testutil.SyncBuffer{}
	fh.start()
}

// storedDirect reads a grant's record from the store under the wrapper.
func (fh *faultHarness) storedDirect(name string) store.Token {
	fh.t.Helper()
	return storedIn(fh.t, fh.fs.Store, name)
}

// jumpWall moves the daemon's wall clock by d without moving its timers,
// which is what a wall-clock step does to a process whose timers run on
// the monotonic clock (Go's time.Timer). The provider's clock stays put.
func (fh *faultHarness) jumpWall(d time.Duration) {
	c := fh.clock
	c.mu.Lock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.at = t.at.Add(d)
	}
	c.mu.Unlock()
	fh.skew.Add(int64(-d))
}

// fetchAll fetches every named grant and checks each token at the provider.
func (fh *faultHarness) fetchAll(names []string) {
	fh.t.Helper()
	for _, n := range names {
		tr := fh.token(n)
		if !fh.prov.Valid(tr.AccessToken) {
			fh.t.Fatalf("grant %s: served a token the provider does not accept (expires_at %s, provider time %s)",
				n, tr.ExpiresAt.Format(time.RFC3339), fh.clock.Now().Add(time.Duration(fh.skew.Load())).Format(time.RFC3339))
		}
	}
}

func grantNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("g%03d", i)
	}
	return names
}

func ccGrants(names []string) func(*config.Config) {
	return func(c *config.Config) {
		c.Grants = map[string]config.Grant{}
		for _, n := range names {
			c.Grants[n] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
		}
	}
}

// A refresh whose answer cannot be written (disk full) is loud, the new
// token is served from memory (the provider already rotated the refresh
// token away), the old token is never served again, and the next tick
// after the disk recovers writes it.
func TestDiskFullDuringRefresh(t *testing.T) {
	fh := newFaultHarness(t, faultOpts{prov: devprovider.Options{Rotate: true, AutoApprove: true}, config: userGrant})
	fh.authorizeViaCallback("user")
	old := fh.token("user")
	oldStored := fh.storedDirect("user")
	if oldStored.Generation != 1 || oldStored.AccessToken != old.AccessToken {
		t.Fatalf("after authorization: stored generation %d", oldStored.Generation)
	}

	fh.fs.failPut.Store(true)
	fh.advance(8 * time.Minute) // past 80 % of the 10 min lifetime
	if n := fh.prov.Stats().Refreshes; n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
	if fh.fs.failures.Load() == 0 {
		t.Fatal("the refresh did not try to write")
	}
	if fh.prov.RefreshValid(oldStored.RefreshToken) {
		t.Fatal("the provider did not rotate the refresh token away (the test needs it)")
	}
	logs := fh.logs.String()
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "not saved") || !strings.Contains(logs, "no space left on device") {
		t.Fatalf("the failed write is not logged at ERROR with its cause:\n%s", logs)
	}
	cur := fh.token("user")
	if cur.AccessToken == old.AccessToken {
		t.Fatal("the old token is served after the refresh")
	}
	if !fh.prov.Valid(cur.AccessToken) {
		t.Fatal("the token served from memory is not valid at the provider")
	}
	st := fh.status("user")
	t.Logf("status while the store fails: state %s, last_error %q", st.State, st.LastError)
	if st.State != api.StateValid || st.Generation != 2 || !strings.Contains(st.LastError, "store") || !strings.Contains(st.LastError, "no space left") {
		t.Fatalf("status while the store fails: %+v", st)
	}
	if got := fh.storedDirect("user"); got.Generation != 1 {
		t.Fatalf("stored generation %d while writes fail", got.Generation)
	}

	// Still failing for a while: no new refresh (each would rotate again),
	// the same new token served, the write retried.
	fh.advance(time.Minute)
	if n := fh.prov.Stats().Refreshes; n != 1 {
		t.Fatalf("a failing store caused %d refreshes", n)
	}
	if got := fh.token("user"); got.AccessToken != cur.AccessToken {
		t.Fatal("a different token is served while the store fails")
	}
	retries := fh.fs.failures.Load()
	if retries < 2 {
		t.Fatalf("the write was not retried on later ticks (%d tries)", retries)
	}

	// The disk recovers: the next tick persists, and the chain survives a
	// restart.
	fh.fs.failPut.Store(false)
	fh.advance(15 * time.Second)
	got := fh.storedDirect("user")
	if got.Generation != 2 || got.AccessToken != cur.AccessToken || !fh.prov.RefreshValid(got.RefreshToken) {
		t.Fatalf("after recovery: stored generation %d, same token %v, refresh valid %v", got.Generation, got.AccessToken == cur.AccessToken, fh.prov.RefreshValid(got.RefreshToken))
	}
	if st := fh.status("user"); st.LastError != "" {
		t.Fatalf("last_error after recovery: %q", st.LastError)
	}
	fh.restart()
	if got := fh.token("user"); got.AccessToken != cur.AccessToken {
		t.Fatal("restart lost the token written after recovery")
	}
	fh.advance(8 * time.Minute)
	if s := fh.prov.Stats(); s.Refreshes != 2 || s.Reuses != 0 {
		t.Fatalf("after restart: %d refreshes, %d reuses", s.Refreshes, s.Reuses)
	}
	fh.logMustNotContain(fh.prov.Issued()...)
}

// The disk recovers, and the daemon is stopped before the next tick wrote
// the token it holds only in memory. Shutdown must write it: otherwise the
// restarted daemon refreshes with the rotated-away refresh token and the
// chain is lost (the provider revokes the family on the reuse).
func TestDiskFullRecoveredThenStopKeepsToken(t *testing.T) {
	fh := newFaultHarness(t, faultOpts{prov: devprovider.Options{Rotate: true, AutoApprove: true}, config: userGrant})
	fh.authorizeViaCallback("user")
	fh.fs.failPut.Store(true)
	fh.advance(8 * time.Minute)
	cur := fh.token("user")
	if fh.prov.Stats().Refreshes != 1 || fh.storedDirect("user").Generation != 1 {
		t.Fatal("setup: want one refresh that was not written")
	}
	fh.fs.failPut.Store(false)
	fh.restart() // SIGTERM-like stop before any tick
	if got := fh.storedDirect("user"); got.Generation != 2 || got.AccessToken != cur.AccessToken {
		t.Errorf("shutdown did not write the token held in memory: stored generation %d", got.Generation)
	}
	fh.advance(8 * time.Minute)
	if s := fh.prov.Stats(); s.Reuses != 0 {
		t.Errorf("the chain was lost across the restart: %d reuses; status %+v", s.Reuses, fh.status("user"))
	}
}

// seedStaggered writes, before the daemon starts, one real token per
// grant obtained from the provider at staggered times: the fake clock
// moves step between two. It returns with the clock at the last one.
func (fh *faultHarness) seedStaggered(names []string, step time.Duration) {
	fh.t.Helper()
	st, err := store.Open(store.Options{Path: fh.cfg.Store.Path})
	if err != nil {
		fh.t.Fatal(err)
	}
	defer st.Close()
	for _, n := range names {
		fh.clock.Advance(step)
		form := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
		req, _ := http.NewRequest(http.MethodPost, fh.prov.URL()+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", testSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fh.t.Fatal(err)
		}
		var a struct {
			AccessToken string `json:"access_token"`
			ExpiresIn   int64  `json:"expires_in"`
		}
		err = json.NewDecoder(resp.Body).Decode(&a)
		resp.Body.Close()
		if err != nil || a.AccessToken == "" {
			fh.t.Fatalf("seed %s: %d %v", n, resp.StatusCode, err)
		}
		now := fh.clock.Now()
		tok := store.Token{Grant: n, AccessToken: a.AccessToken, TokenType: "Bearer", Scope: "read", Obtained: now,
			Expiry: now.Add(time.Duration(a.ExpiresIn) * time.Second), State: api.StateValid, StateSince: now, Generation: 1}
		if err := st.PutToken(tok, nil); err != nil {
			fh.t.Fatal(err)
		}
	}
}

// A forward jump of an hour (a suspended machine waking up) finds every
// token expired: each is refreshed once, not once per tick or per timer
// that fired late.
func TestClockJumpForwardRefreshesEachOnce(t *testing.T) {
	names := grantNames(100)
	fh := newFaultHarness(t, faultOpts{prov: devprovider.Options{AccessTTL: time.Hour}, config: ccGrants(names), noRun: true})
	fh.seedStaggered(names, 30*time.Second) // obtained over 50 min
	fh.start()
	fh.advance(time.Minute)
	before := fh.prov.Stats().TokenRequests
	due := before - len(names) // the seeding's requests are not the daemon's
	if due < 1 || due > 30 {
		t.Fatalf("%d grants refreshed after start; the oldest few should be (setup)", due)
	}

	fh.clock.Advance(time.Hour) // every timer fires at once
	time.Sleep(time.Millisecond)
	fh.settle()
	fh.advance(2 * time.Minute)
	after := fh.prov.Stats().TokenRequests
	if got := after - before; got != len(names) {
		t.Fatalf("the jump caused %d token requests for %d grants, want exactly one each", got, len(names))
	}
	fh.fetchAll(names)
	for _, n := range names {
		if s := fh.status(n); s.State != api.StateValid || s.Failures != 0 {
			t.Fatalf("grant %s after the jump: %+v", n, s)
		}
	}
	t.Logf("forward jump: %d grants, %d token requests", len(names), after-before)
}

// A backward step of the daemon's wall clock by an hour (NTP correcting a
// clock that ran fast) does not make the daemon refresh anything again:
// every token now looks younger, none looks due. For the ten minutes
// after the step every served token is still valid at the provider,
// whose clock did not move.
//
// Past that, the fake clock cannot show the whole story: it has no
// monotonic reading, so the daemon here compares wall times and would
// serve the oldest tokens past their real expiry. In production the
// tokens this process obtained carry Go's monotonic reading, and every
// expiry comparison uses it (TestRefreshedTokenKeepsMonotonicReading);
// only tokens loaded from the store after a restart are compared by wall
// time.
func TestClockJumpBackNoNeedlessRefresh(t *testing.T) {
	names := grantNames(100)
	fh := newFaultHarness(t, faultOpts{prov: devprovider.Options{AccessTTL: time.Hour}, config: ccGrants(names), noRun: true})
	fh.seedStaggered(names, 30*time.Second)
	fh.start()
	fh.advance(time.Minute)
	before := fh.prov.Stats().TokenRequests

	fh.jumpWall(-time.Hour)
	ticks := fh.ticks.n.Load()
	for range 40 { // ten minutes of ticks
		fh.advance(15 * time.Second)
		fh.fetchAll(names[:10])
	}
	if n := fh.prov.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("%d refreshes after the clock stepped back", n)
	}
	fh.fetchAll(names)
	// The scheduler keeps ticking. The fake clock's times have no
	// monotonic reading, so this is what a 5-field cron schedule (whose
	// Next is built from wall-clock fields) does in production.
	if n := fh.ticks.n.Load() - ticks; n < 35 {
		t.Errorf("%d scheduler ticks in the 10 min after the wall clock stepped back 1 h, want about 40", n)
	}
}

// Tokens the refresher builds carry the monotonic clock reading of
// time.Now (the real clock), so in-memory expiry comparisons are immune
// to wall-clock steps. The stored copy is wall time only: after a
// restart, a wall-clock step moves expiry comparisons with it.
func TestClockRefreshedTokenKeepsMonotonicReading(t *testing.T) {
	// tokenFrom keeps what oauth.Provider computed from time.Now.
	now := time.Now()
	n := tokenFrom(emptyToken("g"), &oauth.Token{AccessToken: oauth.NewSecret("at"), Obtained: now, Expiry: now.Add(time.Hour)},
		&grant{name: "g"}, policyOf(config.Refresh{DefaultLifetime: time.Hour}))
	if !strings.Contains(n.Expiry.String(), "m=") || !strings.Contains(n.Obtained.String(), "m=") {
		t.Fatalf("tokenFrom dropped the monotonic reading: %s", n.Expiry)
	}

	// The whole path: a daemon on the real clock obtains a token from a
	// provider on the real clock.
	prov := devprovider.New(devprovider.Options{Clients: []devprovider.Client{{ID: "app", Secret: testSecret}}, AccessTTL: 10 * time.Minute})
	t.Cleanup(prov.Close)
	dir := t.TempDir()
	cfg := &config.Config{
		Store:     config.Store{Path: filepath.Join(dir, "tokend.db")},
		Listen:    config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"},
		Providers: map[string]config.Provider{"test": {Issuer: prov.URL()}},
		Clients:   map[string]config.Client{"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret)}},
		Grants:    map[string]config.Grant{"cc": {Client: "app", Type: config.GrantClientCredentials}},
	}
	cfg.ApplyDefaults()
	d, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, serversOf(d)) }()
	<-d.Started()
	g := d.grant("cc")
	waitFor(t, "first token", func() bool { tk := g.cur.Load(); return tk != nil && tk.AccessToken != "" })
	tk := g.cur.Load()
	if !strings.Contains(tk.Expiry.String(), "m=") || !strings.Contains(tk.Obtained.String(), "m=") {
		t.Errorf("the refresher's token has no monotonic reading: expiry %s", tk.Expiry)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(store.Options{Path: cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.Token("cc")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stored.Expiry.String(), "m=") || !stored.Expiry.Equal(tk.Expiry) {
		t.Errorf("stored expiry %s: want the same instant as wall time only", stored.Expiry)
	}
}

// A provider down for half an hour: refreshes back off instead of looping,
// and every grant is valid again soon after it returns.
func TestOutageBackoffBounded(t *testing.T) {
	names := grantNames(50)
	const outage = 30 * time.Minute
	fh := newFaultHarness(t, faultOpts{fetchWait: 100 * time.Millisecond, config: func(c *config.Config) {
		ccGrants(names)(c)
		// One worker per grant, so every refresh waits on its backoff timer
		// and the harness can tell when the daemon is idle.
		c.Refresh.Concurrency = len(names)
	}})
	if n := fh.prov.Stats().TokenRequests; n != len(names) {
		t.Fatalf("%d token requests at start, want %d", n, len(names))
	}
	fh.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultDown})
	before := fh.prov.Stats().TokenRequests
	fh.advance(outage)
	during := fh.prov.Stats().TokenRequests - before

	for _, n := range names {
		if s := fh.status(n); s.State != api.StateExpired || s.LastError == "" {
			t.Fatalf("grant %s after a 30 min outage with 10 min tokens: %+v", n, s)
		}
	}
	// A fetch of an expired token joins the grant's refresh round, which
	// sleeps on a backoff timer of the fake clock: it waits out FetchWait,
	// then answers 503.
	for _, n := range names[:3] {
		if code, body := fh.get("/v1/tokens/" + n); code != http.StatusServiceUnavailable {
			t.Fatalf("fetch of %s during the outage: %d %s", n, code, body)
		}
	}

	fh.prov.ClearFault()
	fh.advance(2*time.Minute + 15*time.Second) // the longest backoff wait, then a tick
	for _, n := range names {
		if s := fh.status(n); s.State != api.StateValid {
			t.Fatalf("grant %s did not recover: %+v", n, s)
		}
	}
	fh.fetchAll(names)

	// A hot loop would try every second or faster. Backoff (1 s doubling
	// to 1 min, rounds of at most 2 min once a token has expired, a new
	// round at the next tick) allows at most 8 tries per grant per round
	// and one round per 2 min of outage (plus the one in flight at the
	// start).
	hot := len(names) * int(outage/time.Second)
	rounds := int(outage/expiredRound) + 1
	bound := len(names) * rounds * 8
	t.Logf("outage of %v with %d grants: %d token requests (%.1f per grant per minute); a 1 s loop would make %d, the backoff bound is %d",
		outage, len(names), during, float64(during)/float64(len(names))/outage.Minutes(), hot, bound)
	if during >= hot {
		t.Fatalf("%d requests during the outage: no backoff", during)
	}
	if during > bound {
		t.Fatalf("%d requests during the outage, more than the backoff allows (%d)", during, bound)
	}
}
