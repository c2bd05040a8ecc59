package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/server"
)

// tokend proxy takes the grant's token from the socket, and a new one
// through POST …/rejected when the resource refuses it. It forwards to the
// grant's protected resource.
func TestProxyCommandThroughTheSocket(t *testing.T) {
	up, seen := proxyUpstream(t)
	status := `{"name":"notes","type":"authorization_code","provider":"p","state":"valid","generation":1,"protected_resource":"` + up.URL + `/mcp"}`
	tc := runProxyCommand(t, status, "/")
	got := seen()
	if len(got) != 2 || got[0] != "/mcp Bearer tok-1" || got[1] != "/mcp Bearer tok-2" {
		t.Errorf("resource saw %q", got)
	}
	if strings.Contains(tc.errOut.String(), "tok-") {
		t.Errorf("a token was printed: %s", tc.errOut.String())
	}
}

// --upstream wins over the grant's protected resource.
func TestProxyCommandUpstreamFlag(t *testing.T) {
	up, seen := proxyUpstream(t)
	status := `{"name":"notes","type":"authorization_code","provider":"p","state":"valid","generation":1,"protected_resource":"https://elsewhere.invalid/mcp"}`
	runProxyCommand(t, status, "/x", "--upstream", up.URL+"/v2")
	if got := seen(); len(got) != 2 || got[0] != "/v2/x Bearer tok-1" || got[1] != "/v2/x Bearer tok-2" {
		t.Errorf("resource saw %q", got)
	}
}

// A grant without a protected resource needs --upstream; nothing listens.
func TestProxyCommandWithoutProtectedResource(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/notes/status": {{200, `{"name":"notes","type":"authorization_code","provider":"p","state":"valid","generation":1}`}},
	})
	sock := filepath.Join(filepath.Dir(f.socket), "proxy.sock")
	tc := newTestCLI()
	if code := tc.run("proxy", "notes", "--listen", sock, "--socket", f.socket); code != exitUsage || !strings.Contains(tc.errOut.String(), "grant notes has no protected_resource: give --upstream URL") {
		t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("%s was created", sock)
	}
}

// proxyUpstream is a resource that refuses tok-1; seen lists "path
// Authorization" of each request it got.
func proxyUpstream(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var reqs []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	return up, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), reqs...)
	}
}

// runProxyCommand runs tokend proxy notes on a unix socket against a
// fake daemon answering status with the given grant status, sends one GET
// of path through it, and stops it.
func runProxyCommand(t *testing.T, status, path string, args ...string) *testCLI {
	t.Helper()
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/notes/status":    {{200, status}},
		"GET /v1/tokens/notes":           {{200, `{"access_token":"tok-1","token_type":"Bearer","expires_in":60}`}},
		"POST /v1/tokens/notes/rejected": {{200, `{"access_token":"tok-2","token_type":"Bearer","expires_in":60}`}},
	})
	sock := filepath.Join(filepath.Dir(f.socket), "proxy.sock")
	tc := newTestCLI()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- tc.cli.run(ctx, append([]string{"proxy", "notes", "--listen", sock, "--socket", f.socket}, args...))
	}()
	hc := testutil.UnixHTTPClient(sock, 0)
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err = hc.Get("http://proxy" + path); err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("tokend proxy ended with %d: %s", code, tc.errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d: %s", code, tc.errOut.String())
	}
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, b)
	}
	return tc
}

// The proxy admits the user running it alone.
func TestProxyCommandAdmitsItsOwnUserOnly(t *testing.T) {
	s := &clientSource{cl: &api.WaitingClient{Client: api.NewClient("/nonexistent")}, uid: uint32(os.Getuid())}
	_, err := s.Token(context.Background(), server.Caller{UID: uint32(os.Getuid()) + 1}, "notes")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("another uid: %v", err)
	}
	if _, err := s.Token(context.Background(), server.Caller{UID: uint32(os.Getuid())}, "notes"); errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		t.Errorf("own uid refused: %v", err)
	}
}

func TestProxyCommandUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "notes", "--upstream", "https://r.example.com"}, "--listen ADDR is required"},
		{[]string{"proxy", "notes", "--listen", "0.0.0.0:8790", "--upstream", "https://r.example.com"}, "only a loopback IP address"},
		{[]string{"proxy", "--listen", "127.0.0.1:8790", "--upstream", "https://r.example.com"}, "missing grant NAME"},
	} {
		tc := newTestCLI()
		if code := tc.run(c.args...); code != exitUsage || !strings.Contains(tc.errOut.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, tc.errOut.String())
		}
	}
}

// While the daemon's socket is gone (a restart) a request waits and is
// answered once it is back (how long, and which calls, the
// TestWaitingClient... tests of package api say).
func TestProxyCommandWaitsForTheDaemon(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/notes": {{200, `{"access_token":"tok-1","token_type":"Bearer","expires_in":60}`}},
	})
	away := f.socket + ".away"
	if err := os.Rename(f.socket, away); err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	s := &clientSource{cl: &api.WaitingClient{Client: api.NewClient(f.socket), Wait: daemonWait, Try: time.Second,
		Sleep: func(_ context.Context, d time.Duration) error {
			slept = append(slept, d)
			if len(slept) == 3 {
				return os.Rename(away, f.socket)
			}
			return nil
		}}, uid: uint32(os.Getuid())}
	tr, err := s.Token(context.Background(), server.Caller{UID: uint32(os.Getuid())}, "notes")
	if err != nil || tr.AccessToken != "tok-1" {
		t.Fatalf("token %+v, %v", tr, err)
	}
	if len(slept) != 3 {
		t.Errorf("waited %v, want 3 waits", slept)
	}
}
