package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/store"
)

// fakeFleet is a Fleet over the bbolt store, for the daemon's side of fleet
// mode without etcd. It honours the contract: PutToken is fenced on the
// lease (held) and on the revision this instance last saw; PutAuthorized
// on the revision only; Watch delivers, in order, what "another instance"
// (the test, through otherWrite) wrote.
type fakeFleet struct {
	*store.Store
	instance string

	mu         sync.Mutex
	held       map[string]bool
	owner      map[string]string // the holder when not this instance
	conflict   map[string]string
	quorum     bool
	leaseLost  bool // Health: this instance's lease lost (quorum or not)
	rev, seen  map[string]int64
	fps        map[string]string
	setCalls   int
	locks      []string
	onLock     func() // runs inside Lock (another instance registering meanwhile)
	dropAfter  int    // > 0: the lease of every grant is lost after this many Holds
	fenceNext  func() // runs inside the next PutToken, which is then checked as usual
	watchStart chan struct{}
	setBlock   chan struct{} // when set, SetGrants waits for it to close
	watchOK    atomic.Bool
	events     chan store.Token
	starts     *fakeStarts // the fleet's start pages, shared with peers
	peerOf     *fakeFleet  // set: a second instance on that one's store (peer)
}

// fakeStarts are the start pages of a fake fleet, shared by its instances.
type fakeStarts struct {
	mu    sync.Mutex
	m     map[string]store.StartPage
	puts  int
	takes int
}

func (f *fakeFleet) PutStart(key string, p store.StartPage) error {
	f.starts.mu.Lock()
	defer f.starts.mu.Unlock()
	f.starts.m[key] = p
	f.starts.puts++
	return nil
}

func (f *fakeFleet) TakeStart(key string, now time.Time) (store.StartPage, error) {
	f.starts.mu.Lock()
	defer f.starts.mu.Unlock()
	f.starts.takes++
	p, ok := f.starts.m[key]
	delete(f.starts.m, key)
	switch {
	case !ok:
		return store.StartPage{}, store.ErrNotFound
	case !p.Deadline.IsZero() && !now.Before(p.Deadline):
		return store.StartPage{}, store.ErrExpired
	}
	return p, nil
}

// startsLen is how many start pages the fleet holds.
func (f *fakeFleet) startsLen() int {
	f.starts.mu.Lock()
	defer f.starts.mu.Unlock()
	return len(f.starts.m)
}

// peer is another instance of f's fleet: the same bbolt store (which its
// Close leaves open) and start pages, its own leases and revisions.
func (f *fakeFleet) peer(instance string) *fakeFleet {
	p := newFakeFleet()
	p.instance, p.starts, p.peerOf = instance, f.starts, f
	return p
}

func (f *fakeFleet) Close() error {
	if f.peerOf != nil {
		return nil
	}
	return f.Store.Close()
}

var _ Fleet = (*fakeFleet)(nil)

func newFakeFleet() *fakeFleet {
	return &fakeFleet{instance: "host-a", held: map[string]bool{}, owner: map[string]string{}, conflict: map[string]string{},
		quorum: true, rev: map[string]int64{}, seen: map[string]int64{}, events: make(chan store.Token, 16),
		starts: &fakeStarts{m: map[string]store.StartPage{}}}
}

// open is an Options.OpenStore that opens the bbolt file under f (a
// peer's: the store of the instance it is a peer of).
func (f *fakeFleet) open(c config.Store, log *slog.Logger) (Store, error) {
	if f.peerOf != nil {
		f.Store = f.peerOf.Store
		return f, nil
	}
	st, err := openStore(c, log)
	if err != nil {
		return nil, err
	}
	f.Store = st.(*store.Store)
	return f, nil
}

func (f *fakeFleet) set(fn func(f *fakeFleet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeFleet) Instance() string { return f.instance }

func (f *fakeFleet) SetGrants(ctx context.Context, fps map[string]string) error {
	if f.setBlock != nil {
		select {
		case <-f.setBlock:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setCalls++
	f.fps = fps
	return nil
}

func (f *fakeFleet) Holds(grant string, margin time.Duration) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropAfter > 0 {
		if f.dropAfter--; f.dropAfter == 0 {
			clear(f.held)
		}
	}
	return f.quorum && f.held[grant] && f.conflict[grant] == "" && margin > 0
}

func (f *fakeFleet) PutToken(t store.Token, a *store.Attempt) error {
	f.mu.Lock()
	if fn := f.fenceNext; fn != nil {
		f.fenceNext = nil
		f.mu.Unlock()
		fn()
		f.mu.Lock()
	}
	defer f.mu.Unlock()
	switch {
	case !f.quorum:
		return store.ErrUnavailable
	case !f.held[t.Grant] || f.seen[t.Grant] != f.rev[t.Grant]:
		return store.ErrFenced
	}
	return f.write(t, a)
}

func (f *fakeFleet) PutAuthorized(t store.Token, a *store.Attempt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.quorum {
		return store.ErrUnavailable
	}
	if f.seen[t.Grant] != f.rev[t.Grant] {
		return store.ErrFenced
	}
	return f.write(t, a)
}

func (f *fakeFleet) write(t store.Token, a *store.Attempt) error {
	if err := f.Store.PutToken(t, a); err != nil {
		return err
	}
	f.rev[t.Grant]++
	f.seen[t.Grant] = f.rev[t.Grant]
	return nil
}

// otherWrite is a write by another instance: stored, then delivered.
func (f *fakeFleet) otherWrite(t *testing.T, tok store.Token) {
	t.Helper()
	f.mu.Lock()
	err := f.Store.PutToken(tok, nil)
	f.rev[tok.Grant]++
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	f.events <- tok
}

// Token reads a record; like the etcd store, what this instance reads
// counts as seen.
func (f *fakeFleet) Token(grant string) (store.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.Store.Token(grant)
	if err == nil {
		f.seen[grant] = f.rev[grant]
	}
	return t, err
}

// otherWriteUndelivered is a write by another instance the watch has not
// delivered yet.
func (f *fakeFleet) otherWriteUndelivered(t *testing.T, tok store.Token) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.Store.PutToken(tok, nil); err != nil {
		t.Fatal(err)
	}
	f.rev[tok.Grant]++
}

func (f *fakeFleet) Watch(ctx context.Context, fn func(t store.Token)) {
	if f.watchStart != nil {
		select {
		case <-f.watchStart:
		case <-ctx.Done():
			return
		}
	}
	f.watchOK.Store(true)
	defer f.watchOK.Store(false)
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-f.events:
			f.mu.Lock()
			f.seen[t.Grant] = f.rev[t.Grant]
			f.mu.Unlock()
			fn(t)
		}
	}
}

func (f *fakeFleet) Lock(ctx context.Context, name string) (func(), error) {
	f.mu.Lock()
	f.locks = append(f.locks, name)
	fn := f.onLock
	f.mu.Unlock()
	if fn != nil {
		fn()
	}
	return func() {}, nil
}

func (f *fakeFleet) GrantInfo(grant string) store.FleetGrant {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := store.FleetGrant{Owner: f.owner[grant], Held: f.held[grant], Conflict: f.conflict[grant]}
	if g.Held {
		g.Owner = f.instance
	}
	return g
}

func (f *fakeFleet) Health() store.FleetHealth {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, h := range f.held {
		if h {
			n++
		}
	}
	return store.FleetHealth{Quorum: f.quorum, LeaseOK: f.quorum && !f.leaseLost, WatchOK: f.watchOK.Load(), GrantsHeld: n}
}

// fleetMetrics records the fleet metrics the daemon exports.
type fleetMetrics struct {
	nopMetrics
	mu        sync.Mutex
	health    store.FleetHealth
	fenced    int
	refused   int
	conflicts map[string]bool
	states    map[string]string
}

func (m *fleetMetrics) SetState(g, state string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.states == nil {
		m.states = map[string]string{}
	}
	m.states[g] = state
}

func (m *fleetMetrics) SetFleetHealth(h store.FleetHealth) { m.mu.Lock(); m.health = h; m.mu.Unlock() }
func (m *fleetMetrics) ObserveFencedWrite()                { m.mu.Lock(); m.fenced++; m.mu.Unlock() }
func (m *fleetMetrics) ObserveRefusedRecord()              { m.mu.Lock(); m.refused++; m.mu.Unlock() }
func (m *fleetMetrics) SetFleetConflict(g string, c bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conflicts == nil {
		m.conflicts = map[string]bool{}
	}
	m.conflicts[g] = c
}

// fleetHarness runs a daemon on a fakeFleet; cc is held by setup's choice.
func fleetHarness(t *testing.T, po devprovider.Options, setup func(f *fakeFleet), config func(*config.Config)) (*harness, *fakeFleet, *fleetMetrics) {
	t.Helper()
	f := newFakeFleet()
	if setup != nil {
		setup(f)
	}
	m := &fleetMetrics{}
	h := newHarness(t, harnessOpts{prov: po, noRun: true, config: config})
	h.startWith(Options{OpenStore: f.open, Metrics: m})
	waitFor(t, "watch up", func() bool { return f.watchOK.Load() })
	return h, f, m
}

func validToken(grant, access string, gen uint64, now time.Time) store.Token {
	return store.Token{Grant: grant, AccessToken: access, TokenType: "Bearer", Obtained: now, Expiry: now.Add(time.Hour),
		State: api.StateValid, StateSince: now, LastSuccess: now, Generation: gen}
}

func TestFleetRefreshesOnlyWhenHeld(t *testing.T) {
	h, f, m := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	h.advance(time.Minute)
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("a non-holder sent %d token requests", n)
	}
	if strings.Contains(h.logs.String(), "refresh not sent") {
		t.Fatal("the scheduler queued a grant this instance does not hold")
	}
	st := h.status("cc")
	if st.Refresher != "host-b" || st.RefresherSelf {
		t.Fatalf("status refresher %q self %v, want host-b", st.Refresher, st.RefresherSelf)
	}
	f.set(func(f *fakeFleet) { f.held["cc"] = true })
	h.advance(15 * time.Second)
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("the holder sent %d token requests, want 1", n)
	}
	st = h.status("cc")
	if st.State != api.StateValid || st.Refresher != "host-a" || !st.RefresherSelf {
		t.Fatalf("status after taking over: %+v", st)
	}
	f.mu.Lock()
	fp, calls := f.fps["cc"], f.setCalls
	f.mu.Unlock()
	if fp != Fingerprint(h.cfg, "cc") || calls != 1 {
		t.Fatalf("SetGrants: %d calls, fingerprint %q", calls, fp)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.health.Quorum || m.health.GrantsHeld != 1 || !m.health.WatchOK {
		t.Fatalf("fleet health exported: %+v", m.health)
	}
}

// A lease lost between the tick that queued the grant and the request:
// the request is not sent and nothing is recorded as a failure.
func TestFleetLeaseLostBeforeRequest(t *testing.T) {
	h, f, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	f.set(func(f *fakeFleet) { f.held["cc"], f.dropAfter = true, 2 }) // the tick's Holds, then lost
	h.advance(15 * time.Second)
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests after the lease was lost", n)
	}
	if !strings.Contains(h.logs.String(), "refresh not sent") {
		t.Fatal("the round was not abandoned")
	}
	if st := h.status("cc"); st.Failures != 0 || st.LastError != "" {
		t.Fatalf("an abandoned round recorded a failure: %+v", st)
	}
}

func TestFleetWatchPublishesAndFetchWaits(t *testing.T) {
	h, f, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	// No token yet: a fetch waits for the watch instead of refreshing.
	type result struct {
		code int
		body []byte
	}
	done := make(chan result, 1)
	go func() { c, b := h.get("/v1/tokens/cc"); done <- result{c, b} }()
	waitFor(t, "the fetch to wait for the watch", func() bool {
		select {
		case r := <-done:
			t.Fatalf("fetch answered before the watch delivered: %d %s", r.code, r.body)
		default:
		}
		return fleetFetchWaiting(h.d, "cc")
	})
	f.otherWrite(t, validToken("cc", "from-host-b", 1, h.clock.Now()))
	r := <-done
	if r.code != 200 || !strings.Contains(string(r.body), "from-host-b") {
		t.Fatalf("fetch: %d %s", r.code, r.body)
	}
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("a non-holder sent %d token requests", n)
	}
	// A later record replaces it at once, and the grant is indexed: its
	// refresh falls due on the holder's schedule, not here.
	f.otherWrite(t, validToken("cc", "second-from-b", 2, h.clock.Now()))
	waitFor(t, "second token", func() bool { return h.token("cc").AccessToken == "second-from-b" })
	if st := h.status("cc"); st.Generation != 2 || st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
}

// fleetFetchWaiting reports whether a fetch of grant is waiting for the
// watch to deliver it: the fetch registers its wake-up channel just before
// it waits, and the watch's delivery removes it.
func fleetFetchWaiting(d *Daemon, grant string) bool {
	d.fleet.mu.Lock()
	defer d.fleet.mu.Unlock()
	_, ok := d.fleet.waiters[grant]
	return ok
}

func TestFleetFetchTimesOutNamingRefresher(t *testing.T) {
	h, _, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	h.d.opts.FetchWait = 100 * time.Millisecond
	code, body := h.get("/v1/tokens/cc")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "instance host-b refreshes this grant") {
		t.Fatalf("fetch: %d %s", code, body)
	}
}

func TestFleetFetchTakesOverWhileWaiting(t *testing.T) {
	h, f, _ := fleetHarness(t, devprovider.Options{}, nil, nil)
	done := make(chan int, 1)
	go func() { c, _ := h.get("/v1/tokens/cc"); done <- c }()
	waitFor(t, "the fetch to wait for the watch", func() bool {
		select {
		case c := <-done:
			t.Fatalf("fetch answered before this instance took the grant over: %d", c)
		default:
		}
		return fleetFetchWaiting(h.d, "cc")
	})
	f.set(func(f *fakeFleet) { f.held["cc"] = true })
	if c := <-done; c != 200 {
		t.Fatalf("fetch after taking over: %d", c)
	}
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d token requests", n)
	}
}

func TestFleetFencedWrite(t *testing.T) {
	h, f, m := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.held["cc"] = true }, nil)
	first := h.token("cc")
	winner := validToken("cc", "written-by-host-b", 7, h.clock.Now())
	f.set(func(f *fakeFleet) {
		// Between this instance's request and its write, another
		// instance wrote the grant (this one was paused past its lease).
		f.fenceNext = func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			if err := f.Store.PutToken(winner, nil); err != nil {
				t.Error(err)
			}
			f.rev["cc"]++
		}
	})
	code, body := h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	if code != 200 && code != 204 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	issued := h.prov.Issued()
	lost := issued[len(issued)-1]
	if lost == first.AccessToken {
		t.Fatal("no second token issued")
	}
	if got := h.token("cc").AccessToken; got != winner.AccessToken {
		t.Fatalf("served %q after a fenced write, want the other instance's token", got)
	}
	if h.d.grant("cc").dirty.Load() {
		t.Fatal("fenced token kept as unsaved: it would be written again")
	}
	m.mu.Lock()
	fenced := m.fenced
	m.mu.Unlock()
	if fenced != 1 {
		t.Fatalf("fenced writes counted: %d", fenced)
	}
	if !strings.Contains(h.logs.String(), "fenced") {
		t.Fatal("fenced write not logged")
	}
	h.logMustNotContain(lost, first.AccessToken, winner.AccessToken)
}

func TestFleetQuorumLossPausesAndResumes(t *testing.T) {
	h, f, m := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.held["cc"] = true }, nil)
	tok := h.token("cc")
	f.set(func(f *fakeFleet) { f.quorum = false })
	h.advance(15 * time.Second)
	st := h.status("cc")
	if st.LastError != fleetPausedError {
		t.Fatalf("last_error during quorum loss: %q", st.LastError)
	}
	m.mu.Lock()
	q := m.health.Quorum
	m.mu.Unlock()
	if q {
		t.Fatal("quorum loss not exported")
	}
	// Past the refresh point (75 % of 10 minutes): nothing is sent, the
	// valid token is still served.
	before := h.prov.Stats().TokenRequests
	h.advance(8 * time.Minute)
	if n := h.prov.Stats().TokenRequests; n != before {
		t.Fatalf("%d requests sent without quorum", n-before)
	}
	if got := h.token("cc").AccessToken; got != tok.AccessToken {
		t.Fatal("token not served during quorum loss")
	}
	f.set(func(f *fakeFleet) { f.quorum = true })
	h.advance(15 * time.Second)
	if n := h.prov.Stats().TokenRequests; n != before+1 {
		t.Fatalf("after quorum returned: %d requests, want 1", n-before)
	}
	st = h.status("cc")
	if st.LastError != "" || st.State != api.StateValid {
		t.Fatalf("status after quorum returned: %+v", st)
	}
	if !strings.Contains(h.logs.String(), "quorum lost") || !strings.Contains(h.logs.String(), "quorum back") {
		t.Fatal("quorum transitions not logged")
	}
}

func TestFleetManualRefreshRefused(t *testing.T) {
	h, _, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	code, body := h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	if code == 200 || code == 204 || !strings.Contains(string(body), "tokend refresh cc on host-b") {
		t.Fatalf("manual refresh on a non-holder: %d %s", code, body)
	}
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("%d token requests", n)
	}
}

func TestFleetConflict(t *testing.T) {
	h, _, m := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) {
		f.held["cc"] = true
		f.conflict["cc"] = "scopes differ from host-b's"
	}, nil)
	h.advance(time.Minute)
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("a conflicting instance sent %d token requests", n)
	}
	if st := h.status("cc"); st.FleetConflict != "scopes differ from host-b's" {
		t.Fatalf("status: %+v", st)
	}
	m.mu.Lock()
	c := m.conflicts["cc"]
	m.mu.Unlock()
	if !c {
		t.Fatal("conflict not exported")
	}
}

func TestFleetReadyAfterWatch(t *testing.T) {
	f := newFakeFleet()
	f.watchStart = make(chan struct{})
	h := newHarness(t, harnessOpts{noRun: true})
	h.startWith(Options{OpenStore: f.open})
	if err := h.d.Ready(); err == nil {
		t.Fatal("ready before the watch is up")
	}
	close(f.watchStart)
	waitFor(t, "ready", func() bool { return h.d.Ready() == nil })
}

func TestFleetAuthorizationWritesFleetWide(t *testing.T) {
	h, f, _ := fleetHarness(t, devprovider.Options{}, nil, func(c *config.Config) {
		c.Grants["dev"] = config.Grant{Client: "app", Type: config.GrantDeviceCode}
	})
	// Another instance wrote the grant and the watch has not told this
	// one yet: the authorization, newer, still lands.
	f.otherWriteUndelivered(t, store.Token{Grant: "dev", State: api.StatePendingAuthorization, Auth: "started"})
	code, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
	if code != 200 {
		t.Fatalf("authorize: %d %s", code, body)
	}
	var ar api.AuthorizeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	if err := h.prov.ApproveDevice(ar.UserCode); err != nil {
		t.Fatal(err)
	}
	// This instance does not hold dev: a fenced PutToken would lose the
	// authorization; PutAuthorized writes it.
	waitFor(t, "authorized", func() bool { return h.status("dev").State == api.StateValid })
	f.mu.Lock()
	rev := f.rev["dev"]
	f.mu.Unlock()
	if rev != 2 {
		t.Fatalf("authorization not written to the fleet (revision %d)", rev)
	}
	if got := h.stored("dev"); got.AccessToken == "" || got.AccessToken != h.token("dev").AccessToken {
		t.Fatal("the stored record is not the authorized token")
	}
}

func TestFleetRegistrationUnderLock(t *testing.T) {
	dyn := func(c *config.Config) {
		c.Clients["dyn"] = config.Client{Provider: "test"}
		c.Grants = map[string]config.Grant{"dyn": {Client: "dyn", Type: config.GrantClientCredentials}}
	}
	held := func(f *fakeFleet) { f.held["dyn"] = true }
	t.Run("registers once, under the lock", func(t *testing.T) {
		h, f, _ := fleetHarness(t, devprovider.Options{AllowRegistration: true}, held, dyn)
		h.token("dyn")
		f.mu.Lock()
		locks := append([]string(nil), f.locks...)
		f.mu.Unlock()
		if n := h.prov.Stats().Registrations; n != 1 || len(locks) != 1 || locks[0] != "register/dyn" {
			t.Fatalf("%d registrations, locks %q", n, locks)
		}
	})
	t.Run("another instance registered while waiting", func(t *testing.T) {
		h, _, _ := fleetHarness(t, devprovider.Options{AllowRegistration: true}, func(ff *fakeFleet) {
			held(ff)
			ff.onLock = func() {
				if err := ff.Store.PutClient(store.Client{Name: "dyn", Provider: "test", ClientID: "app", ClientSecret: testSecret, AuthMethod: "client_secret_basic"}); err != nil {
					t.Error(err)
				}
			}
		}, dyn)
		h.token("dyn")
		if n := h.prov.Stats().Registrations; n != 0 {
			t.Fatalf("registered again: %d", n)
		}
	})
}

func TestFingerprint(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Providers: map[string]config.Provider{"p": {Issuer: "https://id.example"}},
			Clients:   map[string]config.Client{"c": {Provider: "p", ClientID: "id", AuthMethod: "client_secret_basic"}},
			Grants:    map[string]config.Grant{"g": {Client: "c", Type: config.GrantClientCredentials, Scopes: []string{"a"}}},
		}
	}
	fp := Fingerprint(base(), "g")
	// The hash of a grant without an identity assertion is the one
	// earlier versions computed: instances of a fleet upgraded one after
	// the other agree.
	if fp != "ab3f5cb74f03f1b5d76d52d88f0289efc395d6f3ea0d4aa2e7b98d3858494c99" {
		t.Errorf("fingerprint %s changed", fp)
	}
	same := base()
	g := same.Grants["g"]
	g.Readers = config.Readers{Users: []string{"root"}}
	g.Sinks = []config.Sink{{Path: "/run/x"}}
	g.Schedule = config.MustParseSchedule("@every 1h")
	same.Grants["g"] = g
	cl := same.Clients["c"]
	cl.RedirectURI, cl.ClientName = "http://127.0.0.1:8785/callback", "tokend on host-b"
	same.Clients["c"] = cl
	if Fingerprint(same, "g") != fp {
		t.Error("readers, sinks, schedule, redirect URI or client name changed the fingerprint")
	}
	for name, change := range map[string]func(c *config.Config){
		"scopes": func(c *config.Config) { g := c.Grants["g"]; g.Scopes = []string{"b"}; c.Grants["g"] = g },
		"params": func(c *config.Config) {
			g := c.Grants["g"]
			g.TokenParams = map[string]string{"x": "1"}
			c.Grants["g"] = g
		},
		"issuer":   func(c *config.Config) { p := c.Providers["p"]; p.Issuer = "https://other"; c.Providers["p"] = p },
		"client":   func(c *config.Config) { cl := c.Clients["c"]; cl.ClientID = "other"; c.Clients["c"] = cl },
		"type":     func(c *config.Config) { g := c.Grants["g"]; g.Type = config.GrantPassword; c.Grants["g"] = g },
		"audience": func(c *config.Config) { g := c.Grants["g"]; g.Audience = []string{"api"}; c.Grants["g"] = g },
		"identity assertion": func(c *config.Config) {
			g := c.Grants["g"]
			g.IdentityAssertion = &config.IdentityAssertion{Client: "c", SubjectGrant: "sso"}
			c.Grants["g"] = g
		},
	} {
		c := base()
		change(c)
		if Fingerprint(c, "g") == fp {
			t.Errorf("%s did not change the fingerprint", name)
		}
	}
}

// A token the watch delivers reaches the grant's file sinks as a local
// refresh's would.
func TestFleetWatchFeedsSinks(t *testing.T) {
	path := filepath.Join(sinkDir(t), "cc.token")
	h, f, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, withSinks("cc", config.Sink{Path: path}))
	f.otherWrite(t, validToken("cc", "from-host-b", 1, h.clock.Now()))
	waitFile(t, path, "from-host-b")
}

// The instance serves what it loaded while its campaign (SetGrants: seconds
// for 100,000 grants in etcd) still runs.
func TestFleetServesBeforeCampaignEnds(t *testing.T) {
	f := newFakeFleet()
	f.setBlock = make(chan struct{})
	h := newHarness(t, harnessOpts{noRun: true})
	done := make(chan struct{})
	go func() { h.startWith(Options{OpenStore: f.open, Metrics: &fleetMetrics{}}); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		close(f.setBlock)
		t.Fatal("the daemon did not start while SetGrants was running")
	}
	f.mu.Lock()
	calls := f.setCalls
	f.mu.Unlock()
	if calls != 0 {
		t.Fatalf("SetGrants returned %d times before it was let go", calls)
	}
	close(f.setBlock)
	waitFor(t, "SetGrants", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.setCalls == 1 })
}

// Shutdown does not wait for a campaign still running (SetGrants: tens of
// seconds for a fleet's first start with 100,000 grants on a loaded etcd,
// which a stop then waited for): it ends it, and says nothing of it.
func TestFleetStopEndsCampaign(t *testing.T) {
	f := newFakeFleet()
	f.setBlock = make(chan struct{}) // never closed: only shutdown ends SetGrants
	h := newHarness(t, harnessOpts{noRun: true})
	h.startWith(Options{OpenStore: f.open, Metrics: &fleetMetrics{}})
	h.stop() // fails the test if Run does not return within 10 s
	if strings.Contains(h.logs.String(), "announcing this instance's grants failed") {
		t.Errorf("a campaign ended by shutdown was logged as a failure:\n%s", h.logs.String())
	}
}

// A non-holder does not hold back a still-valid token for a delivery that
// cannot come (quorum lost), and waits for one that can only while half of
// the token's remaining life is left.
func TestFleetNearExpiryTokenServed(t *testing.T) {
	h, f, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.owner["cc"] = "host-b" }, nil)
	h.d.opts.FetchWait = time.Hour
	tok := validToken("cc", "near-expiry", 1, h.clock.Now())
	// An hour-long token 2 s before its end: inside the fetch margin.
	tok.Obtained = h.clock.Now().Add(-time.Hour)
	tok.Expiry = h.clock.Now().Add(2 * time.Second)
	f.otherWrite(t, tok)
	waitFor(t, "delivery", func() bool { return h.d.grant("cc").cur.Load().AccessToken == "near-expiry" })
	fetch := func(what string) {
		t.Helper()
		done := make(chan int, 1)
		go func() { c, _ := h.get("/v1/tokens/cc"); done <- c }()
		select {
		case c := <-done:
			if c != 200 {
				t.Fatalf("%s: fetch %d, want the still-valid token", what, c)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: fetch held back a valid token (FetchWait is an hour)", what)
		}
	}
	f.set(func(f *fakeFleet) { f.quorum = false })
	fetch("without quorum")
	f.set(func(f *fakeFleet) { f.quorum = true })
	fetch("with a holder that does not deliver")
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("a non-holder sent %d token requests", n)
	}
}

// A token that expires while nobody can refresh it (quorum lost) is shown
// and exported expired, as a failed refresh would show it on a single host.
func TestFleetExpiredWithoutQuorum(t *testing.T) {
	h, f, m := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.held["cc"] = true }, nil)
	h.token("cc")
	f.set(func(f *fakeFleet) { f.quorum = false })
	h.advance(11 * time.Minute)
	st := h.status("cc")
	if st.State != api.StateExpired || st.LastError != fleetPausedError {
		t.Fatalf("status of a token expired without quorum: state %q last_error %q", st.State, st.LastError)
	}
	m.mu.Lock()
	exported := m.states["cc"]
	m.mu.Unlock()
	if exported != api.StateExpired {
		t.Fatalf("state exported to metrics: %q, want expired", exported)
	}
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("%d token requests, want only the first", n)
	}
	f.set(func(f *fakeFleet) { f.quorum = true })
	h.advance(15 * time.Second)
	if st := h.status("cc"); st.State != api.StateValid {
		t.Fatalf("after quorum returned: %+v", st)
	}
}

// An instance cut off from the fleet (no quorum, or its lease lost) while
// another instance held the grant answers a fetch of the expired token at
// once: 503 with the reason and Retry-After, never a wait for a delivery
// that cannot come; status says expired.
func TestFleetCutOffFetchAnswersAtOnce(t *testing.T) {
	for name, tc := range map[string]struct {
		cut  func(f *fakeFleet)
		says string
	}{
		"no quorum":  {func(f *fakeFleet) { f.quorum = false }, fleetPausedError},
		"lease lost": {func(f *fakeFleet) { f.leaseLost = true }, "lost its etcd lease"},
	} {
		t.Run(name, func(t *testing.T) {
			h, f, _ := fleetHarness(t, devprovider.Options{}, func(f *fakeFleet) { f.held["cc"] = true }, nil)
			h.token("cc")
			f.set(func(f *fakeFleet) {
				f.held["cc"] = false
				f.owner["cc"] = "host-b"
				tc.cut(f)
			})
			h.advance(11 * time.Minute) // past the token's end
			h.d.opts.FetchWait = 30 * time.Second
			start := time.Now()
			req, _ := http.NewRequest(http.MethodGet, "http://tokend/v1/tokens/cc", nil)
			resp, err := h.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), tc.says) {
				t.Fatalf("fetch on a cut-off instance: %d %s", resp.StatusCode, body)
			}
			if ra := resp.Header.Get("Retry-After"); ra == "" {
				t.Errorf("no Retry-After")
			}
			// A wait for the watch would last FetchWait (30 s).
			if took > time.Second {
				t.Errorf("fetch on a cut-off instance answered after %s", took)
			}
			if st := h.status("cc"); st.State != api.StateExpired {
				t.Errorf("status: %q, want expired", st.State)
			}
		})
	}
}
