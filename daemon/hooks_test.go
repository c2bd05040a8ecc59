package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/hook"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
)

// hookMetrics counts hook deliveries by hook and result.
type hookMetrics struct {
	nopMetrics
	mu   sync.Mutex
	runs map[string]int
}

func (m *hookMetrics) ObserveHook(hook, result string, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runs == nil {
		m.runs = map[string]int{}
	}
	m.runs[hook+"/"+result]++
}

func (m *hookMetrics) count(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runs[key]
}

// readLines returns the lines of path, none when it does not exist yet.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// assertNoToken fails if any token the provider issued appears in text.
func assertNoToken(t *testing.T, prov *devprovider.Server, what, text string) {
	t.Helper()
	issued := prov.Issued()
	if len(issued) == 0 {
		t.Fatal("the provider issued no token")
	}
	for _, tok := range issued {
		if tok != "" && strings.Contains(text, tok) {
			t.Fatalf("%s contains an issued token", what)
		}
	}
}

// A command hook sees every event of a grant, in order, with the
// TOKEND_EVENT_* variables and without any token in its environment.
func TestHookCommandOrderAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := fmt.Sprintf(`printf '%%s %%s %%s %%s\n' "$TOKEND_EVENT_NAME" "$TOKEND_EVENT_GRANT" "$TOKEND_EVENT_GENERATION" "$TOKEND_EVENT_STATE" >> '%s'; env > '%s/env.'"$TOKEND_EVENT_ID"`, out, dir)
	m := &hookMetrics{}
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Name: "log", Events: config.HookEvents, Command: []string{"sh", "-c", script}}}
	}})
	h.startWith(Options{Metrics: m})
	g := h.d.grant("cc")

	// Phase 1: many refreshes back to back.
	const n = 40
	for range n {
		if _, err := h.d.refresh(g, "manual"); err != nil {
			t.Fatal(err)
		}
	}
	last := g.cur.Load().Generation
	// Phase 2: a failing round that recovers, then a revocation.
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault503, Times: 1})
	done := make(chan error, 1)
	go func() { _, err := h.d.refresh(g, "manual"); done <- err }()
	waitFor(t, "a round backing off", g.backingOff.Load)
	h.clock.Advance(2 * time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := h.d.revoke(context.Background(), g); err != nil {
		t.Fatal(err)
	}

	var want []string
	for gen := uint64(1); gen <= last; gen++ {
		want = append(want, fmt.Sprintf("refreshed cc %d valid", gen))
	}
	want = append(want,
		fmt.Sprintf("failing cc %d failing", last),
		fmt.Sprintf("refreshed cc %d valid", last+1),
		fmt.Sprintf("recovered cc %d valid", last+1),
		fmt.Sprintf("revoked cc %d expired", last+1),
	)
	waitFor(t, "every event delivered", func() bool { return len(readLines(t, out)) >= len(want) })
	got := readLines(t, out)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	waitFor(t, "every run counted", func() bool { return m.count("log/success") == len(want) })

	envs, _ := filepath.Glob(filepath.Join(dir, "env.*"))
	if len(envs) != len(want) {
		t.Fatalf("%d environments recorded, want %d", len(envs), len(want))
	}
	var all strings.Builder
	for _, f := range envs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	if !strings.Contains(all.String(), "TOKEND_EVENT_TIME=") || !strings.Contains(all.String(), "TOKEND_EVENT_EXPIRES_AT=2") {
		t.Fatal("the environment lacks the event's times")
	}
	assertNoToken(t, h.prov, "a hook's environment", all.String())
}

// A hook that outlives its timeout is killed and counted, and refreshes
// keep their schedule meanwhile.
func TestHookTimeoutKillsAndRefreshesGoOn(t *testing.T) {
	m := &hookMetrics{}
	h := newHarness(t, harnessOpts{noRun: true, prov: devprovider.Options{AccessTTL: time.Minute}, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Events: []string{config.EventRefreshed}, Command: []string{"sleep", "60"}, Timeout: 200 * time.Millisecond}}
	}})
	h.startWith(Options{Metrics: m})
	g := h.d.grant("cc")
	gen0 := g.cur.Load().Generation

	start := time.Now()
	h.advance(5 * time.Minute) // a 60 s token refreshes about every 45 s
	elapsed := time.Since(start)
	gens := g.cur.Load().Generation - gen0
	if gens < 5 {
		t.Fatalf("%d refreshes in 5 minutes of 60-second tokens, want at least 5", gens)
	}
	if elapsed > 5*time.Second {
		t.Errorf("advancing the clock took %s: refreshes waited for the hook?", elapsed)
	}
	total := int(g.cur.Load().Generation)
	waitFor(t, "every run killed at its timeout", func() bool { return m.count("hook0/timeout") == total })
	if m.count("hook0/success") != 0 || m.count("hook0/dropped") != 0 {
		t.Fatalf("runs: %v", m.runs)
	}
	if !strings.Contains(h.logs.String(), "hook failed") {
		t.Fatal("a killed hook is not logged")
	}
}

// A webhook is signed (HMAC-SHA256 of timestamp "." body), retried with
// backoff on 5xx, and carries no token.
func TestWebhookSignedRetried(t *testing.T) {
	const secret = "hook-secret-123"
	type req struct {
		body             []byte
		delivery, sigOK  string
		event, timestamp string
	}
	var mu sync.Mutex
	var reqs []req
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Tokend-Timestamp")
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "." + string(body)))
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		ok := "bad"
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err == nil && hmac.Equal([]byte(want), []byte(r.Header.Get("X-Tokend-Signature"))) &&
			time.Since(time.Unix(sec, 0)).Abs() < 5*time.Minute {
			ok = "ok"
		}
		mu.Lock()
		reqs = append(reqs, req{body, r.Header.Get("X-Tokend-Delivery"), ok, r.Header.Get("X-Tokend-Event"), ts})
		n := len(reqs)
		mu.Unlock()
		if ok != "ok" {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if n <= 2 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	m := &hookMetrics{}
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Name: "web", Events: []string{config.EventRefreshed, config.EventRevoked}, Grants: []string{"cc"},
			URL: srv.URL + "/hook", Secret: oauth.NewSecret(secret)}}
	}})
	h.startWith(Options{Metrics: m})
	g := h.d.grant("cc")
	if err := h.d.revoke(context.Background(), g); err != nil {
		t.Fatal(err)
	}
	requests := func() int { mu.Lock(); defer mu.Unlock(); return len(reqs) }
	// The retries wait on the daemon's clock: 1 s, then 2 s.
	for i, wait := range []time.Duration{time.Second, 2 * time.Second} {
		waitFor(t, fmt.Sprintf("attempt %d and its backoff of %s", i+1, wait), func() bool {
			return requests() == i+1 && h.clock.hasTimer(wait)
		})
		if n := requests(); n != i+1 {
			t.Fatalf("%d requests before the backoff of %s passed", n, wait)
		}
		h.clock.Advance(wait)
	}
	waitFor(t, "both events delivered", func() bool { return m.count("web/success") == 2 })

	mu.Lock()
	defer mu.Unlock()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (two 503s, then one per event)", len(reqs))
	}
	var bodies strings.Builder
	for i, r := range reqs {
		if r.sigOK != "ok" {
			t.Fatalf("request %d: signature not verified", i)
		}
		bodies.Write(r.body)
		var e hook.Event
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		if e.Grant != "cc" || e.Event != r.event || e.ID != r.delivery {
			t.Fatalf("request %d: body %s, headers event %q delivery %q", i, r.body, r.event, r.delivery)
		}
	}
	if reqs[0].delivery != reqs[2].delivery || reqs[0].event != "refreshed" || reqs[3].event != "revoked" {
		t.Fatalf("retries are not of the same event: %+v", reqs)
	}
	assertNoToken(t, h.prov, "a webhook body", bodies.String())
}

// Emitting never blocks: when a hook's queue is full the oldest event is
// dropped and counted.
func TestHookQueueFullDropsOldest(t *testing.T) {
	m := &hookMetrics{}
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Events: []string{config.EventRevoked}, Command: []string{"sleep", "60"}, Timeout: time.Minute}}
	}})
	h.startWith(Options{Metrics: m})
	g := h.d.grant("cc")
	const n = hook.QueueSize + 50
	start := time.Now()
	for range n {
		h.d.emit(g, config.EventRevoked, g.cur.Load())
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("emitting %d events took %s", n, el)
	}
	// One is being delivered (or about to be), hook.QueueSize wait.
	if d := m.count("hook0/dropped"); d < n-hook.QueueSize-1 || d > n-hook.QueueSize {
		t.Fatalf("%d dropped, want %d or %d", d, n-hook.QueueSize-1, n-hook.QueueSize)
	}
	h.stop() // kills the sleeping command at once
}

// A grant whose token runs out while its provider fails raises expired
// once; a refusal that needs a person raises reauthorization_required.
func TestHookExpiredAndReauthorization(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "events")
	script := fmt.Sprintf(`echo "$TOKEND_EVENT_NAME $TOKEND_EVENT_STATE" >> '%s'`, out)
	h := newHarness(t, harnessOpts{noRun: true, prov: devprovider.Options{AccessTTL: time.Minute}, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Events: config.HookEvents, Command: []string{"sh", "-c", script}}}
	}})
	h.start()
	waitFor(t, "the first refresh's hook", func() bool { return len(readLines(t, out)) == 1 })

	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault503})
	h.advance(3 * time.Minute) // due at 45 s, expired at 60 s, rounds keep failing
	h.prov.ClearFault()
	h.advance(30 * time.Second)
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidGrant})
	if _, err := h.d.refresh(h.d.grant("cc"), "manual"); err == nil {
		t.Fatal("refresh succeeded against invalid_grant")
	}

	// One hook delivers its events in order: once an event emitted now
	// is written, every event raised above has been, and a stray one
	// stands before it.
	h.d.emit(h.d.grant("cc"), config.EventRevoked, h.d.grant("cc").cur.Load())
	const last = "revoked reauthorization_required"
	want := []string{"refreshed valid", "failing failing", "expired expired", "refreshed valid", "recovered valid", "failing reauthorization_required", "reauthorization_required reauthorization_required", last}
	waitFor(t, "the last event", func() bool { return slices.Contains(readLines(t, out), last) })
	got := readLines(t, out)
	t.Logf("events:\n%s", strings.Join(got, "\n"))
	// Rounds that start while the grant has expired each raise failing
	// (the first failed attempt of their round): compress repeats.
	var comp []string
	for _, l := range got {
		if len(comp) > 0 && l == "failing expired" {
			continue
		}
		comp = append(comp, l)
	}
	if strings.Join(comp, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant (repeated failing expired removed):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A reload installs new hooks (one that did not change keeps its runner:
// package hook tests that); a slow webhook is cut at its timeout and
// counted.
func TestHookReloadAndWebhookTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	m := &hookMetrics{}
	h := newHarness(t, harnessOpts{noRun: true})
	h.startWith(Options{Metrics: m})
	cfg := *h.cfg
	cfg.Hooks = []config.Hook{{Name: "slow", Events: []string{config.EventRevoked}, URL: srv.URL, Secret: oauth.NewSecret("k"), Timeout: 100 * time.Millisecond}}
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg2 := cfg
	if err := h.d.Reload(&cfg2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.d.revoke(context.Background(), h.d.grant("cc")); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("revoke took %s with a slow hook", el)
	}
	// The backoff between attempts runs on the daemon's clock.
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		waitFor(t, fmt.Sprintf("a backoff of %s", wait), func() bool { return h.clock.hasTimer(wait) })
		h.clock.Advance(wait)
	}
	waitFor(t, "the delivery to time out", func() bool { return m.count("slow/timeout") == 1 })
	// Four attempts of 100 ms.
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("the delivery gave up after %s, before its attempts and waits", el)
	}
}
