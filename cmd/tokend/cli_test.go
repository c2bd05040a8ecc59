package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/store"
)

var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// reply is one canned answer of the fake daemon.
type reply struct {
	status int
	body   string
}

// fakeDaemon answers "METHOD /path" requests on a unix socket with canned
// replies, in order (the last one repeats), and records what it received.
type fakeDaemon struct {
	t      testing.TB
	socket string

	mu      sync.Mutex
	routes  map[string][]reply
	calls   []string // "METHOD /escaped/path?query"
	accepts []string
	bodies  []string // the request bodies, in order
}

func newFakeDaemon(t testing.TB, routes map[string][]reply) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{t: t, routes: routes}
	dir := testutil.ShortDir(t)
	f.socket = filepath.Join(dir, "s")
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func (f *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := r.Method + " " + r.URL.EscapedPath()
	call := key
	if r.URL.RawQuery != "" {
		call += "?" + r.URL.RawQuery
	}
	f.calls = append(f.calls, call)
	f.accepts = append(f.accepts, r.Header.Get("Accept"))
	body, _ := io.ReadAll(r.Body)
	f.bodies = append(f.bodies, string(body))
	rs := f.routes[key]
	if len(rs) == 0 {
		f.t.Errorf("unexpected request %s", call)
		w.WriteHeader(http.StatusTeapot)
		return
	}
	rp := rs[0]
	if len(rs) > 1 {
		f.routes[key] = rs[1:]
	}
	w.WriteHeader(rp.status)
	w.Write([]byte(rp.body))
}

func (f *fakeDaemon) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// testCLI is a cli writing to buffers, with a fixed clock, a fake
// environment, instant sleeps and a recording browser opener.
type testCLI struct {
	*cli
	out, errOut bytes.Buffer
	env         map[string]string
	sleeps      int
	opened      []string
}

func newTestCLI() *testCLI {
	tc := &testCLI{env: map[string]string{}}
	tc.cli = &cli{
		stdout: &tc.out,
		stderr: &tc.errOut,
		getenv: func(k string) string { return tc.env[k] },
		now:    func() time.Time { return testNow },
		sleep: func(ctx context.Context, d time.Duration) error {
			if d != pollInterval {
				panic("unexpected sleep")
			}
			tc.sleeps++
			return ctx.Err()
		},
		openURL:     func(u string) (func(), error) { tc.opened = append(tc.opened, u); return func() {}, nil },
		lockTimeout: 100 * time.Millisecond,
	}
	return tc
}

func (tc *testCLI) run(args ...string) int { return tc.cli.run(context.Background(), args) }

func TestUsage(t *testing.T) {
	tc := newTestCLI()
	if code := tc.run(); code != exitUsage {
		t.Errorf("no arguments: exit %d", code)
	}
	for _, cmd := range []string{"serve", "dev", "token", "status", "authorize", "refresh", "revoke", "check-config", "rekey", "version", "help"} {
		if !strings.Contains(tc.errOut.String(), "\n  "+cmd+" ") {
			t.Errorf("usage does not list %q", cmd)
		}
	}
	for _, code := range []string{"  3  reauthorization required", "  4  permission denied", "  5  unknown grant"} {
		if !strings.Contains(tc.errOut.String(), code) {
			t.Errorf("usage does not document exit code %q", code)
		}
	}

	tc = newTestCLI()
	if code := tc.run("help"); code != exitOK || !strings.HasPrefix(tc.out.String(), "tokend keeps") {
		t.Errorf("help: exit %d, %q", code, tc.out.String())
	}
	tc = newTestCLI()
	if code := tc.run("frobnicate"); code != exitUsage || !strings.Contains(tc.errOut.String(), `tokend: unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, tc.errOut.String())
	}
}

func TestVersion(t *testing.T) {
	tc := newTestCLI()
	if code := tc.run("version"); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if want := "tokend " + versionString() + " (" + runtime.Version() + ")\n"; tc.out.String() != want {
		t.Errorf("got %q, want %q", tc.out.String(), want)
	}
}

func TestToken(t *testing.T) {
	tokenJSON := `{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"expires_at":"2026-11-23T11:00:00Z"}`
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/demo":    {{200, "at-1\n"}},
		"GET /v1/tokens/a%2Fb":   {{200, tokenJSON}},
		"GET /v1/tokens/reauth":  {{409, `{"error":"reauthorization_required","error_description":"the refresh token was rejected"}`}},
		"GET /v1/tokens/secret":  {{403, `{"error":"forbidden","error_description":"uid 1000 may not read grant secret"}`}},
		"GET /v1/tokens/missing": {{404, `{"error":"not_found","error_description":"no grant named missing"}`}},
		"GET /v1/tokens/down":    {{503, `{"error":"temporarily_unavailable","error_description":"the provider is down and the token expired"}`}},
	})
	tests := []struct {
		name    string
		args    []string
		env     string
		code    int
		stdout  string
		stderr  string // substring
		request string
	}{
		{"flags after name", []string{"token", "demo", "--socket", f.socket}, "", 0, "at-1\n", "", "GET /v1/tokens/demo?format=raw"},
		{"flags before name", []string{"token", "--socket=" + f.socket, "demo"}, "", 0, "at-1\n", "", "GET /v1/tokens/demo?format=raw"},
		{"socket from the environment", []string{"token", "demo"}, f.socket, 0, "at-1\n", "", "GET /v1/tokens/demo?format=raw"},
		{"json", []string{"token", "a/b", "--json", "--socket", f.socket}, "", 0,
			"{\n  \"access_token\": \"at-1\",\n  \"token_type\": \"Bearer\",\n  \"expires_in\": 3599,\n  \"expires_at\": \"2026-11-23T11:00:00Z\"\n}\n", "", "GET /v1/tokens/a%2Fb"},
		{"reauthorization", []string{"token", "reauth", "--socket", f.socket}, "", exitReauth, "",
			"tokend: the refresh token was rejected (reauthorization_required); an operator must run: tokend authorize reauth --socket " + f.socket + "\n", "GET /v1/tokens/reauth?format=raw"},
		{"forbidden", []string{"token", "secret", "--socket", f.socket}, "", exitForbidden, "",
			"tokend: uid 1000 may not read grant secret (forbidden)\n", "GET /v1/tokens/secret?format=raw"},
		{"unknown grant", []string{"token", "missing", "--socket", f.socket}, "", exitNotFound, "", "no grant named missing", "GET /v1/tokens/missing?format=raw"},
		{"provider down", []string{"token", "down", "--socket", f.socket}, "", exitError, "", "the provider is down", "GET /v1/tokens/down?format=raw"},
		{"dash name after --", []string{"token", "--socket", f.socket, "--", "demo"}, "", 0, "at-1\n", "", "GET /v1/tokens/demo?format=raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCLI()
			if tt.env != "" {
				tc.env["TOKEND_SOCKET"] = tt.env
			}
			before := len(f.Calls())
			code := tc.run(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, tc.errOut.String())
			}
			if tc.out.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", tc.out.String(), tt.stdout)
			}
			if tt.stderr == "" && tc.errOut.Len() > 0 || !strings.Contains(tc.errOut.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", tc.errOut.String(), tt.stderr)
			}
			if n := strings.Count(tc.errOut.String(), "\n"); n > 1 {
				t.Errorf("error takes %d lines", n)
			}
			calls := f.Calls()[before:]
			if len(calls) != 1 || calls[0] != tt.request {
				t.Errorf("requests %q, want %q", calls, tt.request)
			}
		})
	}
}

func TestTokenUsageAndConnection(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"token"}, exitUsage, "tokend: token: missing grant NAME\nusage: tokend token NAME"},
		{[]string{"token", "a", "b"}, exitUsage, `tokend: token: unexpected argument "b"`},
		{[]string{"token", "a", "--bogus"}, exitUsage, "flag provided but not defined: -bogus"},
		{[]string{"token", "--bogus2"}, exitUsage, "usage: tokend token NAME"},
		{[]string{"token", "a", "--socket", filepath.Join(dir, "none.sock")}, exitError,
			"tokend: cannot connect to " + filepath.Join(dir, "none.sock") + ": is tokend running?\n"},
		{[]string{"status", "--socket", filepath.Join(dir, "none.sock")}, exitError, "is tokend running?"},
		{[]string{"status", "a", "b"}, exitUsage, `tokend: status: unexpected argument "b"`},
		{[]string{"refresh"}, exitUsage, "missing grant NAME"},
		{[]string{"revoke"}, exitUsage, "missing grant NAME"},
		{[]string{"authorize"}, exitUsage, "missing grant NAME"},
		{[]string{"version", "x"}, exitUsage, "unexpected argument"},
	}
	for _, tt := range tests {
		tc := newTestCLI()
		if code := tc.run(tt.args...); code != tt.code {
			t.Errorf("%q: exit %d, want %d", tt.args, code, tt.code)
		}
		if !strings.Contains(tc.errOut.String(), tt.stderr) {
			t.Errorf("%q: stderr %q, want %q", tt.args, tc.errOut.String(), tt.stderr)
		}
		if tc.out.Len() != 0 {
			t.Errorf("%q: stdout %q", tt.args, tc.out.String())
		}
	}
}

func TestStatusTable(t *testing.T) {
	list := `{"grants":[
	 {"name":"reports-api","type":"authorization_code","state":"valid","expires_at":"2026-11-23T10:12:03Z","last_success_at":"2026-11-23T09:55:00Z","generation":3},
	 {"name":"metrics","type":"client_credentials","state":"failing","expires_at":"2026-11-23T09:57:00Z","last_success_at":"2026-11-21T07:00:00Z","last_error":"oauth: refresh: server_error:\n upstream  down (HTTP 502)","consecutive_failures":4},
	 {"name":"ci","type":"device_code","state":"reauthorization_required"}]}`
	f := newFakeDaemon(t, map[string][]reply{"GET /v1/tokens": {{200, list}}})
	tc := newTestCLI()
	if code := tc.run("status", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	want := `GRANT        TYPE                STATE                     EXPIRES-IN      LAST-REFRESH  LAST-ERROR
reports-api  authorization_code  valid                     12m3s           5m ago        -
metrics      client_credentials  failing                   expired 3m ago  2d3h ago      oauth: refresh: server_error: upstream down (HTTP 502)
ci           device_code         reauthorization_required  -               -             -
`
	if tc.out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", tc.out.String(), want)
	}
	if got := f.Calls(); len(got) != 1 || got[0] != "GET /v1/tokens" {
		t.Errorf("requests %q", got)
	}

	tc = newTestCLI()
	if code := tc.run("status", "--json", "--socket", f.socket); code != 0 || !strings.Contains(tc.out.String(), `"name": "reports-api"`) {
		t.Errorf("--json: exit %d, %s", code, tc.out.String())
	}
}

func TestStatusDetails(t *testing.T) {
	st := `{"name":"reports-api","type":"authorization_code","provider":"corp","state":"failing","state_since":"2026-11-23T09:50:00Z",
	 "scope":"openid reports:read","expires_at":"2026-11-23T10:30:00Z","has_refresh_token":true,"refresh_token_expires_at":"2026-11-24T09:00:00Z",
	 "obtained_at":"2026-11-23T09:30:00Z","next_refresh_at":"2026-11-23T10:01:00Z","last_success_at":"2026-11-23T09:30:00Z",
	 "last_attempt_at":"2026-11-23T09:59:00Z","last_error":"oauth: refresh: temporarily_unavailable","last_error_code":"transient",
	 "consecutive_failures":2,"generation":7,"authorization":"authorized","authorization_at":"2026-11-22T10:00:00Z",
	 "history":[{"at":"2026-11-23T09:59:00Z","result":"transient","latency_ms":1500,"reason":"due","error":"oauth: refresh: temporarily_unavailable"},
	            {"at":"2026-11-23T09:30:00Z","result":"success","latency_ms":42,"reason":"manual"}]}`
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/reports-api/status": {{200, st}},
		"GET /v1/tokens/nope/status":        {{404, `{"error":"not_found","error_description":"no grant named nope"}`}},
	})
	tc := newTestCLI()
	if code := tc.run("status", "reports-api", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	want := `grant:          reports-api
type:           authorization_code
provider:       corp
state:          failing (since 2026-11-23T09:50:00Z (10m ago))
scope:          openid reports:read
expires:        2026-11-23T10:30:00Z (30m)
refresh token:  yes, expires 2026-11-24T09:00:00Z (23h)
obtained:       2026-11-23T09:30:00Z (30m ago)
next refresh:   2026-11-23T10:01:00Z (in 1m)
last success:   2026-11-23T09:30:00Z (30m ago)
last attempt:   2026-11-23T09:59:00Z (1m ago)
last error:     oauth: refresh: temporarily_unavailable (transient)
failures:       2 in a row
generation:     7
authorization:  authorized (2026-11-22T10:00:00Z (1d ago))

history, newest first:
AT                    RESULT     LATENCY  REASON  ERROR
2026-11-23T09:59:00Z  transient  1.5s     due     oauth: refresh: temporarily_unavailable
2026-11-23T09:30:00Z  success    42ms     manual  -
`
	if tc.out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", tc.out.String(), want)
	}

	tc = newTestCLI()
	if code := tc.run("status", "nope", "--socket", f.socket); code != exitNotFound {
		t.Errorf("unknown grant: exit %d", code)
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{400 * time.Millisecond, "0s"},
		{45 * time.Second, "45s"},
		{12*time.Minute + 3*time.Second, "12m3s"},
		{12 * time.Minute, "12m"},
		{3*time.Hour + 5*time.Minute + 59*time.Second, "3h5m"},
		{2 * time.Hour, "2h"},
		{51 * time.Hour, "2d3h"},
		{72 * time.Hour, "3d"},
	}
	for _, tt := range tests {
		if got := human(tt.d); got != tt.want {
			t.Errorf("human(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := expiresIn(testNow.Add(-3*time.Minute), testNow); got != "expired 3m ago" {
		t.Errorf("expiresIn = %q", got)
	}
}

func TestAuthorizeCode(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/authorize?state=xyz","expires_at":"2026-11-23T10:10:00Z"}`}},
	})
	tc := newTestCLI()
	if code := tc.run("authorize", "web", "--open", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	want := "Open this URL in a browser to authorize web:\n\n    https://id.example.com/authorize?state=xyz\n\n" +
		"This expires at 2026-11-23T10:10:00Z (in 10m).\nThen check with: tokend status web --socket " + f.socket + "\n"
	if tc.out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", tc.out.String(), want)
	}
	if len(tc.opened) != 1 || tc.opened[0] != "https://id.example.com/authorize?state=xyz" {
		t.Errorf("opened %q", tc.opened)
	}
}

func TestAuthorizeDeviceWait(t *testing.T) {
	pending := `{"name":"ci","state":"reauthorization_required","generation":1}`
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/ci/authorize": {{200, `{"grant":"ci","kind":"device_code","user_code":"WDJB-MJHT","verification_uri":"https://id.example.com/device","verification_uri_complete":"https://id.example.com/device?user_code=WDJB-MJHT","expires_at":"2026-11-23T10:15:00Z"}`}},
		"GET /v1/tokens/ci/status": {
			{200, pending}, // before authorizing
			{200, pending},
			{200, pending},
			{200, `{"name":"ci","state":"valid","generation":2,"expires_at":"2026-11-23T11:00:00Z"}`},
		},
	})
	tc := newTestCLI()
	if code := tc.run("authorize", "ci", "--wait", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	for _, want := range []string{"visit\n\n    https://id.example.com/device\n", "enter the code\n\n    WDJB-MJHT\n",
		"or open https://id.example.com/device?user_code=WDJB-MJHT\n", "Authorized. ci: valid, expires in 1h\n"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, tc.out.String())
		}
	}
	if tc.sleeps != 3 {
		t.Errorf("polled after %d sleeps, want 3", tc.sleeps)
	}
	if got := f.Calls(); len(got) != 5 {
		t.Errorf("requests %q", got)
	}
}

func TestAuthorizeWaitFailures(t *testing.T) {
	t.Run("denied", func(t *testing.T) {
		f := newFakeDaemon(t, map[string][]reply{
			"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/a"}`}},
			"GET /v1/tokens/web/status": {
				{200, `{"name":"web","state":"valid","generation":5,"authorization":"denied: old","authorization_at":"2026-11-20T00:00:00Z"}`},
				{200, `{"name":"web","state":"valid","generation":5,"authorization":"denied: access_denied","authorization_at":"2026-11-23T10:00:30Z"}`},
			},
		})
		tc := newTestCLI()
		code := tc.run("authorize", "web", "--wait", "--socket", f.socket)
		if code != exitError || !strings.Contains(tc.errOut.String(), "tokend: authorization of web failed: denied: access_denied") {
			t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
		}
		if tc.sleeps != 1 {
			t.Errorf("%d sleeps", tc.sleeps)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		f := newFakeDaemon(t, map[string][]reply{
			"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/a","expires_at":"2026-11-23T10:00:00Z"}`}},
			"GET /v1/tokens/web/status":     {{200, `{"name":"web","state":"expired","generation":5}`}},
		})
		tc := newTestCLI()
		code := tc.run("authorize", "web", "--wait", "--socket", f.socket)
		if code != exitError || !strings.Contains(tc.errOut.String(), "was not completed in time") {
			t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		f := newFakeDaemon(t, map[string][]reply{
			"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/a"}`}},
			"GET /v1/tokens/web/status":     {{200, `{"name":"web","state":"expired","generation":5}`}},
		})
		tc := newTestCLI()
		tc.sleep = func(ctx context.Context, d time.Duration) error { return context.Canceled }
		if code := tc.run("authorize", "web", "--wait", "--socket", f.socket); code != exitError || !strings.Contains(tc.errOut.String(), "stopped waiting") {
			t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
		}
	})
}

// TestAuthorizeWaitTimeout is a script's `authorize --wait --timeout D`:
// the wait ends at D after the start, with the clock advanced by the polls,
// not when the authorization expires 10 minutes later.
func TestAuthorizeWaitTimeout(t *testing.T) {
	for _, tt := range []struct {
		timeout string
		want    time.Duration
	}{{"8s", 8 * time.Second}, {"3s", 3 * time.Second}} {
		t.Run(tt.timeout, func(t *testing.T) {
			f := newFakeDaemon(t, map[string][]reply{
				"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/a","expires_at":"2026-11-23T10:10:00Z"}`}},
				"GET /v1/tokens/web/status":     {{200, `{"name":"web","state":"reauthorization_required","generation":5,"authorization":"pending","authorization_at":"2026-11-23T10:00:00Z"}`}},
			})
			tc := newTestCLI()
			var elapsed time.Duration
			tc.now = func() time.Time { return testNow.Add(elapsed) }
			tc.sleep = func(ctx context.Context, d time.Duration) error {
				if d <= 0 || d > pollInterval {
					t.Fatalf("slept %s", d)
				}
				elapsed += d
				if elapsed > 11*time.Minute {
					t.Fatalf("still waiting after %s", elapsed)
				}
				return ctx.Err()
			}
			code := tc.run("authorize", "web", "--wait", "--timeout", tt.timeout, "--socket", f.socket)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if elapsed != tt.want {
				t.Errorf("gave up after %s, want %s", elapsed, tt.want)
			}
			want := "tokend: the authorization of web was not completed within --timeout " + tt.timeout + "; it can still complete until 2026-11-23T10:10:00Z"
			if !strings.Contains(tc.errOut.String(), want) {
				t.Errorf("stderr %q lacks %q", tc.errOut.String(), want)
			}
		})
	}
}

func TestAuthorizeImmediate(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/m2m/authorize": {{200, `{"grant":"m2m","kind":"client_credentials","status":{"name":"m2m","state":"valid","expires_at":"2026-11-23T10:59:59Z"}}`}},
		"POST /v1/tokens/pw/authorize":  {{200, `{"grant":"pw","kind":"password","status":{"name":"pw","state":"failing","last_error":"oauth: token: invalid_client"}}`}},
	})
	tc := newTestCLI()
	if code := tc.run("authorize", "m2m", "--socket", f.socket); code != 0 || tc.out.String() != "m2m: valid, expires in 59m59s\n" {
		t.Errorf("exit %d, %q", code, tc.out.String())
	}
	tc = newTestCLI()
	if code := tc.run("authorize", "pw", "--socket", f.socket); code != exitError || tc.out.String() != "pw: failing; last error: oauth: token: invalid_client\n" {
		t.Errorf("exit %d, %q", code, tc.out.String())
	}
}

func TestRefreshRevoke(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/g/refresh": {{200, `{"name":"g","state":"valid","expires_at":"2026-11-23T11:00:00Z"}`}},
		"POST /v1/tokens/h/refresh": {{200, `{"name":"h","state":"reauthorization_required","expires_at":"2026-11-23T09:00:00Z","last_error":"oauth: refresh: invalid_grant"}`}},
		"POST /v1/tokens/x/refresh": {{403, `{"error":"forbidden","error_description":"operator actions need root or an operator group"}`}},
		"POST /v1/tokens/g/revoke":  {{200, `{"name":"g","type":"client_credentials","state":"expired","authorization":"revoked","authorization_at":"2026-11-23T10:00:00Z"}`}},
		"POST /v1/tokens/u/revoke":  {{200, `{"name":"u","type":"authorization_code","state":"reauthorization_required","authorization":"revoked","authorization_at":"2026-11-23T10:00:00Z"}`}},
		"POST /v1/tokens/p/revoke":  {{200, `{"name":"p","type":"authorization_code","state":"pending_authorization"}`}},
		"POST /v1/tokens/zz/revoke": {{404, `{"error":"not_found"}`}},
	})
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"refresh", "g"}, 0, "g: valid, expires in 1h\n", ""},
		{[]string{"refresh", "h"}, exitReauth, "h: reauthorization_required, token expired 1h ago; last error: oauth: refresh: invalid_grant\n", ""},
		{[]string{"refresh", "x"}, exitForbidden, "", "tokend: operator actions need root or an operator group (forbidden)\n"},
		// What happened, not the state alone ("g: expired" read as a
		// failure), and what comes next.
		{[]string{"revoke", "g"}, 0, "g: revoked: its tokens were revoked at the provider (where it offers revocation) and forgotten; the next fetch obtains a new one\n", ""},
		{[]string{"revoke", "u"}, 0, "u: revoked: its tokens were revoked at the provider (where it offers revocation) and forgotten; to use it again: tokend authorize u --socket " + f.socket + "\n", ""},
		{[]string{"revoke", "p"}, 0, "p: held no tokens; nothing to revoke (pending_authorization)\n", ""},
		{[]string{"revoke", "zz"}, exitNotFound, "", "tokend: not_found (HTTP 404)\n"},
	}
	for _, tt := range tests {
		tc := newTestCLI()
		code := tc.run(append(tt.args, "--socket", f.socket)...)
		if code != tt.code || tc.out.String() != tt.stdout || tc.errOut.String() != tt.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, tc.out.String(), tc.errOut.String())
		}
	}
}

const goodConfig = `
store:
  path: STORE
providers:
  corp: {issuer: "https://id.example.com"}
clients:
  app: {provider: corp, client_id: tokend, client_secret_file: SECRET}
grants:
  g: {client: app, type: client_credentials, readers: {users: [root]}}
`

func writeConfig(t *testing.T, dir, yml string) string {
	t.Helper()
	secret := filepath.Join(dir, "app.secret")
	if err := os.WriteFile(secret, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml = strings.NewReplacer("STORE", filepath.Join(dir, "tokend.db"), "SECRET", secret).Replace(yml)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckConfig(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	path := writeConfig(t, dir, goodConfig)
	tc := newTestCLI()
	if code := tc.run("check-config", path); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	for _, want := range []string{"store:     " + filepath.Join(dir, "tokend.db") + " (unsealed", "  g: client_credentials via client app (provider corp)", path + ": OK\n"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, tc.out.String())
		}
	}
	if strings.Contains(tc.out.String(), "s3cr3t") {
		t.Error("the secret is printed")
	}

	bad := writeConfig(t, t.TempDir(), goodConfig+"  h: {client: nope, type: implicit}\nrefresh: {fraction: 2}\n")
	tc = newTestCLI()
	if code := tc.run("check-config", "--config", bad); code != exitError {
		t.Errorf("bad config: exit %d", code)
	}
	errs := tc.errOut.String()
	for _, want := range []string{
		bad + `:10: grants.h.client: client "nope" is not defined`,
		bad + `:10: grants.h.type: unknown grant type "implicit"`,
		bad + `:11: refresh.fraction: 2 must be between 0 and 1`,
		"tokend: 3 problems in " + bad + "\n",
		"warning: " + bad + ":10: grants.h.readers: no readers",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}

	// A missing secret file fails, unless secrets are skipped.
	if err := os.Remove(filepath.Join(dir, "app.secret")); err != nil {
		t.Fatal(err)
	}
	tc = newTestCLI()
	if code := tc.run("check-config", path); code != exitError || !strings.Contains(tc.errOut.String(), "clients.app.client_secret_file: cannot read") {
		t.Errorf("missing secret: exit %d, %s", code, tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("check-config", path, "--skip-secrets"); code != 0 {
		t.Errorf("--skip-secrets: exit %d, %s", code, tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("check-config", filepath.Join(dir, "none.yaml")); code != exitError || !strings.Contains(tc.errOut.String(), "no such file") {
		t.Errorf("missing file: exit %d, %s", code, tc.errOut.String())
	}
}

func TestRekey(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	keyA, keyB := bytes.Repeat([]byte{0xa}, 32), bytes.Repeat([]byte{0xb}, 32)
	for name, k := range map[string][]byte{"a.key": keyA, "b.key": keyB} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hex.EncodeToString(k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := filepath.Join(dir, "tokend.db")
	s, err := store.Open(store.Options{Path: dbPath, Key: keyA})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(store.Token{Grant: "g", AccessToken: "at-secret", State: "valid"}, nil); err != nil {
		t.Fatal(err)
	}

	cfg := writeConfig(t, dir, strings.Replace(goodConfig, "store:\n", "store:\n  key_file: "+filepath.Join(dir, "a.key")+"\n", 1))
	newKey := filepath.Join(dir, "b.key")

	// While the store is open (a running daemon), rekey refuses.
	tc := newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--new-key-file", newKey); code != exitError || !strings.Contains(tc.errOut.String(), "is in use, probably by the running daemon: stop it first") {
		t.Fatalf("locked: exit %d, %s", code, tc.errOut.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--new-key-file", newKey); code != 0 {
		t.Fatalf("rekey: exit %d, %s", code, tc.errOut.String())
	}
	if !strings.Contains(tc.out.String(), "key_file: "+newKey) {
		t.Errorf("instructions: %s", tc.out.String())
	}
	if _, err := store.Open(store.Options{Path: dbPath, Key: keyA}); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("old key still opens the store: %v", err)
	}
	s, err = store.Open(store.Options{Path: dbPath, Key: keyB})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := s.Token("g"); err != nil || tok.AccessToken != "at-secret" {
		t.Errorf("token after rekey: %v", err)
	}
	s.Close()

	// The config still names key A: the store now refuses it.
	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--decrypt"); code != exitError || !strings.Contains(tc.errOut.String(), "the current key does not open") {
		t.Fatalf("wrong old key: exit %d, %s", code, tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--decrypt", "--old-key-file", newKey); code != 0 {
		t.Fatalf("decrypt: exit %d, %s", code, tc.errOut.String())
	}
	s, err = store.Open(store.Options{Path: dbPath})
	if err != nil {
		t.Fatalf("unsealed store: %v", err)
	}
	if s.Encrypted() {
		t.Error("still encrypted")
	}
	s.Close()

	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg); code != exitUsage {
		t.Errorf("no mode: exit %d", code)
	}
	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--decrypt", "--new-key-file", newKey); code != exitUsage {
		t.Errorf("both modes: exit %d", code)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args []string
		pos  []string
		json bool
	}{
		{[]string{"a", "--json"}, []string{"a"}, true},
		{[]string{"--json", "a", "b"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "--json"}, []string{"a", "--json"}, false},
		{nil, nil, false},
	}
	for _, tt := range tests {
		tc := newTestCLI()
		fs := tc.flagSet("x", "x")
		j := fs.Bool("json", false, "")
		pos, _, ok := tc.parseArgs(fs, tt.args)
		if !ok || strings.Join(pos, ",") != strings.Join(tt.pos, ",") || *j != tt.json {
			t.Errorf("parseArgs(%q) = %q, json %v, ok %v", tt.args, pos, *j, ok)
		}
	}
}

// A program that does not exist is named once, without Go's "exec:"
// prefix repeated.
func TestExecMissingProgram(t *testing.T) {
	tc := newTestCLI()
	code := tc.run("exec", "x", "--", "/nonexistent")
	if code != 127 {
		t.Errorf("exit %d", code)
	}
	if want := "tokend: exec: cannot run /nonexistent: no such file or directory\n"; tc.errOut.String() != want {
		t.Errorf("stderr %q, want %q", tc.errOut.String(), want)
	}
	tc = newTestCLI()
	tc.run("exec", "x", "--", "no-such-program-tokend")
	if strings.Count(tc.errOut.String(), "exec:") != 1 || !strings.Contains(tc.errOut.String(), "no-such-program-tokend: executable file not found in $PATH") {
		t.Errorf("stderr %q", tc.errOut.String())
	}
}

// The commands a message suggests keep the --socket the user gave, so
// they work when pasted; a socket from $TOKEND_SOCKET needs no flag.
func TestHintsKeepTheSocket(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/demo-user":      {{409, `{"error":"pending_authorization","error_description":"this grant has never been authorized: a person must run tokend authorize demo-user"}`}},
		"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"https://id.example.com/authorize?state=xyz","expires_at":"2026-11-23T10:10:00Z"}`}},
	})
	tc := newTestCLI()
	if code := tc.run("token", "demo-user", "--socket", f.socket); code != exitReauth {
		t.Errorf("exit %d", code)
	}
	if want := "tokend: this grant has never been authorized: a person must run tokend authorize demo-user --socket " + f.socket + " (pending_authorization)\n"; tc.errOut.String() != want {
		t.Errorf("stderr %q, want %q", tc.errOut.String(), want)
	}
	tc = newTestCLI()
	tc.env["TOKEND_SOCKET"] = f.socket
	tc.run("authorize", "web")
	if !strings.Contains(tc.out.String(), "Then check with: tokend status web\n") {
		t.Errorf("stdout %q", tc.out.String())
	}
	tc = newTestCLI()
	sock := f.socket + " x"
	if err := os.Symlink(f.socket, sock); err != nil {
		t.Fatal(err)
	}
	tc.run("authorize", "-socket", sock, "web")
	if !strings.Contains(tc.out.String(), "Then check with: tokend status web --socket '"+sock+"'\n") {
		t.Errorf("stdout %q", tc.out.String())
	}
}

// authorize --paste: the authorization server's URL alone on stdout's first
// line, instructions on stderr, one line read from stdin and completed with
// the paste id.
func TestAuthorizePaste(t *testing.T) {
	const authURL = "https://id.example.com/authorize?client_id=c&state=xyz"
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/web/authorize":          {{200, `{"grant":"web","kind":"authorization_code","url":"` + authURL + `","expires_at":"2026-11-23T10:10:00Z","paste_id":"pid-1"}`}},
		"POST /v1/tokens/web/authorize/complete": {{200, `{"name":"web","state":"valid","expires_at":"2026-11-23T11:00:00Z"}`}},
	})
	tc := newTestCLI()
	old := stdinOf
	stdinOf = strings.NewReader("http://127.0.0.1:8785/callback?code=c1&state=xyz\n")
	defer func() { stdinOf = old }()
	if code := tc.run("authorize", "web", "--paste", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	first, rest, _ := strings.Cut(tc.out.String(), "\n")
	if first != authURL || !strings.HasPrefix(rest, "web: valid") {
		t.Fatalf("stdout:\n%s", tc.out.String())
	}
	if !strings.Contains(tc.errOut.String(), "paste it here") {
		t.Errorf("no instructions on stderr: %q", tc.errOut.String())
	}
	f.mu.Lock()
	bodies := f.bodies
	f.mu.Unlock()
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"paste":true`) ||
		bodies[1] != `{"paste_id":"pid-1","url":"http://127.0.0.1:8785/callback?code=c1\u0026state=xyz"}` {
		t.Fatalf("bodies sent: %q", bodies)
	}

	// Nothing pasted: an error, and nothing completed.
	f2 := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"` + authURL + `","paste_id":"pid-2"}`}},
	})
	tc = newTestCLI()
	stdinOf = strings.NewReader("")
	if code := tc.run("authorize", "web", "--paste", "--socket", f2.socket); code != exitError || !strings.Contains(tc.errOut.String(), "no address was pasted") {
		t.Fatalf("empty stdin: exit %d, %s", code, tc.errOut.String())
	}
	if calls := f2.Calls(); len(calls) != 1 {
		t.Fatalf("requests %q", calls)
	}
}

// tokend status NAME says which scopes a step-up asks for, and why.
func TestStatusStepUp(t *testing.T) {
	st := `{"name":"notes","type":"authorization_code","provider":"resource:notes","state":"reauthorization_required",
	 "protected_resource":"https://mcp.example.com/mcp","step_up_scopes":["notes:write","notes:admin"],
	 "step_up_reason":"a resource asked for scope \"notes:write\" (403 insufficient_scope) at 2026-11-23T09:59:00Z","generation":1}`
	f := newFakeDaemon(t, map[string][]reply{"GET /v1/tokens/notes/status": {{200, st}}})
	tc := newTestCLI()
	if code := tc.run("status", "notes", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	for _, want := range []string{
		"protected resource:  https://mcp.example.com/mcp\n",
		"step-up scopes:      notes:write notes:admin (the next tokend authorize notes asks for them too)\n",
		`step-up reason:      a resource asked for scope "notes:write" (403 insufficient_scope) at 2026-11-23T09:59:00Z` + "\n",
	} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, tc.out.String())
		}
	}
}
