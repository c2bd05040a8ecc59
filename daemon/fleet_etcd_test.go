package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// fleetNode is one daemon of a fleet test on real etcd.
type fleetNode struct {
	name   string
	d      *Daemon
	st     *etcdstore.Store
	cancel context.CancelFunc
	done   chan error
	logs   *testutil.SyncBuffer
}

// Two daemons on one three-member etcd and one provider: each grant has
// exactly one refresher, both serve the same tokens, and when the
// refresher stops the other takes its grants over and refreshes them.
// Scheduling time is the shared fake clock; the leases run on real time.
func TestFleetEtcdTwoDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true})
	clock := newFakeClock(t0)
	prov := fleetProvider(t, clock)
	grants := []string{"g1", "g2", "g3", "g4"}
	start := func(name string) *fleetNode { return startFleetNode(t, c, clock, prov, name, grants, 4*time.Second) }
	a, b := start("host-a"), start("host-b")
	nodes := []*fleetNode{a, b}

	// Every grant has exactly one refresher, which both agree on, and the
	// grants are spread over the two.
	waitFor(t, "one refresher per grant, spread", func() bool {
		count := map[string]int{}
		for _, g := range grants {
			ia, ib := a.st.GrantInfo(g), b.st.GrantInfo(g)
			if ia.Held == ib.Held || ia.Owner == "" || ia.Owner != ib.Owner {
				return false
			}
			count[ia.Owner]++
		}
		return count["host-a"] > 0 && count["host-b"] > 0
	})
	// Ticks until every grant has a token: refreshed once, by its holder.
	same := func() bool {
		for _, g := range grants {
			ta, tb := a.d.grant(g).cur.Load(), b.d.grant(g).cur.Load()
			if ta.AccessToken == "" || ta.AccessToken != tb.AccessToken {
				return false
			}
		}
		return true
	}
	for i := 0; !same(); i++ {
		if i == 200 {
			t.Fatal("the daemons do not serve the same tokens")
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	if n := prov.Stats().TokenRequests; n != len(grants) {
		t.Fatalf("%d token requests for %d grants: a grant was refreshed by two instances", n, len(grants))
	}
	// Past 75 % of the tokens' life both daemons find every grant due at
	// the same ticks; only each grant's holder refreshes it.
	first := map[string]string{}
	for _, g := range grants {
		first[g] = a.d.grant(g).cur.Load().AccessToken
	}
	clock.Advance(8 * time.Minute)
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("the tokens were not refreshed when due")
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
		if !same() {
			continue
		}
		renewed := true
		for _, g := range grants {
			renewed = renewed && a.d.grant(g).cur.Load().AccessToken != first[g]
		}
		if renewed {
			break
		}
	}
	if n := prov.Stats().TokenRequests; n != 2*len(grants) {
		t.Fatalf("%d token requests for %d grants due once more: a grant was refreshed by two instances", n, len(grants))
	}
	held := map[string]int{}
	for _, g := range grants {
		held[a.st.GrantInfo(g).Owner]++
	}
	t.Logf("grants per instance: %v", held)

	// The holder of g1 stops: the other takes every grant over and, once
	// the tokens come due, refreshes them.
	var gone, survivor *fleetNode
	for _, n := range nodes {
		if n.st.GrantInfo("g1").Held {
			gone = n
		} else {
			survivor = n
		}
	}
	gone.stop(t)
	waitFor(t, "take-over", func() bool {
		for _, g := range grants {
			if !survivor.st.Holds(g, 0) {
				return false
			}
		}
		return true
	})
	before := map[string]string{}
	for _, g := range grants {
		before[g] = survivor.d.grant(g).cur.Load().AccessToken
	}
	renewed := func() bool {
		for _, g := range grants {
			if t := survivor.d.grant(g).cur.Load().AccessToken; t == "" || t == before[g] {
				return false
			}
		}
		return true
	}
	for i := 0; !renewed(); i++ {
		if i == 200 {
			t.Fatalf("the survivor did not refresh the grants it took over:\n%s", survivor.logs.String())
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	if n := prov.Stats().TokenRequests; n != 3*len(grants) {
		t.Fatalf("%d token requests, want %d", n, 3*len(grants))
	}
	for _, g := range grants {
		if st := survivor.d.status(survivor.d.grant(g)); !st.RefresherSelf || st.Refresher != survivor.name {
			t.Fatalf("status of %s: refresher %q self %v", g, st.Refresher, st.RefresherSelf)
		}
	}
	for _, n := range nodes {
		for _, s := range prov.Issued() {
			if bytes.Contains([]byte(n.logs.String()), []byte(s)) {
				t.Fatalf("%s logged a secret", n.name)
			}
		}
	}
}

func (n *fleetNode) stop(t *testing.T) {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.cancel = nil
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: Run: %v", n.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not stop", n.name)
	}
	if t.Failed() {
		t.Logf("%s log:\n%s", n.name, n.logs.String())
	}
}

// tickUntil moves clock a schedule period (15 s) every 20 ms until cond
// holds; after a minute of real time it fails with what and n's log.
func (n *fleetNode) tickUntil(t *testing.T, clock *fakeClock, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s:\n%s", what, n.logs.String())
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
}

// fleetProvider is the provider of the fleet tests on real etcd: client
// "app" (secret testSecret, client_secret_basic) gets tokens of ten
// minutes on clock; it closes when the test ends.
func fleetProvider(t *testing.T, clock *fakeClock) *devprovider.Server {
	t.Helper()
	prov := devprovider.New(devprovider.Options{Now: clock.Now, AccessTTL: 10 * time.Minute,
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	return prov
}

// startFleetNode runs a daemon named name on cluster c with grants, all
// client_credentials of prov unless a mod of the configuration says
// otherwise.
func startFleetNode(t *testing.T, c *etcdtest.Cluster, clock *fakeClock, prov *devprovider.Server, name string, grants []string, leaseTTL time.Duration, mod ...func(*config.Config)) *fleetNode {
	t.Helper()
	key := bytes.Repeat([]byte{7}, store.KeySize)
	dir := t.TempDir()
	cfg := &config.Config{
		Store: config.Store{Backend: config.BackendEtcd, Key: key, Etcd: config.Etcd{
			Endpoints: c.Endpoints(), Prefix: "/two/", LeaseTTL: leaseTTL, DialTimeout: 5 * time.Second}},
		Fleet:     config.Fleet{Instance: name},
		Listen:    config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "off", Metrics: "off"},
		Refresh:   config.Refresh{Schedule: config.MustParseSchedule("@every 15s"), MinRemaining: 10 * time.Second},
		Log:       config.Log{Level: "debug"},
		Providers: map[string]config.Provider{"test": {Issuer: prov.URL()}},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret)},
		},
		Grants: map[string]config.Grant{},
	}
	for _, g := range grants {
		cfg.Grants[g] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}
	for _, m := range mod {
		m(cfg)
	}
	return runFleetNode(t, clock, cfg, nil)
}

// runFleetNode runs a daemon of cfg (its instance named by
// cfg.Fleet.Instance) on the etcd store its configuration names, with m as
// its metrics (nil: none), until the test ends.
func runFleetNode(t *testing.T, clock *fakeClock, cfg *config.Config, m Metrics) *fleetNode {
	t.Helper()
	name := cfg.Fleet.Instance
	cfg.ApplyDefaults()
	n := &fleetNode{name: name, logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	d, err := New(cfg, Options{Logger: NewLogger(n.logs, cfg.Log, false), Clock: clock, FetchWait: 5 * time.Second, Metrics: m,
		OpenStore: func(sc config.Store, log *slog.Logger) (Store, error) {
			st, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: sc.Etcd.Endpoints, Prefix: sc.Etcd.Prefix,
				LeaseTTL: sc.Etcd.LeaseTTL, DialTimeout: sc.Etcd.DialTimeout, Key: sc.Key, Instance: name, Logger: log})
			n.st = st
			return st, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	n.d = d
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { n.done <- d.Run(ctx, serversOf(d)) }()
	select {
	case <-d.Started():
	case err := <-n.done:
		t.Fatalf("%s did not start: %v", name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start", name)
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// Two of three etcd members stop: the daemon serves its valid token,
// refreshes nothing and says why; the members come back and refreshing
// resumes by itself.
func TestFleetEtcdQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true})
	clock := newFakeClock(t0)
	prov := fleetProvider(t, clock)
	// A longer lease than the take-over test's: a provider request is
	// bounded by half of it, and under -race on a busy machine 1 s can
	// run out.
	n := startFleetNode(t, c, clock, prov, "host-a", []string{"g"}, 4*time.Second)
	g := n.d.grant("g")
	n.tickUntil(t, clock, "a token", func() bool { return g.cur.Load().AccessToken != "" })
	tok := g.cur.Load().AccessToken
	reqs := prov.Stats().TokenRequests

	c.Stop(1)
	c.Stop(2)
	for end := time.Now().Add(30 * time.Second); n.st.Health().Quorum; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("quorum loss not noticed")
		}
	}
	if st := n.d.status(g); st.LastError != fleetPausedError {
		t.Fatalf("status without quorum: last_error %q", st.LastError)
	}
	// Past the refresh point (75 % of the token's life, ±5 %): nothing is
	// sent, the valid token is served. The clock goes there from the
	// token's own expiry, not by a fixed amount: how many ticks it took to
	// see the token arrive depends on the machine's load, and a fixed move
	// from wherever they left the clock can pass the expiry itself.
	exp := g.cur.Load().Expiry
	to := exp.Add(-2 * time.Minute) // 80 % of 10 minutes; 4 ticks follow
	if !clock.Now().Before(to) {
		t.Fatalf("the clock is at %s, past the refresh point of the token expiring at %s, before the test stopped quorum", clock.Now(), exp)
	}
	clock.Advance(to.Sub(clock.Now()))
	for range 4 {
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	if got := prov.Stats().TokenRequests; got != reqs {
		t.Fatalf("%d token requests without quorum", got-reqs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := n.d.fetch(ctx, g); err != nil || got.AccessToken != tok {
		t.Fatalf("fetch without quorum: %v", err)
	}

	r1, r2 := c.RestartAsync(1), c.RestartAsync(2)
	for _, r := range []<-chan error{r1, r2} {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	// The ticks start once the daemon sees quorum again: ticking, 15 s a
	// tick, while its writes still fail would carry the clock past the
	// refreshed token's own refresh point before it is saved, and ask for
	// two tokens where one is due.
	for end := time.Now().Add(30 * time.Second); !n.st.Health().Quorum; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("quorum back not noticed:\n%s", n.logs.String())
		}
	}
	// Right after the members are back a write may still fail; the
	// token is then kept in memory and saved on a later tick, with no new
	// request.
	n.tickUntil(t, clock, "a refresh, saved, after quorum returned", func() bool {
		st := n.d.status(g)
		return g.cur.Load().AccessToken != tok && st.LastError == "" && st.State == api.StateValid && !g.dirty.Load()
	})
	if got := prov.Stats().TokenRequests; got != reqs+1 {
		t.Fatalf("%d token requests after quorum returned, want 1", got-reqs)
	}
	for _, want := range []string{"quorum lost", "quorum back"} {
		if !bytes.Contains([]byte(n.logs.String()), []byte(want)) {
			t.Errorf("log does not say %q", want)
		}
	}
}
