package api

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// socketPath returns a path for a socket nobody listens on yet.
func socketPath(t testing.TB) string {
	t.Helper()
	dir := testutil.ShortDir(t)
	return filepath.Join(dir, "s")
}

// serveTokenAt serves a token answer on path from now on.
func serveTokenAt(t testing.TB, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Error(err)
		return
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"access_token":"after-the-restart","token_type":"Bearer"}`))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func TestRideOutRestartsWaitsForTheDaemon(t *testing.T) {
	path := socketPath(t)
	c := NewClient(path)
	c.RideOutRestarts(20 * time.Second)
	// The daemon comes back a moment after the request was made (real
	// time: the client's backoff sleeps).
	go func() {
		time.Sleep(300 * time.Millisecond)
		serveTokenAt(t, path)
	}()
	start := time.Now()
	tok, err := c.Token(context.Background(), "notes")
	if err != nil {
		t.Fatalf("Token while the daemon restarts: %v", err)
	}
	if tok.AccessToken != "after-the-restart" || time.Since(start) < 250*time.Millisecond {
		t.Errorf("Token = %+v after %v: want the restarted daemon's answer", tok, time.Since(start))
	}
}

func TestRideOutRestartsIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wait   time.Duration
		ctx    time.Duration
		within time.Duration
	}{
		{"without it, at once", 0, time.Minute, 200 * time.Millisecond},
		{"by its own limit", 400 * time.Millisecond, time.Minute, 3 * time.Second},
		{"by the request's context", time.Minute, 400 * time.Millisecond, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClient(socketPath(t))
			c.RideOutRestarts(tc.wait)
			ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
			defer cancel()
			start := time.Now()
			_, err := c.Token(ctx, "notes")
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "is tokend running?") {
				t.Errorf("Token with no daemon: %v, want it said the daemon is not running", err)
			}
			if took > tc.within {
				t.Errorf("Token with no daemon gave up after %v, want within %v", took, tc.within)
			}
			if tc.wait > 0 && took < 200*time.Millisecond {
				t.Errorf("Token with no daemon gave up after %v: it did not wait", took)
			}
		})
	}
}
