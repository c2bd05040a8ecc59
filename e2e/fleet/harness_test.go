package fleet

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

var (
	tokendBin, memberBin string
	buildErr             error
	nodeErr              error
)

func TestMain(m *testing.M) {
	if err := oidcop.Check(""); err != nil {
		nodeErr = fmt.Errorf("fleet: %w", err)
	}
	os.Exit(testutil.MainWithTokend(m, "fleet", os.Getenv("FLEET_RACE") == "1", &tokendBin, &buildErr))
}

var buildMember sync.Once

// requireAll fails the test unless node, tokend and etcdmember are there;
// it builds etcdmember the first time.
func requireAll(t testing.TB) {
	t.Helper()
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	buildMember.Do(func() {
		bin := filepath.Join(filepath.Dir(tokendBin), "etcdmember")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/tokend/tokend/internal/etcdtest/etcdmember").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("fleet: go build etcdmember: %v\n%s", err, out)
			return
		}
		memberBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// ---- etcd ----------------------------------------------------------------

// cluster is a three-member etcd cluster, one etcdmember process each
// (internal/etcdtest/etcdmember).
type cluster struct {
	t       testing.TB
	plan    []etcdtest.Member
	members []*testutil.Proc
	logs    *testutil.SyncBuffer
	relay   *etcdtest.PeerRelay // the members' peer traffic (isolate)
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	requireAll(t)
	plan, err := etcdtest.PlanRelayed(3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	relay, err := etcdtest.NewPeerRelay(plan)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, plan: plan, logs: &testutil.SyncBuffer{}, members: make([]*testutil.Proc, 3), relay: relay}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m != nil {
				m.Stop(syscall.SIGKILL)
			}
		}
		relay.Close()
		if t.Failed() {
			t.Logf("etcd members' log:\n%s", c.logs.String())
		}
	})
	c.start(0, 1, 2)
	return c
}

// start starts members (together: one alone waits for a quorum) and waits
// until each serves clients.
func (c *cluster) start(members ...int) {
	c.t.Helper()
	ready := make([]*testutil.SyncBuffer, len(members))
	for k, i := range members {
		m := c.plan[i]
		ready[k] = &testutil.SyncBuffer{}
		cmd := exec.Command(memberBin, m.Args("")...)
		cmd.Stdout, cmd.Stderr = ready[k], c.logs
		c.members[i] = testutil.StartProc(c.t, cmd)
	}
	for k, i := range members {
		eventually(c.t, 60*time.Second, 50*time.Millisecond, fmt.Sprintf("etcd member m%d ready", i), func() error {
			if !c.members[i].Running() {
				c.t.Fatalf("etcd member m%d exited: %v\n%s", i, c.members[i].Err(), c.logs.String())
			}
			if !strings.Contains(ready[k].String(), "ready") {
				return errors.New("not yet")
			}
			return nil
		})
	}
}

// stopMember stops member i (SIGTERM: a clean stop, as `systemctl stop`).
func (c *cluster) stopMember(i int) {
	c.members[i].Stop(syscall.SIGTERM)
	c.members[i] = nil
}

// isolate cuts member i off from its peers: it runs and answers clients,
// with no leader, until heal.
func (c *cluster) isolate(i int) { c.relay.Isolate(i) }

func (c *cluster) heal(i int) { c.relay.Heal(i) }

func (c *cluster) endpoints() string {
	var s []string
	for _, m := range c.plan {
		s = append(s, m.ClientURL)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

// ---- oidc-provider ---------------------------------------------------------

const (
	appSecret = "fleet-app-secret-0123456789"
	ccSecret  = "fleet-cc-secret-0123456789"
)

// startOIDC starts oidc-provider with clients "app" (authorization code
// and refresh, secret basic, any loopback redirect) and "cc" (client
// credentials), access tokens living accessTTL seconds.
func startOIDC(t testing.TB, accessTTL int) *oidcop.Server {
	t.Helper()
	requireAll(t)
	return oidcop.Start(t, oidcop.Config{
		AccessTokenTTL: accessTTL, ClientCredentialsTTL: accessTTL,
		Clients: []map[string]any{{
			"client_id": "app", "client_secret": appSecret,
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
			"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "client_secret_basic",
		}, {
			"client_id": "cc", "client_secret": ccSecret,
			"grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
		}},
	})
}

// ---- load balancer ---------------------------------------------------------

// balancer is the fleet's redirect URI: a reverse proxy sending each
// request to the instance set with to (as a load balancer in front of the
// callback listeners would), or start pages to the one set with startTo
// and the rest to the other. The Host header stays the balancer's, which
// every instance accepts: it is its configured redirect_uri's host.
type balancer struct {
	Addr          string
	target, start atomic.Pointer[string]
}

func startBalancer(t testing.TB) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{Addr: ln.Addr().String()}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		to := b.target.Load()
		if s := b.start.Load(); s != nil && strings.HasPrefix(r.In.URL.Path, "/start/") {
			to = s
		}
		r.Out.URL.Scheme, r.Out.URL.Host = "http", *to
		r.Out.Host = r.In.Host
	}}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return b
}

// to sends every request to in.
func (b *balancer) to(in *instance) {
	a := in.Callback
	b.target.Store(&a)
	b.start.Store(nil)
}

// startTo sends start pages to in, the rest where to said.
func (b *balancer) startTo(in *instance) { a := in.Callback; b.start.Store(&a) }

// ---- tokend instances ------------------------------------------------------

// fleet is the configuration shared by the instances.
type fleet struct {
	t        testing.TB
	dir      string
	etcd     *cluster
	op       *oidcop.Server
	lb       *balancer
	keyFile  string
	prefix   string
	leaseTTL time.Duration
	// extra is appended to the clients and grants sections.
	clients, grants string
}

const leaseTTL = 3 * time.Second

func newFleet(t testing.TB, etcd *cluster, op *oidcop.Server) *fleet {
	t.Helper()
	f := &fleet{t: t, dir: testutil.SharedDir(t), etcd: etcd, op: op, lb: startBalancer(t), leaseTTL: leaseTTL,
		prefix: fmt.Sprintf("/tokend-e2e-%d/", time.Now().UnixNano())}
	f.keyFile = filepath.Join(f.dir, "store.key")
	if err := os.WriteFile(f.keyFile, []byte(hex.EncodeToString([]byte("fleet-e2e-store-key-32-bytes-ok!"))), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"app": appSecret, "cc": ccSecret} {
		if err := os.WriteFile(filepath.Join(f.dir, name+".secret"), []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.clients = fmt.Sprintf(`  app:
    provider: op
    client_id: app
    client_secret_file: %s
    auth_method: client_secret_basic
    redirect_uri: http://%s/callback
  cc:
    provider: op
    client_id: cc
    client_secret_file: %s
    auth_method: client_secret_basic
`, filepath.Join(f.dir, "app.secret"), f.lb.Addr, filepath.Join(f.dir, "cc.secret"))
	f.grants = `  web:
    client: app
    type: authorization_code
    scopes: [openid]
    READERS
  svc:
    client: cc
    type: client_credentials
    scopes: [api:read]
    READERS
`
	return f
}

// instance is one `tokend serve` of the fleet, restartable.
type instance struct {
	t        testing.TB
	Name     string
	Dir      string
	Socket   string
	Callback string
	Metrics  string
	cfgPath  string
	logs     *testutil.SyncBuffer
	http     *http.Client

	mu sync.Mutex
	p  *testutil.Proc
}

func (f *fleet) config(in *instance) string {
	readers := fmt.Sprintf("readers: {uids: [%d]}", os.Getuid())
	return testutil.TokendConfig{
		Comment: "fleet e2e instance " + in.Name,
		Store: []string{"backend: etcd", "key_file: " + f.keyFile, "etcd:",
			"  endpoints: " + f.etcd.endpoints(), "  prefix: " + f.prefix, "  dial_timeout: 2s", "  lease_ttl: " + f.leaseTTL.String()},
		Fleet:    []string{"instance: " + in.Name},
		Socket:   in.Socket,
		Callback: in.Callback,
		Metrics:  in.Metrics,
		Refresh:  []string{`schedule: "@every 1s"`, "fraction: 0.75", "min_remaining: 3s", "timeout: 1s"},
		LogLevel: "debug",
		Provider: "op", Issuer: f.op.Issuer,
		Clients: f.clients,
		Grants:  strings.ReplaceAll(f.grants, "READERS", readers),
	}.String()
}

// newInstance writes instance name's configuration; start starts it.
func (f *fleet) newInstance(name string) *instance {
	t := f.t
	t.Helper()
	dir := filepath.Join(f.dir, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := &instance{
		t: t, Name: name, Dir: dir, Socket: filepath.Join(dir, "tokend.sock"),
		Callback: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		Metrics:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		cfgPath:  filepath.Join(dir, "config.yaml"), logs: &testutil.SyncBuffer{},
	}
	in.http = testutil.UnixHTTPClient(in.Socket, 10*time.Second)
	if err := os.WriteFile(in.cfgPath, []byte(f.config(in)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.kill()
		logs := in.logs.String()
		for _, s := range []string{appSecret, ccSecret} {
			if strings.Contains(logs, s) {
				t.Errorf("instance %s logged a client secret", name)
			}
		}
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("instance %s: the race detector reported a data race", name)
		}
		if t.Failed() {
			t.Logf("instance %s log:\n%s", name, logs)
		}
	})
	return in
}

// startInstances starts n instances, i0 to i(n-1), together and waits
// until each serves its socket.
func (f *fleet) startInstances(n int) []*instance {
	f.t.Helper()
	ins := make([]*instance, n)
	for i := range ins {
		ins[i] = f.newInstance(fmt.Sprintf("i%d", i))
	}
	for _, in := range ins {
		in.start()
	}
	for _, in := range ins {
		in.wait()
	}
	return ins
}

// start starts the instance; wait waits until its socket answers.
func (in *instance) start() {
	in.t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.p != nil && in.p.Running() {
		in.t.Fatalf("instance %s is running", in.Name)
	}
	fmt.Fprintf(in.logs, "--- fleet e2e: starting %s at %s\n", in.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(tokendBin, "serve", "--config", in.cfgPath)
	cmd.Stdout, cmd.Stderr = in.logs, in.logs
	in.p = testutil.StartProc(in.t, cmd)
}

func (in *instance) wait() {
	in.t.Helper()
	in.mu.Lock()
	p := in.p
	in.mu.Unlock()
	testutil.WaitTokend(in.t, p, in.http, "instance "+in.Name)
}

func (in *instance) signal(sig syscall.Signal) {
	in.mu.Lock()
	p := in.p
	in.mu.Unlock()
	if p != nil && p.Running() {
		fmt.Fprintf(in.logs, "--- fleet e2e: %v to %s at %s\n", sig, in.Name, time.Now().Format(time.RFC3339Nano))
		p.Cmd.Process.Signal(sig)
	}
}

// kill is kill -9; it waits for the exit.
func (in *instance) kill() {
	in.mu.Lock()
	p := in.p
	in.mu.Unlock()
	if p != nil && p.Running() {
		fmt.Fprintf(in.logs, "--- fleet e2e: SIGKILL to %s at %s\n", in.Name, time.Now().Format(time.RFC3339Nano))
		p.Stop(syscall.SIGKILL)
	}
}

func (in *instance) up() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.p != nil && in.p.Running()
}

func (in *instance) get(path string) (int, []byte, error) {
	resp, err := in.http.Get("http://tokend" + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// fetchTimed fetches grant and says how long the answer took and its
// Retry-After.
func (in *instance) fetchTimed(grant string) (code int, retryAfter string, took time.Duration, err error) {
	start := time.Now()
	resp, err := in.http.Get("http://tokend/v1/tokens/" + grant)
	if err != nil {
		return 0, "", time.Since(start), err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), time.Since(start), nil
}

func (in *instance) token(grant string) (api.TokenResponse, int, error) {
	var tok api.TokenResponse
	code, b, err := in.get("/v1/tokens/" + grant)
	if err == nil && code == http.StatusOK {
		err = json.Unmarshal(b, &tok)
	}
	return tok, code, err
}

func (in *instance) status(grant string) (api.GrantStatus, error) {
	var st api.GrantStatus
	code, b, err := in.get("/v1/tokens/" + grant + "/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("status %s: %d %s", grant, code, b)
	}
	return st, json.Unmarshal(b, &st)
}

func (in *instance) mustStatus(grant string) api.GrantStatus {
	in.t.Helper()
	st, err := in.status(grant)
	if err != nil {
		in.t.Fatalf("instance %s: %v", in.Name, err)
	}
	return st
}

// metrics returns the metrics page.
func (in *instance) metrics() string {
	c := http.Client{Timeout: 5 * time.Second} // a stopped instance never answers
	resp, err := c.Get("http://" + in.Metrics + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// cli runs the tokend client against the instance's socket.
func (in *instance) cli(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tokendBin, append(args, "--socket", in.Socket)...)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return string(out), code
}

// ---- readers ---------------------------------------------------------------

// reader fetches grant from an instance every 100 ms while it is up and
// counts what it saw. A token served past its expiry is a failure.
type reader struct {
	in      *instance
	grant   string
	ok      atomic.Int64
	failed  atomic.Int64 // answers other than 200 while the instance was up
	expired atomic.Int64 // 200 with a token past its expiry
	mu      sync.Mutex
	last    string // the last non-200 answer
}

func startReaders(t testing.TB, grant string, ins ...*instance) []*reader {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var rs []*reader
	for _, in := range ins {
		r := &reader{in: in, grant: grant}
		rs = append(rs, r)
		wg.Go(func() {
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if !in.up() {
					continue
				}
				// A token is judged by when it was asked for: one served
				// in its last milliseconds may expire on the way back.
				asked := time.Now()
				tok, code, err := in.token(grant)
				now := time.Now()
				switch {
				case err != nil:
					// The instance is being killed or restarted.
				case code == http.StatusOK && !tok.ExpiresAt.After(asked):
					r.expired.Add(1)
				case code == http.StatusOK:
					r.ok.Add(1)
				default:
					r.failed.Add(1)
					r.mu.Lock()
					r.last = fmt.Sprintf("%d at %s", code, now.Format(time.RFC3339Nano))
					r.mu.Unlock()
				}
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return rs
}

// check fails the test if a reader was served an expired token, or (when
// strict) was refused a token.
func checkReaders(t testing.TB, rs []*reader, strict bool) {
	t.Helper()
	for _, r := range rs {
		r.mu.Lock()
		last := r.last
		r.mu.Unlock()
		t.Logf("reader on %s: %d tokens, %d refusals, %d expired", r.in.Name, r.ok.Load(), r.failed.Load(), r.expired.Load())
		if r.expired.Load() > 0 {
			t.Errorf("reader on %s was served %d expired tokens", r.in.Name, r.expired.Load())
		}
		if strict && r.failed.Load() > 0 {
			t.Errorf("reader on %s was refused %d times (last %s)", r.in.Name, r.failed.Load(), last)
		}
		if r.ok.Load() == 0 {
			t.Errorf("reader on %s was never served a token", r.in.Name)
		}
	}
}

// authorize runs `tokend authorize grant` on instance a and opens the
// start URL in a browser; the balancer sends the start page, and then the
// provider's redirect, to instance b, which takes the start page from the
// fleet. It returns the callback URL visited.
func (f *fleet) authorize(a, b *instance, grant string) string {
	f.t.Helper()
	f.lb.to(b)
	_, cb := f.authorizeVia(a, grant)
	return cb
}

// authorizeVia is authorize with the balancer as set; it returns the start
// URL and the callback URL visited.
func (f *fleet) authorizeVia(a *instance, grant string) (start, cb string) {
	t := f.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tokendBin, "authorize", grant, "--socket", a.Socket)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The start page is on the redirect URI's host (the balancer), so the
	// browser binding cookie is set where the provider redirects.
	re := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/start/[A-Za-z0-9_-]+`)
	eventually(t, 20*time.Second, 50*time.Millisecond, "tokend authorize prints a start URL", func() error {
		if start = re.FindString(out.String()); start == "" {
			return fmt.Errorf("output so far: %q", out.String())
		}
		return nil
	})
	br := testutil.NewBrowser(t)
	page := br.Open(start)
	for _, v := range br.Visited {
		if strings.HasPrefix(v, "http://"+f.lb.Addr+"/callback") {
			cb = v
		}
	}
	if cb == "" || page.Status != http.StatusOK {
		t.Fatalf("authorization ended with %d, callback %q, visited %v:\n%s", page.Status, cb, br.Visited, page.Body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tokend authorize: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("tokend authorize did not exit:\n%s", out.String())
	}
	return start, cb
}

// eventually is testutil.Eventually: real-time waits on processes.
var eventually = testutil.Eventually
