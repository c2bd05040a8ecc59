package daemon

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/oauth"
)

// isolationFor is how long TestFleetEtcdIsolatedMember keeps a member
// cut off: $FLEET_ISOLATION (a duration, e.g. 30s) or a few seconds.
func isolationFor(t *testing.T, def time.Duration) time.Duration {
	v := os.Getenv("FLEET_ISOLATION")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("$FLEET_ISOLATION=%q: want a duration", v)
	}
	return d
}

// leaderOf returns the cluster's leader (0: none) and the members' IDs.
func leaderOf(t *testing.T, cli *clientv3.Client, c *etcdtest.Cluster) (leader uint64, ids []uint64) {
	t.Helper()
	for _, ep := range c.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			t.Fatalf("status of %s: %v", ep, err)
		}
		ids = append(ids, st.Header.MemberId)
		if st.Leader == st.Header.MemberId {
			leader = st.Leader
		}
	}
	return leader, ids
}

// makeLeader moves the cluster's leadership to member i.
func makeLeader(t *testing.T, c *etcdtest.Cluster, i int) {
	t.Helper()
	cli := rawEtcd(t, c)
	deadline := time.Now().Add(20 * time.Second)
	for {
		leader, ids := leaderOf(t, cli, c)
		if leader == ids[i] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d does not become the leader", i)
		}
		for k, id := range ids {
			if id != leader {
				continue
			}
			one, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints()[k : k+1], DialTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = one.MoveLeader(ctx, ids[i])
			cancel()
			one.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// One etcd member of three, the first endpoint every instance lists, is
// cut off from its peers: alive, answering its clients, without a leader.
// Three daemons refresh rotating refresh tokens all along (the provider
// revokes a family on reuse). Nothing may show: no token obtained and not
// saved, no change of the fleet's health on any instance, no refresh token
// used twice, every grant valid at the end. Run with the isolated member
// a follower, and the leader (which stays leader for an election timeout
// after the cut, holding what it was sent). Scheduling time is the fake
// clock (tokens are due every half second of real time); the leases and
// etcd run on real time. $FLEET_ISOLATION sets how long the member stays
// cut off (default 5 s each; the figure is 30s).
func TestFleetEtcdIsolatedMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	for _, tc := range []struct {
		name   string
		leader bool
	}{{"follower", false}, {"leader", true}} {
		t.Run(tc.name, func(t *testing.T) { testIsolatedMember(t, tc.leader, isolationFor(t, 5*time.Second)) })
	}
}

func testIsolatedMember(t *testing.T, leader bool, isolation time.Duration) {
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true, Relayed: true})
	clock := newFakeClock(t0)
	prov := devprovider.New(devprovider.Options{Now: clock.Now, AccessTTL: time.Minute, Rotate: true, Users: map[string]string{"svc": "pw"},
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	var grants []string
	for i := range 6 {
		grants = append(grants, fmt.Sprintf("g%d", i))
	}
	pw := func(cfg *config.Config) {
		cfg.Refresh.MinRemaining = 10 * time.Second
		for _, g := range grants {
			cfg.Grants[g] = config.Grant{Client: "app", Type: config.GrantPassword, Username: "svc", Password: oauth.NewSecret("pw"), Scopes: []string{"read"}}
		}
	}
	var nodes []*fleetNode
	for _, name := range []string{"host-a", "host-b", "host-c"} {
		// Every instance lists the member to be isolated first.
		nodes = append(nodes, startFleetNode(t, c, clock, prov, name, grants, 4*time.Second, pw))
	}
	tick := func() {
		clock.Advance(5 * time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	valid := func() bool {
		for _, n := range nodes {
			for _, g := range grants {
				if t := n.d.grant(g).cur.Load(); t.State != api.StateValid || t.AccessToken == "" {
					return false
				}
			}
		}
		return true
	}
	for i := 0; !valid(); i++ {
		if i == 400 {
			t.Fatal("the grants are not valid on every instance")
		}
		tick()
	}
	if leader {
		makeLeader(t, c, 0)
	} else {
		makeLeader(t, c, 1)
	}
	type health struct{ quorum, lease, watch bool }
	healthOf := func(n *fleetNode) health {
		h := n.st.Health()
		return health{h.Quorum, h.LeaseOK, h.WatchOK}
	}
	for _, n := range nodes {
		if h := healthOf(n); h != (health{true, true, true}) {
			t.Fatalf("%s before the isolation: %+v", n.name, h)
		}
	}
	before := prov.Stats()
	marks := make([]int, len(nodes))
	for i, n := range nodes {
		logs := n.logs.String()
		marks[i] = len(logs)
		// A normal start on a fresh prefix is not a warning.
		for _, bad := range []string{"watch is broken", "quorum lost", "lease not renewed"} {
			if strings.Contains(logs, bad) {
				t.Errorf("%s logged %q at a normal start", n.name, bad)
			}
		}
	}

	// At least a refresh a second of isolation is asked below. Refreshes
	// follow the fake clock, not real time: a grant is due at most 80 % of
	// its minute after its last one, and the 15 s schedule takes it up by
	// 63 s, 13 ticks. On a machine slow enough that few ticks fit in the
	// isolation's real time, it lasts until enough fake time went by for
	// every grant to come due as often as that asks, and once more.
	wantRefreshes := int(isolation / time.Second)
	minTicks := ((wantRefreshes+len(grants)-1)/len(grants) + 1) * 13
	c.Isolate(0)
	changes, ticks := 0, 0
	for end := time.Now().Add(isolation); time.Now().Before(end) || ticks < minTicks; ticks++ {
		tick()
		for _, n := range nodes {
			if h := healthOf(n); h != (health{true, true, true}) {
				changes++
				t.Errorf("%s: fleet health %+v with one member of three isolated", n.name, h)
			}
		}
		if changes > 10 {
			break
		}
	}
	c.Heal(0)
	after := prov.Stats()
	refreshes := after.Refreshes - before.Refreshes
	t.Logf("isolated %s (leader: %v) for %s, %d ticks: %d refreshes, %d reuses", c.Members()[0].Name, leader, isolation, ticks, refreshes, after.Reuses)
	if after.Reuses != 0 {
		t.Errorf("%d refresh tokens used twice", after.Reuses)
	}
	if refreshes < wantRefreshes {
		t.Errorf("only %d refreshes in %s of isolation (%d ticks of 5 s)", refreshes, isolation, ticks)
	}
	for i, n := range nodes {
		logs := n.logs.String()[marks[i]:]
		for _, bad := range []string{"not saved", "quorum lost", "watch is broken", "lease is lost", "lease not renewed", "fenced"} {
			if strings.Contains(logs, bad) {
				t.Errorf("%s logged %q with one member of three isolated", n.name, bad)
			}
		}
	}
	for i := 0; !valid(); i++ {
		if i == 200 {
			t.Fatal("the grants are not valid on every instance after the isolation")
		}
		tick()
	}
	for _, n := range nodes {
		for _, g := range grants {
			if n.d.grant(g).dirty.Load() {
				t.Errorf("%s: %s holds a token not saved", n.name, g)
			}
		}
	}
	if t.Failed() {
		for _, n := range nodes {
			t.Logf("%s log since the isolation:\n%s", n.name, n.logs.String())
		}
	}
}
