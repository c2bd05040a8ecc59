package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// The attacks of this file are made through a raw etcd client, as someone
// who may write the fleet's prefix but has no store key.

func rawEtcd(t *testing.T, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// integrityConfig is a fleet daemon's configuration on c under prefix,
// with provider issuer and the grants mod adds.
func integrityConfig(c *etcdtest.Cluster, prefix, name, issuer string, mod func(*config.Config)) *config.Config {
	cfg := &config.Config{
		Store: config.Store{Backend: config.BackendEtcd, Key: bytes.Repeat([]byte{7}, store.KeySize), Etcd: config.Etcd{
			Endpoints: c.Endpoints(), Prefix: prefix, LeaseTTL: 4 * time.Second, DialTimeout: 5 * time.Second}},
		Fleet:     config.Fleet{Instance: name},
		Listen:    config.Listen{Callback: "off", Metrics: "off"},
		Refresh:   config.Refresh{Schedule: config.MustParseSchedule("@every 15s"), MinRemaining: 10 * time.Second},
		Log:       config.Log{Level: "debug"},
		Providers: map[string]config.Provider{"test": {Issuer: issuer}},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret),
				RedirectURI: "http://127.0.0.1:8765/callback"},
		},
		Grants: map[string]config.Grant{},
	}
	mod(cfg)
	return cfg
}

// startIntegrityNode runs a daemon of cfg, with m as its metrics.
func startIntegrityNode(t *testing.T, clock *fakeClock, cfg *config.Config, m Metrics) *fleetNode {
	t.Helper()
	cfg.Listen.Socket = filepath.Join(t.TempDir(), "t.sock")
	return runFleetNode(t, clock, cfg, m)
}

// An older value of tokens/<grant>, put back verbatim by a keyless etcd
// writer, is refused by an instance that holds a newer token: counted,
// the newer token kept, and when that instance takes the grant over it
// refreshes with the newer refresh token, not the replayed one.
func TestFleetEtcdRefusesReplayedToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	clock := newFakeClock(t0)
	prov := devprovider.New(devprovider.Options{Now: clock.Now, AccessTTL: 10 * time.Minute, Rotate: true, Users: map[string]string{"svc": "pw"},
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	grant := func(cfg *config.Config) {
		cfg.Grants["pw"] = config.Grant{Client: "app", Type: config.GrantPassword, Username: "svc", Password: oauth.NewSecret("pw"), Scopes: []string{"read"}}
	}
	ma, mb := &fleetMetrics{}, &fleetMetrics{}
	a := startIntegrityNode(t, clock, integrityConfig(c, "/replay/", "host-a", prov.URL(), grant), ma)
	b := startIntegrityNode(t, clock, integrityConfig(c, "/replay/", "host-b", prov.URL(), grant), mb)
	cli := rawEtcd(t, c)

	gen := func(n *fleetNode) uint64 { return n.d.grant("pw").cur.Load().Generation }
	tick := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; !cond(); i++ {
			if i == 200 {
				t.Fatalf("%s:\n%s\n%s", what, a.logs.String(), b.logs.String())
			}
			clock.Advance(15 * time.Second)
			time.Sleep(20 * time.Millisecond)
		}
	}
	tick("both serve generation 1", func() bool { return gen(a) == 1 && gen(b) == 1 })
	resp, err := cli.Get(context.Background(), "/replay/tokens/pw")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read tokens/pw: %v", err)
	}
	old := resp.Kvs[0].Value
	clock.Advance(8 * time.Minute)
	tick("both serve generation 2", func() bool { return gen(a) == 2 && gen(b) == 2 })
	held := a.d.grant("pw").cur.Load().AccessToken

	// The replay reaches the instance that did not write it.
	if _, err := cli.Put(context.Background(), "/replay/tokens/pw", string(old)); err != nil {
		t.Fatal(err)
	}
	refused := func(m *fleetMetrics) int { m.mu.Lock(); defer m.mu.Unlock(); return m.refused }
	waitFor(t, "the replay refused by one instance", func() bool { return refused(ma)+refused(mb) == 1 })
	for _, n := range []*fleetNode{a, b} {
		if got := n.d.grant("pw").cur.Load(); got.Generation != 2 || got.AccessToken != held {
			t.Fatalf("%s serves generation %d after the replay", n.name, got.Generation)
		}
	}
	if !strings.Contains(a.logs.String()+b.logs.String(), "refused a token record older than the token held") {
		t.Fatal("the refusal was not logged")
	}

	// The holder stops; the other takes the grant over and, once it is
	// due, refreshes with generation 2's refresh token.
	var gone, survivor *fleetNode
	if a.st.GrantInfo("pw").Held {
		gone, survivor = a, b
	} else {
		gone, survivor = b, a
	}
	gone.stop(t)
	waitFor(t, "take-over", func() bool { return survivor.st.Holds("pw", 0) })
	clock.Advance(8 * time.Minute)
	tick("generation 3", func() bool { return gen(survivor) == 3 })
	if st := prov.Stats(); st.Reuses != 0 {
		t.Fatalf("a refresh token was reused %d times after the replay", st.Reuses)
	}
}

// Cached provider metadata rewritten in etcd to send the token request
// to an attacker's server, with the provider down at the restart, is not
// used: nothing reaches the attacker.
func TestFleetEtcdTamperedProviderCacheUnused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	clock := newFakeClock(t0)
	prov := fleetProvider(t, clock)
	var stolen atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"attacker-at","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(attacker.Close)
	issuer := prov.URL()
	grant := func(cfg *config.Config) {
		cfg.Grants["cc"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}
	a := startIntegrityNode(t, clock, integrityConfig(c, "/prov/", "host-a", issuer, grant), nil)
	for i := 0; a.d.grant("cc").cur.Load().AccessToken == ""; i++ {
		if i == 200 {
			t.Fatalf("no token:\n%s", a.logs.String())
		}
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	a.stop(t)

	cli := rawEtcd(t, c)
	forged, _ := json.Marshal(map[string]string{"issuer": issuer, "token_endpoint": attacker.URL + "/token"})
	if _, err := cli.Put(context.Background(), "/prov/providers/test", string(forged)); err != nil {
		t.Fatal(err)
	}
	prov.Close() // discovery fails at the restart

	clock.Advance(time.Hour) // the stored token has expired: the restart must obtain one
	b := startIntegrityNode(t, clock, integrityConfig(c, "/prov/", "host-b", issuer, grant), nil)
	waitFor(t, "b holds the grant", func() bool { return b.st.Holds("cc", 0) })
	for range 20 {
		clock.Advance(15 * time.Second)
		time.Sleep(20 * time.Millisecond)
	}
	if n := stolen.Load(); n != 0 {
		t.Fatalf("%d requests reached the attacker's endpoint from a tampered cache", n)
	}
	if !strings.Contains(b.logs.String(), "cached endpoints are not used") {
		t.Fatalf("the refused cache was not logged:\n%s", b.logs.String())
	}
}

// A keyless etcd writer plants pending/<sha256(its state)> for grant web
// with its own cookie's hash and no PKCE verifier, gets a code from the
// provider for its own account and brings it to the callback: the
// callback refuses it, and no code is exchanged.
func TestFleetEtcdForgedPendingRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an etcd cluster")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	clock := newFakeClock(t0)
	prov := devprovider.New(devprovider.Options{Now: clock.Now, AccessTTL: 10 * time.Minute, AutoApprove: true,
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	grant := func(cfg *config.Config) {
		cfg.Grants["web"] = config.Grant{Client: "app", Type: config.GrantAuthorizationCode, Scopes: []string{"read"}}
	}
	a := startIntegrityNode(t, clock, integrityConfig(c, "/cb/", "host-a", prov.URL(), grant), nil)

	// The attacker's own authorization at the provider, without PKCE.
	state, cookie := "attacker-state", "attacker-cookie"
	q := url.Values{"client_id": {"app"}, "redirect_uri": {"http://127.0.0.1:8765/callback"}, "response_type": {"code"}, "state": {state}}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(prov.URL() + "/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code from the provider: %v %q", err, resp.Header.Get("Location"))
	}
	code := loc.Query().Get("code")

	forged, _ := json.Marshal(map[string]any{"grant": "web", "kind": "authorization_code", "redirect_uri": "http://127.0.0.1:8765/callback",
		"created": clock.Now(), "deadline": clock.Now().Add(time.Hour), "binding_hash": hashHex(cookie)})
	cli := rawEtcd(t, c)
	if _, err := cli.Put(context.Background(), "/cb/pending/"+store.PendingKey(state), string(forged)); err != nil {
		t.Fatal(err)
	}
	before := prov.Stats().TokenRequests
	req := httptest.NewRequest(http.MethodGet, "/callback?"+url.Values{"state": {state}, "code": {code}, "iss": {prov.URL()}}.Encode(), nil)
	req.AddCookie(&http.Cookie{Name: bindingCookieName(state, false), Value: cookie})
	rec := httptest.NewRecorder()
	a.d.handleCallback(rec, req)
	if rec.Code == http.StatusOK {
		t.Fatalf("the callback accepted a forged authorization: %d %s", rec.Code, rec.Body.String())
	}
	if n := prov.Stats().TokenRequests - before; n != 0 {
		t.Fatalf("the forged authorization's code was exchanged (%d token requests)", n)
	}
	if got := a.d.grant("web").cur.Load(); got.AccessToken != "" {
		t.Fatal("grant web serves the attacker's authorization")
	}
}
