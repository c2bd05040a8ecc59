package sinks

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

var tokendBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithTokend(m, "sinks", false, &tokendBin, nil))
}

const (
	clientID     = "sinks-client"
	clientSecret = "sinks-client-secret-0123456789"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test plays other users")
	}
}

func newProvider(t *testing.T, ttl time.Duration) *devprovider.Server {
	t.Helper()
	prov := devprovider.New(devprovider.Options{
		AccessTTL: ttl,
		Clients:   []devprovider.Client{{ID: clientID, Secret: clientSecret, AuthMethod: devprovider.AuthMethodBasic}},
	})
	t.Cleanup(prov.Close)
	return prov
}

// Refresh sections: rotatingRefresh refreshes short tokens at half their
// life; quietRefresh wakes the scheduler every 15 s only.
var (
	rotatingRefresh = []string{`schedule: "@every 1s"`, "fraction: 0.5", "jitter: 0.01", "min_remaining: 1s"}
	quietRefresh    = []string{`schedule: "@every 15s"`}
)

// writeConfig writes tokend's configuration: the refresh section's lines,
// and one client_credentials grant "g" whose sinks are the YAML list items
// given (already indented).
func writeConfig(t *testing.T, dir, issuer string, refresh []string, sinks string) string {
	t.Helper()
	secretFile := filepath.Join(dir, "client.secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testutil.TokendConfig{
		Store:    []string{"path: " + filepath.Join(dir, "tokend.db")},
		Socket:   filepath.Join(dir, "tokend.sock"),
		Callback: "off",
		Metrics:  "off",
		Refresh:  refresh,
		LogLevel: "debug",
		Provider: "p", Issuer: issuer,
		Clients: "  c:\n    provider: p\n    client_id: " + clientID + "\n    client_secret_file: " + secretFile + "\n",
		Grants:  "  g:\n    client: c\n    type: client_credentials\n    scopes: [read]\n    sinks:\n" + sinks,
	}.Write(t, filepath.Join(dir, "config.yaml"))
}

// start runs tokend serve and waits until its socket answers.
func start(t *testing.T, cfgPath, logPath string, ac *api.Client) *testutil.LoggedTokend {
	t.Helper()
	return testutil.ServeTokendLogged(t, tokendBin, cfgPath, logPath, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := ac.List(ctx)
		return err
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitFor polls cond (another process's doing) until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bearerTarget is a loopback HTTP server, what a sink's reader sends its
// token to: it answers body to requests bearing a token the provider
// considers valid, 401 to the others, and counts both.
type bearerTarget struct {
	addr               string
	accepted, rejected atomic.Int64

	mu   sync.Mutex
	seen map[string]bool
}

// startBearerTarget serves a bearerTarget until the test ends.
func startBearerTarget(t *testing.T, prov *devprovider.Server, body string) *bearerTarget {
	t.Helper()
	bt := &bearerTarget{seen: map[string]bool{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !prov.Valid(tok) {
			bt.rejected.Add(1)
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		bt.accepted.Add(1)
		bt.mu.Lock()
		bt.seen[tok] = true
		bt.mu.Unlock()
		io.WriteString(w, body)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bt.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return bt
}

// tokens is how many distinct valid tokens the target has seen.
func (bt *bearerTarget) tokens() int {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return len(bt.seen)
}

// sinkDir makes a root-owned 0755 directory for sinks.
func sinkDir(t *testing.T) string {
	dir := filepath.Join(testutil.SharedDir(t), "sinks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
