package hook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
)

// countingMetrics counts hook runs by "hook/result".
type countingMetrics struct{ testutil.Counts }

func (m *countingMetrics) ObserveHook(hook, result string, _ time.Duration) {
	m.Add(hook + "/" + result)
}

func testEngine(m Metrics) Engine {
	return Engine{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WarnLimited: func(string, string, ...any) {}, Metrics: m}
}

func TestSign(t *testing.T) {
	mac := hmac.New(sha256.New, []byte("k"))
	mac.Write([]byte("1700000000.{}"))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if got := Sign([]byte("k"), "1700000000", []byte("{}")); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// TestConfigureKeepsUnchangedRunner: a reload keeps the runner (and so
// the queue and its order) of a hook whose configuration did not change.
func TestConfigureKeepsUnchangedRunner(t *testing.T) {
	s := NewSet(testEngine(nil))
	defer s.Stop()
	a := config.Hook{Name: "a", Events: []string{config.EventRevoked}, Command: []string{"true"}, Timeout: time.Second}
	b := config.Hook{Name: "b", Events: []string{config.EventRevoked}, Command: []string{"true"}, Timeout: time.Second}
	s.Configure([]config.Hook{a, b})
	ra, rb := s.runners[0], s.runners[1]
	b.Command = []string{"false"}
	s.Configure([]config.Hook{a, b})
	if s.runners[0] != ra {
		t.Error("an unchanged hook got a new runner")
	}
	if s.runners[1] == rb {
		t.Error("a changed hook kept its runner")
	}
}

// TestEmitRunsCommandWithEvent: a command hook that wants the event gets
// it in TOKEND_EVENT_* variables; one that does not want it is not run.
func TestEmitRunsCommandWithEvent(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	m := &countingMetrics{}
	s := NewSet(testEngine(m))
	defer s.Stop()
	s.Configure([]config.Hook{
		{Name: "env", Events: []string{config.EventRevoked}, Command: []string{"sh", "-c", "env > " + out}},
		{Name: "other", Events: []string{config.EventRefreshed}, Command: []string{"sh", "-c", "touch " + filepath.Join(dir, "other")}},
	})
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s.Emit(Event{Event: config.EventRevoked, Grant: "g", State: "revoked", Time: at, Generation: 7})
	for deadline := time.Now().Add(10 * time.Second); m.Get("env/success") != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the hook was not delivered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(b), "\n")
	for _, kv := range []string{"TOKEND_EVENT_NAME=revoked", "TOKEND_EVENT_GRANT=g", "TOKEND_EVENT_STATE=revoked",
		"TOKEND_EVENT_TIME=2026-12-07T10:00:00Z", "TOKEND_EVENT_GENERATION=7", "TOKEND_EVENT_EXPIRES_AT="} {
		if !slices.Contains(env, kv) {
			t.Errorf("the command's environment lacks %s", kv)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); !os.IsNotExist(err) {
		t.Errorf("a hook that does not want the event ran: %v", err)
	}
}

// TestEmitAfterStop: a stopped set takes no more events.
func TestEmitAfterStop(t *testing.T) {
	m := &countingMetrics{}
	s := NewSet(testEngine(m))
	s.Configure([]config.Hook{{Name: "h", Events: []string{config.EventRevoked}, Command: []string{"true"}}})
	if !s.Stop() {
		t.Fatal("Stop with nothing running did not end")
	}
	s.Emit(Event{Event: config.EventRevoked, Grant: "g"})
	if r := s.runners[0]; r.running || len(r.queue) != 0 {
		t.Error("a stopped set queued an event")
	}
}

// TestWebhookBackoffDoubles: a webhook that keeps failing is tried four
// times, waiting on the engine's clock 1 s, then 2 s, then 4 s.
func TestWebhookBackoffDoubles(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var mu sync.Mutex
	var waits []time.Duration
	m := &countingMetrics{}
	eng := testEngine(m)
	eng.Wait = func(_ context.Context, d time.Duration) bool {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return true
	}
	s := NewSet(eng)
	defer s.Stop()
	s.Configure([]config.Hook{{Name: "web", Events: []string{config.EventRevoked}, URL: srv.URL, Secret: oauth.NewSecret("k"), Timeout: time.Second}})
	s.Emit(Event{Event: config.EventRevoked, Grant: "g"})
	deadline := time.Now().Add(10 * time.Second)
	for m.Get("web/failure") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the delivery did not give up")
		}
		time.Sleep(2 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := requests.Load(); n != attempts || !slices.Equal(waits, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Fatalf("%d requests, waits %v: want %d, and 1s 2s 4s", n, waits, attempts)
	}
}
