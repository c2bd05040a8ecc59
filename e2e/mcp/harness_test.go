package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

var eventually = testutil.Eventually

// ---- processes ---------------------------------------------------------------

// startHello starts a node script that prints one JSON line once it
// listens, and decodes that line into hello.
func startHello(t testing.TB, what string, logs *testutil.SyncBuffer, hello any, script string, args ...string) *testutil.Proc {
	t.Helper()
	pr, pw := io.Pipe()
	cmd := exec.Command(nodeBin(), append([]string{script}, args...)...)
	cmd.Stdout, cmd.Stderr = pw, logs
	p := testutil.StartProc(t, cmd)
	t.Cleanup(func() {
		pw.Close()
		if t.Failed() {
			t.Logf("%s log:\n%s", what, logs.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(pr).ReadString('\n')
		line <- l
		io.Copy(logs, pr)
	}()
	select {
	case l := <-line:
		if err := json.Unmarshal([]byte(l), hello); err != nil {
			t.Fatalf("%s did not start (%q): %v\n%s", what, l, err, logs.String())
		}
	case <-time.After(60 * time.Second):
		// Node has been seen to take over 30 s to start on a loaded machine.
		t.Fatalf("%s did not start in 60s:\n%s", what, logs.String())
	}
	return p
}

func getJSON(t testing.TB, rawURL string, v any) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", rawURL, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
}

// ---- oidc-provider -------------------------------------------------------------

// accessTTL is the life of the access tokens, in seconds: short, so that
// tokend refreshes (at 3/4 of it) several times within a test.
const accessTTL = 12

// startAuthServer starts oidc-provider as the authorization server of
// resources, whose access tokens are JWTs with scope mcp:tools.
func startAuthServer(t testing.TB, resources []string) *oidcop.Server {
	t.Helper()
	return oidcop.Start(t, oidcop.Config{
		Node:           nodeBin(),
		AccessTokenTTL: accessTTL,
		Scopes:         []string{"openid", "offline_access"},
		ResourceScope:  "mcp:tools",
		JWTResources:   resources,
	})
}

// ---- the MCP server ------------------------------------------------------------

// mcpServer is testdata/server.mjs: two resources, URL and Other.
type mcpServer struct {
	t          testing.TB
	URL, Other string
	Base       string // scheme://host:port
	logs       *testutil.SyncBuffer
}

// resourceStats are one resource's counts at GET /_test/stats.
type resourceStats struct {
	Requests     int `json:"requests"`
	Unauthorized int `json:"unauthorized"`
	Forbidden    int `json:"forbidden"`
	ToolCalls    int `json:"tool_calls"`
	Sessions     int `json:"sessions"`
	Tokens       int `json:"tokens"`
	Clients      int `json:"clients"`
}

func startMCPServer(t testing.TB) *mcpServer {
	t.Helper()
	m := &mcpServer{t: t, logs: &testutil.SyncBuffer{}}
	var hello struct{ URL, Other string }
	startHello(t, "MCP server", m.logs, &hello, filepath.Join(mcpDir, "server.mjs"))
	m.URL, m.Other = hello.URL, hello.Other
	m.Base = strings.TrimSuffix(m.URL, "/mcp")
	return m
}

// configure names the authorization server to the MCP server.
func (m *mcpServer) configure(issuer string) {
	m.t.Helper()
	resp, err := http.Post(m.Base+"/_test/issuer", "application/json", strings.NewReader(fmt.Sprintf(`{"issuer":%q}`, issuer)))
	if err != nil {
		m.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		m.t.Fatalf("configuring the MCP server: %s %s\n%s", resp.Status, b, m.logs.String())
	}
}

func (m *mcpServer) stats() map[string]resourceStats {
	m.t.Helper()
	var s map[string]resourceStats
	getJSON(m.t, m.Base+"/_test/stats", &s)
	return s
}

// stack is an MCP server with oidc-provider as its authorization server.
type stack struct {
	MCP *mcpServer
	AS  *oidcop.Server
}

func startStack(t testing.TB) *stack {
	t.Helper()
	requireAll(t)
	m := startMCPServer(t)
	a := startAuthServer(t, []string{m.URL, m.Other})
	m.configure(a.Issuer)
	return &stack{MCP: m, AS: a}
}

// initialize is an MCP initialize request.
const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"tokend-e2e-raw","version":"1"}}}`

// postInitialize sends an MCP initialize request to rawURL with header
// Authorization set to auth (none when empty); it returns the status and
// the WWW-Authenticate header.
func postInitialize(t testing.TB, rawURL, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(initialize))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// ---- tokend ----------------------------------------------------------------------

// tokend is one `tokend serve`, restartable with the same configuration.
type tokend struct {
	t      testing.TB
	dir    string
	Socket string
	// Callback is the callback listener's host:port.
	Callback string
	cfgPath  string
	logs     *testutil.SyncBuffer
	http     *http.Client

	mu sync.Mutex
	p  *testutil.Proc
}

// grantConfig is one grant of a tokend configuration.
type grantConfig struct {
	Name     string
	Resource string // protected_resource
	Proxy    string // proxy listen address, "" for none
	Readers  string // YAML flow mapping; default: the test's uid
}

// newTokend writes a configuration with grants, the scheduler waking every
// second, and starts tokend.
func newTokend(t testing.TB, grants ...grantConfig) *tokend {
	t.Helper()
	requireTokend(t)
	dir := testutil.SharedDir(t)
	td := &tokend{t: t, dir: dir, Socket: filepath.Join(dir, "tokend.sock"), cfgPath: filepath.Join(dir, "config.yaml"), logs: &testutil.SyncBuffer{},
		Callback: fmt.Sprintf("127.0.0.1:%d", testutil.LowPort(t))}
	var g strings.Builder
	for _, gr := range grants {
		readers := gr.Readers
		if readers == "" {
			readers = fmt.Sprintf("{uids: [%d]}", os.Getuid())
		}
		fmt.Fprintf(&g, "  %s:\n    protected_resource: %s\n    readers: %s\n", gr.Name, gr.Resource, readers)
		if gr.Proxy != "" {
			fmt.Fprintf(&g, "    proxy: {listen: %q}\n", gr.Proxy)
		}
	}
	cfg := testutil.TokendConfig{
		Comment:  "tokend e2e/mcp configuration",
		Store:    []string{"path: " + filepath.Join(dir, "tokend.db")},
		Socket:   td.Socket,
		Callback: td.Callback,
		Metrics:  fmt.Sprintf("127.0.0.1:%d", testutil.LowPort(t)),
		Refresh:  []string{`schedule: "@every 1s"`, "fraction: 0.75", "min_remaining: 3s", "timeout: 10s"},
		LogLevel: "debug",
		Grants:   g.String(),
	}
	cfg.Write(t, td.cfgPath)
	td.http = testutil.UnixHTTPClient(td.Socket, 30*time.Second)
	t.Cleanup(func() {
		td.kill()
		if strings.Contains(td.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in tokend (see its log)")
		}
		if t.Failed() {
			t.Logf("tokend config:\n%s\ntokend log:\n%s", cfg, td.logs.String())
		}
	})
	td.start()
	return td
}

// start starts tokend and waits until its socket answers.
func (td *tokend) start() {
	td.t.Helper()
	td.mu.Lock()
	fmt.Fprintf(td.logs, "--- e2e/mcp: starting tokend at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(tokendBin, "serve", "--config", td.cfgPath)
	cmd.Env = append(os.Environ(), td.env()...)
	cmd.Stdout, cmd.Stderr = td.logs, td.logs
	td.p = testutil.StartProc(td.t, cmd)
	p := td.p
	td.mu.Unlock()
	testutil.WaitTokend(td.t, p, td.http, "tokend")
}

// kill is kill -9 of tokend; it waits for the exit.
func (td *tokend) kill() {
	td.mu.Lock()
	p := td.p
	td.mu.Unlock()
	if p != nil && p.Running() {
		fmt.Fprintf(td.logs, "--- e2e/mcp: SIGKILL at %s\n", time.Now().Format(time.RFC3339Nano))
		p.Kill()
	}
}

// env is the environment of a CLI command talking to this tokend.
func (td *tokend) env() []string { return []string{"TOKEND_SOCKET=" + td.Socket} }

// status returns GET /v1/tokens/{name}/status.
func (td *tokend) status(name string) (api.GrantStatus, error) {
	resp, err := td.http.Get("http://tokend/v1/tokens/" + url.PathEscape(name) + "/status")
	if err != nil {
		return api.GrantStatus{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return api.GrantStatus{}, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var st api.GrantStatus
	return st, json.Unmarshal(b, &st)
}

// token returns the grant's current access token.
func (td *tokend) token(name string) (string, error) {
	resp, err := td.http.Get("http://tokend/v1/tokens/" + url.PathEscape(name))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	var tok api.TokenResponse
	if err := json.Unmarshal(b, &tok); err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// cli runs `tokend ARGS...` against this tokend with stdin (60 s at most)
// and returns its stdout, stderr and exit code.
func (td *tokend) cli(stdin string, args ...string) (string, string, int) {
	td.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tokendBin, args...)
	cmd.Env = append(os.Environ(), td.env()...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		td.t.Fatalf("tokend %v: no exit in 60s\nstdout: %s\nstderr: %s", args, out.String(), errb.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		td.t.Fatalf("tokend %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// authorizePaste authorizes grant name in paste mode: `tokend authorize
// NAME --paste` prints the authorization server's URL alone on its first
// line; a browser (a cookie jar following redirects; oidc-provider's login
// and consent finish on their own) goes there and stops where the
// authorization server sends it away; that address is pasted back on
// stdin. It returns the authorization URL.
func (td *tokend) authorizePaste(name, issuer string) *url.URL {
	td.t.Helper()
	t := td.t
	cmd := exec.Command(tokendBin, "authorize", name, "--paste")
	cmd.Env = append(os.Environ(), td.env()...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var errb testutil.SyncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	rest := &testutil.SyncBuffer{}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadString('\n')
		lines <- strings.TrimSpace(l)
		io.Copy(rest, r)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	var first string
	select {
	case first = <-lines:
	case <-time.After(60 * time.Second):
		t.Fatalf("tokend authorize --paste printed no URL in 60s; stderr:\n%s", errb.String())
	}
	authURL, err := url.Parse(first)
	if err != nil || !strings.HasPrefix(first, issuer+"/") {
		t.Fatalf("tokend authorize --paste: first line %q is not a URL of the authorization server %s; stderr:\n%s", first, issuer, errb.String())
	}
	landed := browse(t, first, issuer)
	fmt.Fprintln(stdin, landed)
	stdin.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tokend authorize --paste: %v\nstdout: %s\nstderr: %s", err, rest.String(), errb.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("tokend authorize --paste did not finish in 60s; stderr:\n%s", errb.String())
	}
	return authURL
}

// authorizeStartPage authorizes grant name the usual way: `tokend
// authorize NAME` prints a one-time start page on the callback listener; a
// browser opens it, is sent to the authorization server with a binding
// cookie, and comes back to tokend's callback, which answers 200.
func (td *tokend) authorizeStartPage(name string) {
	td.t.Helper()
	t := td.t
	out, errs, code := td.cli("", "authorize", name)
	start := regexp.MustCompile(regexp.QuoteMeta("http://"+td.Callback+"/start/") + `[A-Za-z0-9_-]+`).FindString(out)
	if code != 0 || start == "" {
		t.Fatalf("tokend authorize %s: exit %d, no start URL\nstdout: %s\nstderr: %s", name, code, out, errs)
	}
	page := testutil.NewBrowser(t).Open(start)
	if page.Status != http.StatusOK || page.URL.Host != td.Callback || page.URL.Path != "/callback" {
		t.Fatalf("browser ended at %s with %d, want tokend's callback answering 200:\n%s", page.URL.Redacted(), page.Status, page.Body)
	}
}

// browse opens rawURL in a fresh browser (cookie jar, redirects followed
// while they stay on the authorization server) and returns the address it
// is finally sent to elsewhere: the client's redirect URI with the
// authorization response.
func browse(t testing.TB, rawURL, issuer string) string {
	t.Helper()
	as, _ := url.Parse(issuer)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != as.Host || len(via) > 20 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(rawURL)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	loc, err := resp.Location()
	if err != nil || loc.Host == as.Host {
		t.Fatalf("browser: the authorization server did not send the browser away: %s at %s\n%s", resp.Status, resp.Request.URL, body)
	}
	return loc.String()
}

// ---- MCP clients -------------------------------------------------------------------

// clientSession is one session of testdata/client.mjs: url (with headers)
// or a command.
type clientSession struct {
	Name    string            `json:"name"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
}

// clientEvent is one line of client.mjs.
type clientEvent struct {
	Event    string   `json:"event"`
	Error    string   `json:"error"`
	Session  string   `json:"session"`
	Tool     string   `json:"tool"`
	Tools    []string `json:"tools"`
	Calls    int      `json:"calls"`
	Failures int      `json:"failures"`
	Sessions map[string]struct {
		Calls    int    `json:"calls"`
		Failures int    `json:"failures"`
		Tokens   int    `json:"tokens"`
		MaxMs    int    `json:"maxMs"`
		Sub      string `json:"sub"`
		Resource string `json:"resource"`
	} `json:"sessions"`
}

// clients is a running client.mjs.
type clients struct {
	t      testing.TB
	p      *testutil.Proc
	stdin  io.WriteCloser
	logs   *testutil.SyncBuffer
	events chan clientEvent
	// scanned is closed once client.mjs's stdout is read to its end.
	scanned chan struct{}

	mu    sync.Mutex
	fails []clientEvent
	Ready clientEvent
	done  *clientEvent
	last  clientEvent // the last progress
}

// startClients starts client.mjs with sessions, calling tools every
// interval each, and waits until every session is connected.
func startClients(t testing.TB, interval time.Duration, sessions ...clientSession) *clients {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"sessions": sessions, "intervalMs": interval.Milliseconds(), "timeoutMs": 90000})
	c := &clients{t: t, logs: &testutil.SyncBuffer{}, events: make(chan clientEvent, 16), scanned: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd := exec.Command(nodeBin(), filepath.Join(mcpDir, "client.mjs"), string(cfg))
	c.stdin, _ = cmd.StdinPipe()
	cmd.Stdout, cmd.Stderr = pw, c.logs
	c.p = testutil.StartProc(t, cmd)
	go func() {
		<-c.p.Done()
		pw.Close()
	}()
	t.Cleanup(func() {
		c.p.Kill()
		if strings.Contains(c.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in a tokend mcp bridge (see the clients' stderr)")
		}
		if t.Failed() {
			t.Logf("MCP clients' stderr (the bridges' logs among it):\n%s", c.logs.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev clientEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				fmt.Fprintf(c.logs, "client.mjs stdout: %s\n", sc.Text())
				continue
			}
			c.mu.Lock()
			switch ev.Event {
			case "fail":
				c.fails = append(c.fails, ev)
			case "progress":
				c.last = ev
			case "done":
				e := ev
				c.done = &e
			}
			c.mu.Unlock()
			select {
			case c.events <- ev:
			default:
			}
		}
		close(c.events)
		io.Copy(io.Discard, pr)
		close(c.scanned)
	}()
	timeout := time.After(120 * time.Second)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("MCP clients exited before connecting (%v):\n%s", c.p.Err(), c.logs.String())
			}
			if ev.Event == "error" {
				t.Fatalf("MCP clients could not connect: %s\n%s", ev.Error, c.logs.String())
			}
			if ev.Event == "ready" {
				c.Ready = ev
				return c
			}
		case <-timeout:
			t.Fatalf("MCP clients not connected in 120s:\n%s", c.logs.String())
		}
	}
}

// failures returns the failed calls so far.
func (c *clients) failures() []clientEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]clientEvent(nil), c.fails...)
}

// stop ends the calls (stdin closed) and returns the summary.
func (c *clients) stop() clientEvent {
	c.t.Helper()
	c.stdin.Close()
	select {
	case <-c.scanned:
	case <-time.After(120 * time.Second):
		c.t.Fatalf("MCP clients did not finish in 120s:\n%s", c.logs.String())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.t.Fatalf("MCP clients ended (%v) without a summary:\n%s", c.p.Err(), c.logs.String())
	}
	return *c.done
}

// errNotYet is what a condition polled with eventually returns while it
// waits.
var errNotYet = errors.New("not yet")

// Waits on real processes.
const (
	pollEvery    = 100 * time.Millisecond
	timeoutCalls = 60 * time.Second
)
