package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/store"
)

// populate gives every tokend collector at least one series, so that
// gathering and linting see all of them.
func populate(m *Metrics) {
	now := time.Unix(1_700_000_000, 0)
	m.ObserveRefresh("reports", "success", 120*time.Millisecond)
	m.ObserveRefresh("reports", "transient", 2*time.Second)
	m.ObserveAttempt("reports", "transient")
	m.SetFailures("reports", 1)
	m.ObserveProviderRequest("github", "token", "503")
	m.SetExpiry("reports", now.Add(time.Hour), now.Add(24*time.Hour))
	m.SetLastSuccess("reports", now)
	m.SetState("reports", api.StateValid)
	m.ObserveFetch("reports", 200)
	m.ObserveFetch("", 404)
	m.ObserveOnDemand("reports", "started")
	m.ObserveHook("alerts", "success", 30*time.Millisecond)                                        // hooks.go
	m.SetFleetHealth(store.FleetHealth{Quorum: true, LeaseOK: true, WatchOK: true, GrantsHeld: 1}) // fleet.go
	m.ObserveFencedWrite()
	m.ObserveRefusedRecord()
	m.SetFleetConflict("reports", true)
	m.SetOpenConns("callback", 3) // listeners.go
	m.ObserveConnRefused("callback")
	m.ObserveIdleConnsClosed("callback", 2)
	m.ObserveAcceptError("callback", "emfile")
}

func TestObserveRefresh(t *testing.T) {
	m := New(BuildInfo{Version: "1.2.3", Revision: "abc", GoVersion: "go1.26"})
	m.ObserveRefresh("reports", "success", 3*time.Millisecond)
	m.ObserveRefresh("reports", "success", 7*time.Second)
	m.ObserveRefresh("reports", "reauthorization", 40*time.Second)
	m.ObserveRefresh("billing", "transient", 0)

	if got := testutil.ToFloat64(m.refreshTotal.WithLabelValues("reports", "success")); got != 2 {
		t.Errorf("refresh_total{reports,success} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.refreshTotal.WithLabelValues("reports", "reauthorization")); got != 1 {
		t.Errorf("refresh_total{reports,reauthorization} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.refreshTotal.WithLabelValues("billing", "transient")); got != 1 {
		t.Errorf("refresh_total{billing,transient} = %v, want 1", got)
	}

	want := `
# HELP tokend_refresh_duration_seconds Duration of refresh rounds (backoff waits included), whatever their result.
# TYPE tokend_refresh_duration_seconds histogram
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.005"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.01"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.025"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.05"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.1"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.25"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="0.5"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="1"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="2.5"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="5"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="10"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="30"} 1
tokend_refresh_duration_seconds_bucket{grant="billing",le="+Inf"} 1
tokend_refresh_duration_seconds_sum{grant="billing"} 0
tokend_refresh_duration_seconds_count{grant="billing"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.005"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.01"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.025"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.05"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.1"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.25"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="0.5"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="1"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="2.5"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="5"} 1
tokend_refresh_duration_seconds_bucket{grant="reports",le="10"} 2
tokend_refresh_duration_seconds_bucket{grant="reports",le="30"} 2
tokend_refresh_duration_seconds_bucket{grant="reports",le="+Inf"} 3
tokend_refresh_duration_seconds_sum{grant="reports"} 47.003
tokend_refresh_duration_seconds_count{grant="reports"} 3
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "tokend_refresh_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestSetExpiryAndLastSuccess(t *testing.T) {
	m := New(BuildInfo{})
	access := time.Unix(1_700_003_600, 250_000_000)
	refresh := time.Unix(1_700_086_400, 0)
	m.SetExpiry("reports", access, refresh)
	m.SetLastSuccess("reports", time.Unix(1_700_000_000, 0))

	want := `
# HELP tokend_token_expiry_timestamp_seconds Unix time at which the grant's current access token expires.
# TYPE tokend_token_expiry_timestamp_seconds gauge
tokend_token_expiry_timestamp_seconds{grant="reports"} 1.70000360025e+09
# HELP tokend_refresh_token_expiry_timestamp_seconds Unix time at which the grant's refresh token expires, when known.
# TYPE tokend_refresh_token_expiry_timestamp_seconds gauge
tokend_refresh_token_expiry_timestamp_seconds{grant="reports"} 1.7000864e+09
# HELP tokend_last_refresh_success_timestamp_seconds Unix time of the grant's last successful token refresh or issue.
# TYPE tokend_last_refresh_success_timestamp_seconds gauge
tokend_last_refresh_success_timestamp_seconds{grant="reports"} 1.7e+09
`
	names := []string{
		"tokend_token_expiry_timestamp_seconds",
		"tokend_refresh_token_expiry_timestamp_seconds",
		"tokend_last_refresh_success_timestamp_seconds",
	}
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}

	// A provider that stops sending a refresh token expiry: the series
	// disappears instead of reading as 1970.
	m.SetExpiry("reports", access, time.Time{})
	if n := testutil.CollectAndCount(m.refreshExpiry); n != 0 {
		t.Errorf("refresh token expiry series after zero time = %d, want 0", n)
	}
	if n := testutil.CollectAndCount(m.tokenExpiry); n != 1 {
		t.Errorf("access token expiry series = %d, want 1", n)
	}
}

func TestSetState(t *testing.T) {
	m := New(BuildInfo{})
	states := func(grant string) map[string]float64 {
		t.Helper()
		out := map[string]float64{}
		for _, mf := range gather(t, m) {
			if mf.GetName() != "tokend_grant_state" {
				continue
			}
			for _, s := range mf.GetMetric() {
				l := labels(s)
				if l["grant"] == grant {
					out[l["state"]] = s.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	check := func(grant, want string, n int) {
		t.Helper()
		got := states(grant)
		if len(got) != n {
			t.Errorf("%s: %d state series, want %d: %v", grant, len(got), n, got)
		}
		for s, v := range got {
			if (s == want) != (v == 1) {
				t.Errorf("%s: tokend_grant_state{state=%q} = %v with current state %q", grant, s, v, want)
			}
		}
		if got[want] != 1 {
			t.Errorf("%s: current state %q not exported as 1: %v", grant, want, got)
		}
	}

	// Only the current state has a series.
	m.SetState("reports", api.StateValid)
	check("reports", api.StateValid, 1)
	m.SetState("reports", api.StateReauthorizationRequired)
	check("reports", api.StateReauthorizationRequired, 1)
	m.SetState("billing", api.StateFailing)
	check("billing", api.StateFailing, 1)
	check("reports", api.StateReauthorizationRequired, 1)

	// A state the package does not know is exported, then removed again.
	m.SetState("reports", "mystery")
	check("reports", "mystery", 1)
	m.SetState("reports", api.StateValid)
	check("reports", api.StateValid, 1)
}

func TestObserveFetch(t *testing.T) {
	m := New(BuildInfo{})
	m.ObserveFetch("reports", 200)
	m.ObserveFetch("reports", 200)
	m.ObserveFetch("reports", 403)
	m.ObserveFetch("", 404)

	want := `
# HELP tokend_fetch_requests_total Token fetch requests on the local API by grant and HTTP status code.
# TYPE tokend_fetch_requests_total counter
tokend_fetch_requests_total{code="200",grant="reports"} 2
tokend_fetch_requests_total{code="403",grant="reports"} 1
tokend_fetch_requests_total{code="404",grant="_unknown"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "tokend_fetch_requests_total"); err != nil {
		t.Error(err)
	}
}

func TestObserveOnDemand(t *testing.T) {
	m := New(BuildInfo{})
	m.ObserveOnDemand("reports", "started")
	m.ObserveOnDemand("reports", "bounded")
	m.ObserveOnDemand("reports", "bounded")
	want := `
# HELP tokend_on_demand_refreshes_total ` + "Refreshes that fetches asked for (the token was expired, in its last tenth of life or last 5 s, or of the wrong kind) by grant and result: started, or bounded (refused: a fetch refreshed the grant less than half a token lifetime ago, or its token is in the first half of its life). The schedule's refreshes are not counted here." + `
# TYPE tokend_on_demand_refreshes_total counter
tokend_on_demand_refreshes_total{grant="reports",result="bounded"} 2
tokend_on_demand_refreshes_total{grant="reports",result="started"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "tokend_on_demand_refreshes_total"); err != nil {
		t.Error(err)
	}
}

func TestForget(t *testing.T) {
	m := New(BuildInfo{})
	populate(m)
	m.ObserveRefresh("billing", "success", time.Second)
	m.SetState("billing", api.StateValid)
	m.SetState("reports", "mystery")

	m.Forget("reports")
	for _, mf := range gather(t, m) {
		for _, s := range mf.GetMetric() {
			if labels(s)["grant"] == "reports" {
				t.Errorf("%s still has a series for the forgotten grant: %v", mf.GetName(), labels(s))
			}
		}
	}
	if got := testutil.ToFloat64(m.refreshTotal.WithLabelValues("billing", "success")); got != 1 {
		t.Errorf("Forget(reports) touched billing: refresh_total = %v", got)
	}
	if n := testutil.CollectAndCount(m.grantState); n != 1 {
		t.Errorf("grant_state series after Forget = %d, want 1 (billing only)", n)
	}
	// A forgotten grant that comes back starts clean.
	m.SetState("reports", api.StateValid)
	if n := testutil.CollectAndCount(m.grantState); n != 2 {
		t.Errorf("grant_state series = %d, want 2", n)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New(BuildInfo{Version: "v1.2.3", Revision: "0123abc", GoVersion: "go1.26.8"})
	want := `
# HELP tokend_build_info Build information of the running tokend; the value is always 1.
# TYPE tokend_build_info gauge
tokend_build_info{goversion="go1.26.8",revision="0123abc",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "tokend_build_info"); err != nil {
		t.Error(err)
	}
}

func TestGoAndProcessCollectors(t *testing.T) {
	m := New(BuildInfo{})
	got := map[string]bool{}
	for _, mf := range gather(t, m) {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"go_goroutines", "go_info", "process_open_fds", "process_start_time_seconds"} {
		if !got[name] {
			t.Errorf("%s not gathered", name)
		}
	}
}

func TestLint(t *testing.T) {
	m := New(BuildInfo{Version: "v1", Revision: "r", GoVersion: "go1.26"})
	populate(m)
	problems, err := testutil.GatherAndLint(m.Gatherer())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// The lint must have looked at every tokend family.
	n, err := testutil.GatherAndCount(m.Gatherer(),
		"tokend_refresh_total", "tokend_refresh_duration_seconds",
		"tokend_token_expiry_timestamp_seconds", "tokend_refresh_token_expiry_timestamp_seconds",
		"tokend_last_refresh_success_timestamp_seconds", "tokend_grant_state",
		"tokend_fetch_requests_total", "tokend_build_info")
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1; n != want {
		t.Errorf("populated series = %d, want %d", n, want)
	}
}

func TestHandler(t *testing.T) {
	m := New(BuildInfo{Version: "v1"})
	populate(m)
	readyErr := errors.New("store not open")
	srv := httptest.NewServer(m.Handler(func() error { return readyErr }))
	defer srv.Close()

	get := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b), resp.Header
	}

	if code, body, _ := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	code, body, _ := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "store not open") {
		t.Errorf("/readyz not ready = %d %q, want 503 with the reason", code, body)
	}
	readyErr = nil
	if code, body, _ := get("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz ready = %d %q, want 200 ok", code, body)
	}

	code, body, hdr := get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics content type %q", ct)
	}
	for _, s := range []string{
		`tokend_refresh_total{grant="reports",result="success"} 1`,
		`tokend_fetch_requests_total{code="404",grant="_unknown"} 1`,
		`tokend_build_info{goversion=`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %q", s)
		}
	}

	if code, _, _ := get("/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
	resp, err := srv.Client().Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}

func TestHandlerNilChecker(t *testing.T) {
	m := New(BuildInfo{})
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("/readyz with nil checker = %d, want 200", rec.Code)
	}
	// A second handler on the same registry must not panic on duplicate
	// registration of promhttp's own error counter.
	_ = m.Handler(nil)
}

func gather(t *testing.T, m *Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}
