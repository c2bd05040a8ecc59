package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
)

// fakeSource is a grant as the daemon would serve it: a current token,
// readers by uid, and a refresh whenever the current token is reported
// rejected.
type fakeSource struct {
	mu      sync.Mutex
	gen     int
	readers map[uint32]bool
	stepUps []api.StepUpRequest
	proofs  []api.DPoPRequest

	tokens, rejected atomic.Int32
}

func newFakeSource(readers ...uint32) *fakeSource {
	s := &fakeSource{gen: 1, readers: map[uint32]bool{}}
	for _, r := range readers {
		s.readers[r] = true
	}
	return s
}

func (s *fakeSource) current() string { return fmt.Sprintf("tok-%d", s.gen) }

func (s *fakeSource) admit(c Caller) error {
	if !s.readers[c.UID] {
		return &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden, Description: "not allowed to read this grant (or no such grant)"}
	}
	return nil
}

func (s *fakeSource) Token(_ context.Context, c Caller, _ string) (*api.TokenResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	s.tokens.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return &api.TokenResponse{AccessToken: s.current(), TokenType: "Bearer"}, nil
}

func (s *fakeSource) Rejected(_ context.Context, c Caller, _ string, req api.RejectedRequest) (*api.TokenResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	s.rejected.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.AccessToken == s.current() {
		s.gen++
	}
	return &api.TokenResponse{AccessToken: s.current(), TokenType: "Bearer"}, nil
}

func (s *fakeSource) StepUp(_ context.Context, c Caller, _ string, req api.StepUpRequest) (*api.GrantStatus, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stepUps = append(s.stepUps, req)
	return &api.GrantStatus{Name: "notes"}, nil
}

func (s *fakeSource) DPoP(_ context.Context, c Caller, _ string, req api.DPoPRequest) (*api.DPoPResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.proofs = append(s.proofs, req)
	return &api.DPoPResponse{AccessToken: s.current(), TokenType: "DPoP", DPoP: fmt.Sprintf("proof-%d", len(s.proofs))}, nil
}

// seen is one request as the upstream received it.
type seen struct {
	path, query, auth, dpop, cookie, body, id string
}

// upstream is a protected resource that records what it receives and
// answers with answer.
type upstream struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []seen
	answer func(w http.ResponseWriter, r *http.Request, s seen)
}

func newUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, s seen)) *upstream {
	u := &upstream{answer: answer}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s := seen{path: r.URL.Path, query: r.URL.RawQuery, auth: r.Header.Get("Authorization"), dpop: r.Header.Get("DPoP"),
			cookie: r.Header.Get("Cookie"), body: string(b), id: r.Header.Get("X-Req")}
		u.mu.Lock()
		u.got = append(u.got, s)
		u.mu.Unlock()
		if u.answer != nil {
			u.answer(w, r, s)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.got...)
}

// rejectToken answers 401 invalid_token to requests with token bad.
func rejectToken(bad string) func(w http.ResponseWriter, r *http.Request, s seen) {
	return func(w http.ResponseWriter, r *http.Request, s seen) {
		if s.auth == "Bearer "+bad {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="expired", resource_metadata="https://x/.well-known/oauth-protected-resource"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "refused")
			return
		}
		io.WriteString(w, "ok "+s.body)
	}
}

// startProxy serves a proxy to up's /mcp on a loopback TCP port and
// returns its base URL.
func startProxy(t *testing.T, up *upstream, src TokenSource, edit func(*ProxyConfig)) string {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveProxy(t, ln, up, src, edit)
	return "http://" + ln.Addr().String()
}

func serveProxy(t *testing.T, ln net.Listener, up *upstream, src TokenSource, edit func(*ProxyConfig)) {
	t.Helper()
	u, _ := url.Parse(up.srv.URL + "/mcp")
	// Every line the proxy logs, at every level, is checked for tokens.
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := ProxyConfig{Grant: "notes", Upstream: u, Source: src, Log: log}
	if edit != nil {
		edit(&cfg)
	}
	p, err := NewProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, p, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		for _, secret := range []string{"tok-", "proof-", "caller-secret", "caller-proof"} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("the log holds %q:\n%s", secret, logs.String())
			}
		}
	})
}

func do(t *testing.T, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func self() uint32 { return uint32(os.Getuid()) }

// The caller's credentials never go upstream: its Authorization, DPoP,
// Proxy-Authorization and cookies are dropped and the grant's token goes
// instead. / is the resource itself, other paths follow it.
func TestProxyStripsCallerCredentialsAndAddsToken(t *testing.T) {
	up := newUpstream(t, nil)
	base := startProxy(t, up, newFakeSource(self()), nil)
	for _, target := range []string{"/", "/sub/x?q=1"} {
		req, _ := http.NewRequest(http.MethodGet, base+target, nil)
		req.Header.Set("Authorization", "Bearer caller-secret")
		req.Header.Set("DPoP", "caller-proof")
		req.Header.Set("Proxy-Authorization", "Basic caller")
		req.Header.Set("Cookie", "session=caller")
		if code, body, _ := do(t, req); code != 200 || body != "ok" {
			t.Fatalf("%s: %d %q", target, code, body)
		}
	}
	got := up.requests()
	if len(got) != 2 {
		t.Fatalf("upstream saw %d requests", len(got))
	}
	for _, s := range got {
		if s.auth != "Bearer tok-1" || s.dpop != "" || s.cookie != "" {
			t.Errorf("upstream received auth %q dpop %q cookie %q", s.auth, s.dpop, s.cookie)
		}
	}
	if got[0].path != "/mcp" || got[1].path != "/mcp/sub/x" || got[1].query != "q=1" {
		t.Errorf("paths: %q, %q?%q", got[0].path, got[1].path, got[1].query)
	}
}

// A 401 invalid_token is reported once and the request, body included,
// sent once more with the new token.
func TestProxyRetriesOnceAfterRejectedToken(t *testing.T) {
	up := newUpstream(t, rejectToken("tok-1"))
	src := newFakeSource(self())
	base := startProxy(t, up, src, nil)
	req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader(`{"jsonrpc":"2.0"}`))
	code, body, _ := do(t, req)
	if code != 200 || body != `ok {"jsonrpc":"2.0"}` {
		t.Fatalf("answer %d %q", code, body)
	}
	got := up.requests()
	if len(got) != 2 || got[0].auth != "Bearer tok-1" || got[1].auth != "Bearer tok-2" || got[1].body != `{"jsonrpc":"2.0"}` {
		t.Fatalf("upstream saw %+v", got)
	}
	if n := src.rejected.Load(); n != 1 {
		t.Errorf("Rejected called %d times", n)
	}
}

// Many callers refused at once with the same token: one report (one
// refresh), and each request is sent again once.
func TestProxyConcurrentRejectionsReportedOnce(t *testing.T) {
	const n = 8
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		if s.auth == "Bearer tok-1" {
			// Every caller is refused with the old token before any
			// report is answered.
			arrived.Done()
			<-release
		}
		rejectToken("tok-1")(w, r, s)
	})
	src := newFakeSource(self())
	base := startProxy(t, up, src, nil)
	go func() { arrived.Wait(); close(release) }()
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader(fmt.Sprint(i)))
			req.Header.Set("X-Req", fmt.Sprint(i))
			codes[i], _, _ = do(t, req)
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("caller %d: %d", i, c)
		}
	}
	per := map[string]int{}
	for _, s := range up.requests() {
		per[s.id]++
		if s.body != s.id {
			t.Errorf("request %s arrived with body %q", s.id, s.body)
		}
	}
	for i := range n {
		if per[fmt.Sprint(i)] != 2 {
			t.Errorf("request %d reached the upstream %d times, want 2", i, per[fmt.Sprint(i)])
		}
	}
	if r := src.rejected.Load(); r != 1 {
		t.Errorf("Rejected called %d times, want 1", r)
	}
}

// A body larger than the replay bound, or of unknown length, is streamed
// once: the 401 goes back to the caller.
func TestProxyDoesNotReplayLargeOrStreamedBody(t *testing.T) {
	for name, body := range map[string]io.Reader{
		"large":    strings.NewReader(strings.Repeat("x", 64)),
		"streamed": io.MultiReader(strings.NewReader("chunk")), // no length: chunked
	} {
		t.Run(name, func(t *testing.T) {
			up := newUpstream(t, rejectToken("tok-1"))
			src := newFakeSource(self())
			base := startProxy(t, up, src, func(c *ProxyConfig) { c.MaxReplayBody = 16 })
			req, _ := http.NewRequest(http.MethodPost, base+"/", body)
			code, got, h := do(t, req)
			if code != http.StatusUnauthorized || got != "refused" || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
				t.Fatalf("answer %d %q %q", code, got, h.Get("WWW-Authenticate"))
			}
			if n := len(up.requests()); n != 1 {
				t.Errorf("upstream saw %d requests, want 1", n)
			}
		})
	}
}

// A resource that refuses every token costs one report per
// RejectedInterval, not one per request.
func TestProxyRateLimitsRejectedReports(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	src := newFakeSource(self())
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	base := startProxy(t, up, src, func(c *ProxyConfig) {
		c.Now = func() time.Time { return time.Unix(0, now.Load()) }
		c.RejectedInterval = 10 * time.Second
	})
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		code, _, _ := do(t, req)
		return code
	}
	for range 5 {
		if c := get(); c != http.StatusUnauthorized {
			t.Fatalf("answer %d", c)
		}
	}
	if r := src.rejected.Load(); r != 1 {
		t.Fatalf("Rejected called %d times within the interval, want 1", r)
	}
	// 1 first attempt + 1 retry, then 4 first attempts.
	if n := len(up.requests()); n != 6 {
		t.Errorf("upstream saw %d requests, want 6", n)
	}
	now.Add(int64(11 * time.Second))
	get()
	if r := src.rejected.Load(); r != 2 {
		t.Errorf("Rejected called %d times after the interval, want 2", r)
	}
}

// A 401 without a Bearer or DPoP challenge is not about the token.
func TestProxyPassesOtherUnauthorized(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	src := newFakeSource(self())
	base := startProxy(t, up, src, nil)
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	if code, _, _ := do(t, req); code != http.StatusUnauthorized {
		t.Fatalf("answer %d", code)
	}
	if src.rejected.Load() != 0 || len(up.requests()) != 1 {
		t.Errorf("rejected %d, upstream saw %d", src.rejected.Load(), len(up.requests()))
	}
}

// A 403 insufficient_scope records a step-up with the scopes asked for and
// goes back to the caller as it came.
func TestProxyRecordsStepUpAndPassesForbidden(t *testing.T) {
	const ch = `Bearer error="insufficient_scope", scope="notes:write notes:read", resource_metadata="https://x/.well-known/oauth-protected-resource"`
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		w.Header().Set("WWW-Authenticate", ch)
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "more scopes")
	})
	src := newFakeSource(self())
	base := startProxy(t, up, src, nil)
	req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader("{}"))
	code, body, h := do(t, req)
	if code != http.StatusForbidden || body != "more scopes" || h.Get("WWW-Authenticate") != ch {
		t.Fatalf("answer %d %q %q", code, body, h.Get("WWW-Authenticate"))
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.stepUps) != 1 || src.stepUps[0].Scope != "notes:write notes:read" || src.stepUps[0].Challenge != ch {
		t.Errorf("step-ups %+v", src.stepUps)
	}
	if len(up.requests()) != 1 {
		t.Errorf("upstream saw %d requests, want 1", len(up.requests()))
	}
}

// Server-sent events reach the caller as the resource sends them, not when
// the answer ends.
func TestProxyStreamsServerSentEvents(t *testing.T) {
	next := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "id: %d\ndata: {\"n\":%d}\n\n", i, i)
			w.(http.Flusher).Flush()
			<-next
		}
	})
	base := startProxy(t, up, newFakeSource(self()), nil)
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	for i := range 3 {
		var ev []string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("event %d: %v (got %q)", i, err, ev)
			}
			if line == "\n" {
				break
			}
			ev = append(ev, strings.TrimSpace(line))
		}
		if want := fmt.Sprintf("data: {\"n\":%d}", i); len(ev) != 2 || ev[1] != want {
			t.Fatalf("event %d: %q", i, ev)
		}
		// The resource sends the next event only now: had the proxy
		// buffered, this read would never have finished.
		next <- struct{}{}
	}
}

// A DPoP grant's requests carry its DPoP-bound token and a proof of their
// own, for the resource's URL (no query); the caller's proof is dropped.
func TestProxySendsDPoPProofPerRequest(t *testing.T) {
	up := newUpstream(t, nil)
	src := newFakeSource(self())
	base := startProxy(t, up, src, func(c *ProxyConfig) { c.DPoP = true })
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, base+"/a?x=1", strings.NewReader("{}"))
		req.Header.Set("DPoP", "caller-proof")
		if code, _, _ := do(t, req); code != 200 {
			t.Fatalf("answer %d", code)
		}
	}
	got := up.requests()
	if len(got) != 2 || got[0].auth != "DPoP tok-1" || got[0].dpop != "proof-1" || got[1].dpop != "proof-2" {
		t.Fatalf("upstream saw %+v", got)
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if p := src.proofs[0]; p.Method != "POST" || p.URL != up.srv.URL+"/mcp/a" {
		t.Errorf("proof asked for %+v", p)
	}
}

// A local user who may not read the grant is refused, over loopback TCP
// and over a unix socket, and the resource receives nothing.
func TestProxyRefusesNonReader(t *testing.T) {
	bin := childBin(t)
	up := newUpstream(t, nil)
	src := newFakeSource(0) // root reads; uid 65534 does not
	tcpLn, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveProxy(t, tcpLn, up, src, nil)
	// A directory the child may enter: the socket itself lets anyone
	// connect.
	sock := filepath.Join(testutil.SharedDir(t), "proxy.sock")
	unixLn, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	serveProxy(t, unixLn, up, src, nil)
	for _, ln := range []net.Listener{tcpLn, unixLn} {
		out := getAs(t, bin, 65534, ln.Addr().Network(), ln.Addr().String())
		if !strings.HasPrefix(out, "403 ") || !strings.Contains(out, api.CodeForbidden) {
			t.Errorf("%s: non-reader got %q", ln.Addr().Network(), out)
		}
		if out := getAs(t, bin, 0, ln.Addr().Network(), ln.Addr().String()); !strings.HasPrefix(out, "200 ") {
			t.Errorf("%s: reader got %q", ln.Addr().Network(), out)
		}
	}
	if n := len(up.requests()); n != 2 {
		t.Errorf("upstream saw %d requests, want 2 (the reader's)", n)
	}
}

// Whatever host a request names, it goes to the resource: the proxy is no
// open proxy, and no tunnel.
func TestProxyForwardsToTheResourceOnly(t *testing.T) {
	up := newUpstream(t, nil)
	base := startProxy(t, up, newFakeSource(self()), nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	for _, req := range []string{
		"GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
		"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
	} {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if strings.HasPrefix(req, "CONNECT") && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("CONNECT answered %d", resp.StatusCode)
		}
	}
	got := up.requests()
	if len(got) != 1 || got[0].path != "/mcp/x" {
		t.Errorf("upstream saw %+v", got)
	}
}

// One user cannot hold more than its share of the proxy's connections;
// closing them gives the room back.
func TestProxyBoundsConnectionsPerUser(t *testing.T) {
	up := newUpstream(t, nil)
	base := startProxy(t, up, newFakeSource(self()), nil)
	addr := strings.TrimPrefix(base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	get := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: p\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	for i := range maxConnsPerUID {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if err := get(c); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(extra); err == nil {
		t.Fatal("a connection beyond the bound was served")
	}
	extra.Close()
	conns[0].Close()
	conns = conns[1:]
	// The proxy notices the close when it next reads that connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		err = get(c)
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A resource that wants a DPoP nonce gets the request again with a proof
// carrying it, and later requests carry it from the start. The resource
// names the Bearer scheme too, first: the DPoP challenge is the one read.
func TestProxyDPoPNonce(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) {
		w.Header().Set("DPoP-Nonce", "n-1")
		if s.dpop == "proof-1" {
			w.Header().Add("WWW-Authenticate", `Bearer realm="notes"`)
			w.Header().Add("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="nonce required"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	})
	src := newFakeSource(self())
	base := startProxy(t, up, src, func(c *ProxyConfig) { c.DPoP = true })
	for range 2 {
		req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader("{}"))
		if code, _, _ := do(t, req); code != 200 {
			t.Fatalf("answer %d", code)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if len(src.proofs) != 3 || src.proofs[0].Nonce != "" || src.proofs[1].Nonce != "n-1" || src.proofs[2].Nonce != "n-1" {
		t.Errorf("proofs asked for %+v", src.proofs)
	}
	if n := src.rejected.Load(); n != 0 {
		t.Errorf("a nonce request was reported as a rejected token %d times", n)
	}
	if got := up.requests(); len(got) != 3 {
		t.Errorf("upstream saw %d requests, want 3", len(got))
	}
}

// What the proxy makes of a resource's challenge: a token to replace, a
// step-up's scopes, a DPoP nonce, or nothing (the answer passes as it is).
func TestTokenChallenge(t *testing.T) {
	for _, c := range []struct {
		header  []string
		dpop    bool
		rejects bool
		scope   string
		nonce   bool
	}{
		{[]string{`Bearer error="invalid_token", error_description="expired"`}, false, true, "", false},
		{[]string{`Bearer realm="x"`}, false, true, "", false},
		{[]string{`Bearer`}, false, true, "", false},
		{[]string{`Basic realm="x"`}, false, false, "", false},
		{[]string{`Basic abc==, Bearer error=invalid_token`}, false, true, "", false},
		{[]string{`Basic realm="a, b", DPoP error="use_dpop_nonce", algs="ES256"`}, true, false, "", true},
		{[]string{`Bearer realm="a", DPoP error="use_dpop_nonce", algs="ES256"`}, true, false, "", true},
		{[]string{`Basic realm="x"`, `DPoP algs="ES256"`}, true, true, "", false},
		{[]string{`Basic realm="x"`, `DPoP algs="ES256"`}, false, true, "", false},
		{[]string{`Bearer error="insufficient_scope", scope="a b"`}, false, false, "a b", false},
		{[]string{`Bearer error="insufficient_scope", scope="a b"`}, true, false, "a b", false},
		{[]string{`Bearer error="insufficient_scope", scope="a \"q\" b"`}, false, false, `a "q" b`, false},
		{[]string{`Bearer error="insufficient_scope"`}, false, false, "", false},
		{[]string{`Bearer error="insufficient_scope", scope="unterminated`}, false, false, "", false},
		{[]string{`Negotiate`}, false, false, "", false},
		{[]string{``}, false, false, "", false},
		{[]string{"Bearer realm=" + strings.Repeat("x", 64<<10)}, false, false, "", false},
	} {
		resp := &http.Response{Header: http.Header{"Www-Authenticate": c.header}}
		ch, raw := tokenChallenge(resp, c.dpop)
		scope, _ := insufficientScope(ch)
		if rejectsToken(ch) != c.rejects || scope != c.scope || wantsNonce(ch) != c.nonce {
			t.Errorf("%.60q dpop %v: rejects %v scope %q nonce %v; read %+v", c.header, c.dpop, rejectsToken(ch), scope, wantsNonce(ch), ch)
		}
		if ch.Found != (raw != "") || len(raw) > oauth.MaxChallengeBytes+len(c.header)*2 {
			t.Errorf("%.60q: raw challenge of %d bytes for found=%v", c.header, len(raw), ch.Found)
		}
	}
}

// unreachableSource is a tokend that cannot be reached.
type unreachableSource struct{ *fakeSource }

func (unreachableSource) Token(context.Context, Caller, string) (*api.TokenResponse, error) {
	return nil, fmt.Errorf("tokend: cannot connect to /run/tokend.sock: is tokend running?: %w", syscall.ECONNREFUSED)
}

// No token because tokend cannot be reached: a 503 that says so, and the
// resource is not asked.
func TestProxyTokendUnreachable(t *testing.T) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request, s seen) { io.WriteString(w, "ok") })
	base := startProxy(t, up, unreachableSource{newFakeSource(self())}, nil)
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	code, body, _ := do(t, req)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "tokend did not answer") {
		t.Errorf("answer %d %q", code, body)
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}
