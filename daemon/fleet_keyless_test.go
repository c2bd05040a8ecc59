package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/oauth"
)

// A writer of the etcd prefix without the store key puts junk over a
// grant's record. The owner's next refresh still lands on the revision it
// observed, the token it obtained (with its rotated refresh token) is
// kept, and the provider never sees a rotated-away refresh token again.
func TestFleetEtcdUndecodableRecordKeepsChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	clock := newFakeClock(t0)
	prov := devprovider.New(devprovider.Options{Now: clock.Now, AccessTTL: 10 * time.Minute, Rotate: true,
		Users:   map[string]string{"svc": "pw"},
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	n := startFleetNode(t, c, clock, prov, "host-a", []string{"g"}, 4*time.Second, func(cfg *config.Config) {
		cfg.Grants["g"] = config.Grant{Client: "app", Type: config.GrantPassword, Username: "svc", Password: oauth.NewSecret("pw"), Scopes: []string{"read"}}
	})
	g := n.d.grant("g")
	n.tickUntil(t, clock, "a token", func() bool { return g.cur.Load().RefreshToken != "" && !g.dirty.Load() })

	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for round := range 3 {
		if _, err := cli.Put(context.Background(), "/two/tokens/g", "junk"); err != nil {
			t.Fatal(err)
		}
		before := g.cur.Load()
		clock.Advance(8 * time.Minute)
		n.tickUntil(t, clock, "a refresh, saved", func() bool {
			cur := g.cur.Load()
			if cur.Generation <= before.Generation || g.dirty.Load() || cur.State != api.StateValid {
				return false
			}
			st, err := n.st.Token("g")
			return err == nil && st.RefreshToken == cur.RefreshToken
		})
		if got := g.cur.Load(); got.RefreshToken == before.RefreshToken {
			t.Fatalf("round %d: the refresh token did not rotate", round)
		}
	}
	if st := prov.Stats(); st.Reuses != 0 || st.Refreshes < 3 {
		t.Fatalf("provider: %d refreshes, %d reuses of a rotated refresh token; want ≥ 3 and 0", st.Refreshes, st.Reuses)
	}
}

// One record under tokens/ that does not decode: an instance starting
// again loads the other grants' tokens (serving them without asking the
// provider) and reports the bad one.
func TestFleetEtcdRestartWithUndecodableRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	clock := newFakeClock(t0)
	prov := fleetProvider(t, clock)
	grants := []string{"g1", "g2", "g3"}
	n := startFleetNode(t, c, clock, prov, "host-a", grants, 4*time.Second)
	for end := time.Now().Add(60 * time.Second); ; {
		all := true
		for _, g := range grants {
			all = all && n.d.grant(g).cur.Load().AccessToken != "" && !n.d.grant(g).dirty.Load()
		}
		if all {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("no tokens:\n%s", n.logs.String())
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	before := map[string]string{}
	for _, g := range grants {
		before[g] = n.d.grant(g).cur.Load().AccessToken
	}
	n.stop(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(context.Background(), "/two/tokens/g2", "junk"); err != nil {
		t.Fatal(err)
	}
	reqs := prov.Stats().TokenRequests
	m := startFleetNode(t, c, clock, prov, "host-a", grants, 4*time.Second)
	for _, g := range []string{"g1", "g3"} {
		if got := m.d.grant(g).cur.Load().AccessToken; got != before[g] {
			t.Fatalf("%s not loaded after a restart with a bad record of g2:\n%s", g, m.logs.String())
		}
	}
	if got := prov.Stats().TokenRequests; got != reqs {
		t.Fatalf("%d token requests at start, want none", got-reqs)
	}
	if !strings.Contains(m.logs.String(), "does not decode") {
		t.Fatalf("the bad record is not reported:\n%s", m.logs.String())
	}
}
