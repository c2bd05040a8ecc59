package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/server"
)

// resource is a protected resource that refuses the tokens in refuse and
// records the Authorization of each request.
type resource struct {
	mu     sync.Mutex
	auths  []string
	refuse map[string]bool
}

// refuseBearer has the resource answer 401 to "Bearer tok".
func (rs *resource) refuseBearer(tok string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.refuse["Bearer "+tok] = true
}

func (rs *resource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	a := r.Header.Get("Authorization")
	rs.auths = append(rs.auths, a)
	refused := rs.refuse[a]
	rs.mu.Unlock()
	if refused {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	io.WriteString(w, "ok")
}

func (rs *resource) seen() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.auths...)
}

// proxyHarness runs a daemon whose grant cc has a proxy on a unix socket
// to a resource, and returns a client of that proxy.
func proxyHarness(t *testing.T, rs *resource) (*harness, *http.Client) {
	t.Helper()
	up := httptest.NewServer(rs)
	t.Cleanup(up.Close)
	sock := filepath.Join(t.TempDir(), "cc-proxy.sock")
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		g := c.Grants["cc"]
		g.ProtectedResource = up.URL + "/mcp"
		g.Proxy = &config.GrantProxy{Listen: sock}
		c.Grants["cc"] = g
	}})
	hc := testutil.UnixHTTPClient(sock, 0)
	return h, hc
}

func proxyGet(t *testing.T, hc *http.Client) int {
	t.Helper()
	resp, err := hc.Get("http://proxy/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A grant's proxy, served by the daemon, adds the grant's current token.
func TestGrantProxyAddsCurrentToken(t *testing.T) {
	rs := &resource{}
	h, hc := proxyHarness(t, rs)
	tok := h.token("cc").AccessToken
	if code := proxyGet(t, hc); code != 200 {
		t.Fatalf("through the proxy: %d", code)
	}
	if got := rs.seen(); len(got) != 1 || got[0] != "Bearer "+tok {
		t.Fatalf("resource saw %d requests (want the grant's token)", len(got))
	}
	h.logMustNotContain(tok)
}

// The resource refuses the current token: the daemon refreshes once and
// the proxy sends the request again with the new token.
func TestGrantProxyRefreshesRejectedToken(t *testing.T) {
	rs := &resource{refuse: map[string]bool{}}
	h, hc := proxyHarness(t, rs)
	old := h.token("cc").AccessToken
	rs.refuseBearer(old)
	if code := proxyGet(t, hc); code != 200 {
		t.Fatalf("through the proxy: %d", code)
	}
	cur := h.token("cc").AccessToken
	got := rs.seen()
	if cur == old || len(got) != 2 || got[0] != "Bearer "+old || got[1] != "Bearer "+cur {
		t.Fatalf("resource saw %d requests; token renewed: %v", len(got), cur != old)
	}
}

// A TCP caller has a uid and nothing else: no readers' group, root's
// included, admits it.
func TestProxyCallerWithoutGroupsMatchesNoGroup(t *testing.T) {
	a := access{gids: map[uint32]bool{0: true}}
	if a.allows(peerOf(server.Caller{UID: 1000})) {
		t.Error("a caller without groups was admitted by group 0")
	}
	if !a.allows(peerOf(server.Caller{UID: 1000, GID: 0, HasGroups: true})) {
		t.Error("a unix socket caller of group 0 was refused")
	}
}

// proxyGetEnv makes the test binary a client of a proxy instead of
// running tests: "NETWORK ADDR" sends one GET and prints the status.
const proxyGetEnv = "TOKEND_DAEMON_TEST_PROXY_GET"

func init() {
	if v := os.Getenv(proxyGetEnv); v != "" {
		network, addr, _ := strings.Cut(v, " ")
		var d net.Dialer
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}}}
		resp, err := hc.Get("http://proxy/")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
		os.Exit(0)
	}
}

// A local user who may not read the grant is refused by the daemon's
// proxy, over loopback TCP (its uid from sock_diag) and over a unix socket
// (SO_PEERCRED), and the resource receives nothing.
func TestGrantProxyRefusesNonReader(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to play another user")
	}
	dir, bin := sharedDir(t)
	rs := &resource{}
	up := httptest.NewServer(rs)
	t.Cleanup(up.Close)
	sock := filepath.Join(dir, "proxy.sock")
	tcpAddr := "127.0.0.1:" + strconv.Itoa(testutil.LowPort(t))
	// Grant cc has no readers: root (an operator) only.
	newHarness(t, harnessOpts{config: func(c *config.Config) {
		g := c.Grants["cc"]
		g.ProtectedResource = up.URL
		g.Proxy = &config.GrantProxy{Listen: tcpAddr}
		c.Grants["cc"] = g
		g.Proxy = &config.GrantProxy{Listen: sock}
		c.Grants["cc2"] = g
	}})
	for _, target := range []string{"tcp " + tcpAddr, "unix " + sock} {
		for _, c := range []struct {
			uid  uint32
			want string
		}{{65534, "403"}, {0, "200"}} {
			cmd := exec.Command(bin)
			cmd.Env = []string{proxyGetEnv + "=" + target}
			testutil.AsUser(cmd, c.uid)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s as %d: %v", target, c.uid, err)
			}
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("%s as uid %d: %s, want %s", target, c.uid, got, c.want)
			}
		}
	}
	if n := len(rs.seen()); n != 2 {
		t.Errorf("the resource saw %d requests, want root's 2", n)
	}
}

// A proxy that cannot listen stops the start with an error naming it.
func TestGrantProxyAddressTaken(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		g := c.Grants["cc"]
		g.ProtectedResource = "https://r.example.com"
		g.Proxy = &config.GrantProxy{Listen: busy.Addr().String()}
		c.Grants["cc"] = g
	}})
	d, err := New(h.cfg, Options{Logger: NewLogger(h.logs, h.cfg.Log, false), Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), serversOf(d))
	if err == nil || !strings.Contains(err.Error(), "grants.cc.proxy.listen") {
		t.Fatalf("Run: %v", err)
	}
}

// A dpop grant's proxy against a resource that checks every proof (key,
// method, exact URL, token hash, one use) and wants its nonce: the first
// request is refused for the nonce and sent again, the next carries it.
func TestGrantProxyDPoPAgainstResource(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "cc-proxy.sock")
	h := newHarness(t, harnessOpts{prov: devprovider.Options{ResourceNonce: true}, config: func(c *config.Config) {
		dpopCC(c)
		g := c.Grants["cc"]
		g.Proxy = &config.GrantProxy{Listen: sock}
		c.Grants["cc"] = g
	}, noRun: true})
	g := h.cfg.Grants["cc"]
	g.ProtectedResource = h.prov.URL() + "/resource/notes"
	h.cfg.Grants["cc"] = g
	h.start()
	hc := testutil.UnixHTTPClient(sock, 0)
	for i := range 3 {
		resp, err := hc.Post("http://proxy/", "application/json", strings.NewReader(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"token_type":"DPoP"`) {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if st := h.prov.Stats(); st.ResourceRequests != 4 || st.ResourceRefused != 1 {
		t.Errorf("resource: %d requests, %d refused; want 4 and 1 (the nonce)", st.ResourceRequests, st.ResourceRefused)
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// Many callers refused with the same token at once: the daemon obtains
// one new token, and each request reaches the resource twice.
func TestGrantProxyConcurrentRejectionsOneRefresh(t *testing.T) {
	const n = 8
	rs := &resource{refuse: map[string]bool{}}
	h, hc := proxyHarness(t, rs)
	old := h.token("cc").AccessToken
	rs.refuseBearer(old)
	before := h.prov.Stats().TokenRequests
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			resp, err := hc.Get("http://proxy/")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("caller %d: %d", i, c)
		}
	}
	if got := h.prov.Stats().TokenRequests - before; got != 1 {
		t.Errorf("the provider was asked for %d tokens, want 1", got)
	}
	if got := len(rs.seen()); got > 2*n {
		t.Errorf("the resource saw %d requests for %d callers", got, n)
	}
}
