package server

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/internal/testutil"
)

// fakeEngine serves one grant, cc, whose token anyone may read; every
// callback is refused as unknown; the rest is not supported.
type fakeEngine struct{}

var errNotHere = &engine.Error{Kind: engine.NotSupported, Code: api.CodeNotSupported, Description: "not in this test"}

func (fakeEngine) Access(_ Caller, grant string, write bool) error {
	if grant != "cc" || write {
		return &engine.Error{Kind: engine.Forbidden, Code: api.CodeForbidden, Description: "no", Refusal: true}
	}
	return nil
}
func (fakeEngine) List(Caller) api.TokenList { return api.TokenList{} }
func (e fakeEngine) Token(_ context.Context, c Caller, grant string) (api.TokenResponse, error) {
	if err := e.Access(c, grant, false); err != nil {
		return api.TokenResponse{}, err
	}
	return api.TokenResponse{AccessToken: "tok", TokenType: "Bearer", ExpiresIn: 60, ExpiresAt: time.Now().Add(time.Minute).UTC()}, nil
}
func (fakeEngine) Status(Caller, string) (api.GrantStatus, error) {
	return api.GrantStatus{}, errNotHere
}
func (fakeEngine) Refresh(context.Context, Caller, string) (api.GrantStatus, error) {
	return api.GrantStatus{}, errNotHere
}
func (fakeEngine) Authorize(context.Context, Caller, string, api.AuthorizeRequest) (*api.AuthorizeResponse, error) {
	return nil, errNotHere
}
func (fakeEngine) CompletePaste(context.Context, Caller, string, api.CompleteRequest) (api.GrantStatus, error) {
	return api.GrantStatus{}, errNotHere
}
func (fakeEngine) Rejected(context.Context, Caller, string, api.RejectedRequest) (api.TokenResponse, error) {
	return api.TokenResponse{}, errNotHere
}
func (fakeEngine) StepUp(Caller, string, api.StepUpRequest) (api.GrantStatus, error) {
	return api.GrantStatus{}, errNotHere
}
func (fakeEngine) Revoke(context.Context, Caller, string) (api.GrantStatus, error) {
	return api.GrantStatus{}, errNotHere
}
func (fakeEngine) ReloadFor(Caller) (*api.ReloadResponse, error) { return nil, errNotHere }
func (fakeEngine) Proof(context.Context, Caller, string, api.DPoPRequest) (*api.DPoPResponse, error) {
	return nil, errNotHere
}
func (fakeEngine) OpenStartPage(string) (engine.StartPage, error) {
	return engine.StartPage{}, &engine.Error{Kind: engine.BadRequest, Code: engine.CodeAuthorizationFailed, Description: "unknown"}
}
func (fakeEngine) CompleteAuthorization(context.Context, url.Values, string) (string, error) {
	return "", &engine.Error{Kind: engine.BadRequest, Code: engine.CodeAuthorizationFailed, Description: "unknown"}
}
func (fakeEngine) RedirectURIs() []string   { return nil }
func (fakeEngine) Ready() error             { return nil }
func (fakeEngine) FetchWait() time.Duration { return 5 * time.Second }

// testServers are Servers of a fakeEngine, listening and serving.
type testServers struct {
	*Servers
	http *http.Client
}

// runServers listens and serves the servers of sc over a fakeEngine, on a
// socket in a temporary directory, the callback on a loopback port and
// what edit changes, until the test ends.
func runServers(t *testing.T, sc Config, edit func(*config.Config)) *testServers {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{Listen: config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"}}
	if edit != nil {
		edit(cfg)
	}
	if sc.Engine == nil {
		sc.Engine = fakeEngine{}
	}
	s := New(sc)
	if err := s.Listen(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		s.Shutdown(sctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	sock := s.SocketAddr()
	return &testServers{Servers: s, http: &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}}
}

// get GETs path on the socket.
func (s *testServers) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := s.http.Get("http://tokend" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// statusOfGet is the status of a GET of u.
func statusOfGet(t *testing.T, u string) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitFor waits (on real time: the servers' goroutines run on their
// own) until cond holds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testutil.Eventually(tb, 10*time.Second, 2*time.Millisecond, what, func() error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// The servers serve the socket API from the engine, refuse a grant the
// engine refuses, and remove the socket they created once they stop.
func TestServersServeTheEngine(t *testing.T) {
	s := runServers(t, Config{}, nil)
	if code, body := s.get(t, "/v1/tokens/cc"); code != http.StatusOK {
		t.Fatalf("GET cc: %d %s", code, body)
	}
	if code, _ := s.get(t, "/v1/tokens/other"); code != http.StatusForbidden {
		t.Fatalf("GET other: %d, want 403", code)
	}
	if code := statusOfGet(t, "http://"+s.CallbackAddr()+"/callback?state=x&code=y"); code != http.StatusBadRequest {
		t.Fatalf("callback: %d, want 400", code)
	}
}

// A listener that cannot be bound leaves nothing bound behind it: not the
// socket file created before it.
func TestServersListenFailureRemovesTheSocket(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	sock := filepath.Join(t.TempDir(), "t.sock")
	s := New(Config{Engine: fakeEngine{}})
	err = s.Listen(&config.Config{Listen: config.Listen{Socket: sock, Callback: taken.Addr().String(), Metrics: "off"}})
	if err == nil || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("Listen = %v, want the callback's port in use", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket file is left behind: %v", err)
	}
}
