package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/metrics"
)

// series returns the value of every series of one metric family, keyed by
// its label values joined with spaces (in label-name order).
func series(t *testing.T, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var k []string
			for _, l := range m.GetLabel() {
				k = append(k, l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[strings.Join(k, " ")] = v
		}
	}
	return out
}

// A failed attempt is counted, and told at WARN, when it fails, while the
// round that retries it is still running and the token still valid; the
// round's own outcome (tokend_refresh_total) is counted only when it ends.
func TestFailedAttemptsVisibleDuringRound(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	m := metrics.New(metrics.BuildInfo{Version: "test"})
	h.startWith(Options{Metrics: m})
	g := m.Gatherer()
	first := h.token("cc")
	if got := series(t, g, "tokend_refresh_attempts_total")["cc success"]; got != 1 {
		t.Fatalf("attempts{cc,success} = %v after the first token, want 1", got)
	}

	// The provider's own view: discovery and the token endpoint, by code.
	reqs := series(t, g, "tokend_provider_requests_total")
	if reqs["200 discovery test"] < 1 || reqs["200 token test"] != 1 {
		t.Errorf("provider_requests = %v, want discovery 200 and one token 200 for provider test", reqs)
	}

	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault503})
	// 10-minute tokens are refreshed at 75 % ± 5 % of their lifetime: by
	// 9 minutes the round has started and failed for a while, and it runs
	// until the token expires at 10 minutes.
	h.advance(9 * time.Minute)
	if h.clock.Now().After(first.ExpiresAt) {
		t.Fatalf("clock %v is past the token's expiry %v", h.clock.Now(), first.ExpiresAt)
	}
	attempts := series(t, g, "tokend_refresh_attempts_total")
	if attempts["cc transient"] < 2 {
		t.Errorf("attempts{cc,transient} = %v while the round retries, want ≥ 2 (%v)", attempts["cc transient"], attempts)
	}
	if got := series(t, g, "tokend_refresh_total")["cc transient"]; got != 0 {
		t.Errorf("refresh_total{cc,transient} = %v before the round ends, want 0", got)
	}
	if got, want := series(t, g, "tokend_refresh_consecutive_failures")["cc"], attempts["cc transient"]; got != want {
		t.Errorf("consecutive_failures{cc} = %v, want %v (every attempt since the success failed)", got, want)
	}
	if got := series(t, g, "tokend_provider_requests_total")["503 token test"]; got != attempts["cc transient"] {
		t.Errorf("provider_requests{test,token,503} = %v, want one per failed attempt (%v)", got, attempts["cc transient"])
	}
	if st := series(t, g, "tokend_grant_state"); st["cc failing"] != 1 {
		t.Errorf("grant_state = %v, want cc failing", st)
	}
	warns := strings.Count(h.logs.String(), `level=WARN msg="refresh attempt failed, retrying"`)
	if warns != 1 {
		t.Errorf("%d WARN lines for the round's failed attempts, want 1 (the first; the rest rate-limited):\n%s", warns, h.logs.String())
	}

	// The provider recovers: the next attempt succeeds and the failures
	// series goes back to 0.
	h.prov.ClearFault()
	h.advance(3 * time.Minute)
	if got := series(t, g, "tokend_refresh_consecutive_failures")["cc"]; got != 0 {
		t.Errorf("consecutive_failures{cc} = %v after a success, want 0", got)
	}
	if got := series(t, g, "tokend_refresh_attempts_total")["cc success"]; got < 2 {
		t.Errorf("attempts{cc,success} = %v after recovery, want ≥ 2", got)
	}
}
