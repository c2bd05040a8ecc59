package daemon

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/metrics"
)

// fetchSeries returns tokend_fetch_requests_total as "grant code" → count.
func fetchSeries(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler(func() error { return nil }).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", w.Code)
	}
	out := map[string]float64{}
	for _, s := range parseExposition(t, w.Body.String()).samples {
		if s.name == "tokend_fetch_requests_total" {
			out[s.labels["grant"]+" "+s.labels["code"]] = s.value
		}
	}
	return out
}

// A refusal is counted under one label whether the grant exists or not:
// /metrics must not tell its readers which names a non-reader found.
func TestForbiddenFetchMetricHidesGrantNames(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		g := c.Grants["cc"]
		g.Readers = config.Readers{UIDs: []int{1000}}
		c.Grants["cc"] = g
	}})
	m := metrics.New(metrics.BuildInfo{Version: "test"})
	h.startWith(Options{Metrics: m})
	handler := h.d.apiServer().Handler
	serveAs := func(p peer, method, path string) int {
		r := httptest.NewRequest(method, "http://tokend"+path, nil)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r.WithContext(withPeer(context.Background(), p)))
		return w.Code
	}
	stranger := peer{ok: true, uid: 3000, gid: 3000}

	// The same refusals, once for a grant that exists and once for a name
	// that does not: the series must change in exactly the same way.
	for _, c := range []struct{ method, suffix string }{
		{http.MethodGet, ""},
		{http.MethodGet, "/status"},
		{http.MethodPost, "/refresh"},
		{http.MethodPost, "/revoke"},
		{http.MethodPost, "/authorize"},
		{http.MethodPost, "/dpop"},
	} {
		var deltas []map[string]float64
		for _, name := range []string{"cc", "no-such-grant"} {
			before := fetchSeries(t, m)
			if code := serveAs(stranger, c.method, "/v1/tokens/"+name+c.suffix); code != http.StatusForbidden {
				t.Fatalf("%s %s%s as a non-reader: %d, want 403", c.method, name, c.suffix, code)
			}
			after := fetchSeries(t, m)
			d := map[string]float64{}
			for k, v := range after {
				if v != before[k] {
					d[k] = v - before[k]
				}
			}
			deltas = append(deltas, d)
		}
		if len(deltas[0]) != 1 || deltas[0][metrics.UnknownGrant+" 403"] != 1 || !maps.Equal(deltas[0], deltas[1]) {
			t.Errorf("%s …%s: a 403 on an existing grant changed %v, on a missing one %v; want both {%s 403: 1}",
				c.method, c.suffix, deltas[0], deltas[1], metrics.UnknownGrant)
		}
	}
	for k := range fetchSeries(t, m) {
		if k == "cc 403" || k == "no-such-grant 403" {
			t.Errorf("series %q names the requested grant", k)
		}
	}

	// A reader's fetch is still counted under the grant.
	if code := serveAs(peer{ok: true, uid: 1000, gid: 1000}, http.MethodGet, "/v1/tokens/cc"); code != http.StatusOK {
		t.Fatalf("reader: %d", code)
	}
	if got := fetchSeries(t, m)["cc 200"]; got != 1 {
		t.Fatalf("tokend_fetch_requests_total{grant=cc,code=200} = %v, want 1", got)
	}
}
