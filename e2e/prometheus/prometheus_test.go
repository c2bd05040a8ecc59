package prometheus

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

const clientSecret = "prom-e2e-secret-0123456789abcdef"

var (
	tokendBin      string
	tokendBuildErr error
)

func TestMain(m *testing.M) {
	// As in e2e: the race detector watches the daemon too; E2E_RACE=0
	// builds without it.
	os.Exit(testutil.MainWithTokend(m, "e2e/prometheus", os.Getenv("E2E_RACE") != "0", &tokendBin, &tokendBuildErr))
}

// start runs cmd until the test ends, logging its output if the test
// failed.
func start(t *testing.T, name string, cmd *exec.Cmd) *testutil.SyncBuffer {
	t.Helper()
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p := testutil.StartProc(t, cmd)
	t.Cleanup(func() {
		p.Stop(syscall.SIGINT)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// tokend is one tokend serve process with its own provider.
type tokend struct {
	prov    *devprovider.Server
	metrics string // host:port of /metrics
	log     *testutil.SyncBuffer
}

// startTokend runs tokend with one client_credentials grant "api" against
// a fresh in-process provider issuing tokens of ttl, its scheduler waking
// every second, refreshing at the default 75 % of a token's lifetime.
func startTokend(t *testing.T, ttl time.Duration) *tokend {
	t.Helper()
	prov := devprovider.New(devprovider.Options{
		AccessTTL: ttl,
		Clients:   []devprovider.Client{{ID: "app", Secret: clientSecret, AuthMethod: "client_secret_basic"}},
	})
	t.Cleanup(prov.Close)
	dir := testutil.ShortDir(t)
	secret := filepath.Join(dir, "app.secret")
	if err := os.WriteFile(secret, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 0: tokend binds a free port itself and logs it (a port picked
	// here and bound later could be taken meanwhile by a parallel test).
	td := &tokend{prov: prov}
	cfgPath := testutil.TokendConfig{
		Store:    []string{"path: " + filepath.Join(dir, "tokend.db")},
		Socket:   filepath.Join(dir, "t.sock"),
		Callback: "off",
		Metrics:  "127.0.0.1:0",
		Refresh:  []string{`schedule: "@every 1s"`, "min_remaining: 5s", "timeout: 5s"},
		LogLevel: "debug",
		Provider: "op", Issuer: prov.URL(),
		Clients: "  app:\n    provider: op\n    client_id: app\n    client_secret_file: " + secret + "\n    auth_method: client_secret_basic\n",
		Grants:  "  api:\n    client: app\n    type: client_credentials\n    scopes: [read]\n",
	}.Write(t, filepath.Join(dir, "config.yaml"))
	td.log = start(t, "tokend "+dir, exec.Command(tokendBin, "serve", "--config", cfgPath))
	deadline := time.Now().Add(30 * time.Second)
	for td.metrics == "" {
		if m := startedMetrics.FindStringSubmatch(td.log.String()); m != nil {
			td.metrics = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("tokend did not log its start within 30s:\n%s", td.log.String())
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return td
}

// startedMetrics finds the metrics address in tokend's start-up log line.
var startedMetrics = regexp.MustCompile(`msg="tokend started" .*\bmetrics=(127\.0\.0\.1:[0-9]+)`)

// expiry waits until tokend exports the expiry of a token and returns it.
func (td *tokend) expiry(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if v, ok := scrape(td.metrics, `tokend_token_expiry_timestamp_seconds{grant="api"}`); ok {
			return time.UnixMilli(int64(v * 1e3))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("tokend %s exported no token expiry within %v", td.metrics, timeout)
	return time.Time{}
}

// scrape reads one series from tokend's /metrics.
func scrape(addr, series string) (float64, bool) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// server is a running Prometheus.
type server struct {
	base string
	log  *testutil.SyncBuffer
}

// startPrometheus runs Prometheus on loopback with the shipped rules,
// scraping every target every second as job="tokend", and evaluating rules
// every second.
func startPrometheus(t *testing.T, targets []string) *server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (scripts/test-deps installs Debian's prometheus): %v", err)
	}
	rules, err := filepath.Abs("../../deploy/prometheus/tokend.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = strconv.Quote(tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: tokend
    static_configs:
      - targets: [%s]
`, strconv.Quote(rules), strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	s := &server{base: "http://" + addr}
	s.log = start(t, "prometheus", exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatal("prometheus not ready within 30 s")
	return nil
}

type alert struct {
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	ActiveAt time.Time         `json:"activeAt"`
	Value    string            `json:"value"`
}

// alerts returns the pending and firing alerts.
func (s *server) alerts(t *testing.T) []alert {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	s.get(t, "/api/v1/alerts", &r)
	return r.Data.Alerts
}

// query runs an instant query and returns each result's labels and value.
func (s *server) query(t *testing.T, q string) []sample {
	t.Helper()
	return s.queryAt(t, q, time.Time{})
}

// queryAt is query evaluated at at (now when zero).
func (s *server) queryAt(t *testing.T, q string, at time.Time) []sample {
	t.Helper()
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	path := "/api/v1/query?query=" + url.QueryEscape(q)
	if !at.IsZero() {
		path += "&time=" + strconv.FormatFloat(float64(at.UnixMilli())/1e3, 'f', 3, 64)
	}
	s.get(t, path, &r)
	var out []sample
	for _, x := range r.Data.Result {
		str, _ := x.Value[1].(string)
		v, _ := strconv.ParseFloat(str, 64)
		out = append(out, sample{x.Metric, v})
	}
	return out
}

type sample struct {
	Labels map[string]string
	Value  float64
}

func (s *server) get(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := http.Get(s.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// waitAlert polls until alertname is firing for instance, and returns it.
func (s *server) waitAlert(t *testing.T, name, instance string, until time.Time) (alert, bool) {
	t.Helper()
	for time.Now().Before(until) {
		for _, a := range s.alerts(t) {
			if a.Labels["alertname"] == name && a.Labels["instance"] == instance && a.State == "firing" {
				return a, true
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return alert{}, false
}

// TestShippedAlertsAgainstPrometheus runs the three scenarios of the
// package documentation at once against one Prometheus.
func TestShippedAlertsAgainstPrometheus(t *testing.T) {
	if tokendBuildErr != nil {
		t.Fatal(tokendBuildErr)
	}
	outage := startTokend(t, 90*time.Second)
	healthy := startTokend(t, 20*time.Second)
	reauth := startTokend(t, 90*time.Second)
	prom := startPrometheus(t, []string{outage.metrics, healthy.metrics, reauth.metrics})

	t.Run("group", func(t *testing.T) {
		t.Run("outage", func(t *testing.T) {
			t.Parallel()
			expiry := outage.expiry(t, 20*time.Second)
			// Let Prometheus see the healthy grant first, then kill the
			// provider: every later request is refused.
			waitSeries(t, prom, fmt.Sprintf(`tokend_token_expiry_timestamp_seconds{instance=%q}`, outage.metrics), 15*time.Second)
			outage.prov.Close()
			killed := time.Now()
			a, ok := prom.waitAlert(t, "TokendTokenExpiringSoon", outage.metrics, expiry.Add(30*time.Second))
			if !ok {
				t.Fatalf("TokendTokenExpiringSoon never fired (token expired at %s, provider down since %s)",
					expiry.Format(time.RFC3339), killed.Format(time.RFC3339))
			}
			seen := time.Now()
			// The expiry of the token the alert is about, as Prometheus
			// saw it when the alert became active (a refresh that
			// succeeded just before the provider went down moved it).
			at := prom.queryAt(t, fmt.Sprintf(`tokend_token_expiry_timestamp_seconds{instance=%q}`, outage.metrics), a.ActiveAt)
			if len(at) != 1 {
				t.Fatalf("token expiry at %s: %v", a.ActiveAt, at)
			}
			expiry = time.UnixMilli(int64(at[0].Value * 1e3))
			lead := expiry.Sub(a.ActiveAt)
			t.Logf("token expiry %s; provider down since %s; alert active at %s (seen firing at %s): lead time %.1f s before expiry",
				expiry.Format(time.RFC3339Nano), killed.Format(time.RFC3339Nano), a.ActiveAt.Format(time.RFC3339Nano),
				seen.Format(time.RFC3339Nano), lead.Seconds())
			// tokend starts refreshing a 90 s token with 22.5 s ± 4.5 s
			// left; the first refused request, a 1 s scrape and a 1 s
			// evaluation later the alert fires. 10 s is the margin asked
			// for; anything less means the alert is late.
			if lead < 10*time.Second {
				t.Errorf("alert fired %.1f s before the token expired, want at least 10 s", lead.Seconds())
			}
			if fails := prom.query(t, fmt.Sprintf(`tokend_refresh_attempts_total{instance=%q,result="transient"}`, outage.metrics)); len(fails) != 1 || fails[0].Value < 1 {
				t.Errorf("tokend_refresh_attempts_total{result=transient} = %v, want ≥ 1 when the alert fires", fails)
			}
			// The provider's view: token requests that got no answer.
			reqs := prom.query(t, fmt.Sprintf(`tokend_provider_requests_total{instance=%q,provider="op",endpoint="token",code=~"refused|reset"}`, outage.metrics))
			if len(reqs) == 0 {
				t.Errorf("no tokend_provider_requests_total{endpoint=token,code=refused|reset} after the provider went down")
			}
			for _, r := range reqs {
				t.Logf("tokend_provider_requests_total{endpoint=token,code=%s} = %v", r.Labels["code"], r.Value)
			}
			if !strings.Contains(outage.log.String(), `level=WARN msg="refresh attempt failed, retrying"`) {
				t.Errorf("no WARN line for the first failed attempt in tokend's log")
			}
		})
		t.Run("healthy", func(t *testing.T) {
			t.Parallel()
			first := healthy.expiry(t, 20*time.Second)
			successes := func() float64 {
				r := prom.query(t, fmt.Sprintf(`tokend_refresh_attempts_total{instance=%q,result="success"}`, healthy.metrics))
				if len(r) != 1 {
					return 0
				}
				return r[0].Value
			}
			// At least three refreshes seen by this subtest (it may start
			// after the others, with go test -parallel 1), and five in
			// all: a 20 s token is refreshed every 15 s.
			want := max(successes()+3, 5)
			deadline := time.Now().Add(100 * time.Second)
			for {
				// TokendDown is left out: a scrape that misses its 1 s
				// timeout on a loaded machine makes it pending (it fires
				// only after 2 minutes), and it says nothing about the
				// provider. It must never fire (checked at the end).
				for _, a := range prom.alerts(t) {
					if a.Labels["instance"] == healthy.metrics && a.Labels["alertname"] != "TokendDown" {
						t.Fatalf("alert %s %s for the healthy tokend: %+v", a.Labels["alertname"], a.State, a)
					}
				}
				n := successes()
				if n >= want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%v successful requests after 100 s, want %v", n, want)
				}
				time.Sleep(500 * time.Millisecond)
			}
			if now := healthy.expiry(t, time.Second); !now.After(first) {
				t.Errorf("token expiry did not move: %s then %s", first, now)
			}
			// Nothing was ever pending or firing for it, and nothing failed.
			if r := prom.query(t, fmt.Sprintf(`count_over_time(ALERTS{instance=%q,alertname!="TokendDown"}[5m])`, healthy.metrics)); len(r) != 0 {
				t.Errorf("ALERTS for the healthy tokend: %v", r)
			}
			if r := prom.query(t, fmt.Sprintf(`tokend_refresh_attempts_total{instance=%q,result!="success"}`, healthy.metrics)); len(r) != 0 {
				t.Errorf("failed attempts for the healthy tokend: %v", r)
			}
		})
		t.Run("reauth", func(t *testing.T) {
			t.Parallel()
			expiry := reauth.expiry(t, 20*time.Second)
			reauth.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidGrant})
			start := time.Now()
			// The next refresh (at 75 % of the token's lifetime, or at
			// once if the token has already expired) gets invalid_grant.
			a, ok := prom.waitAlert(t, "TokendReauthorizationRequired", reauth.metrics, start.Add(100*time.Second))
			if !ok {
				t.Fatalf("TokendReauthorizationRequired never fired (invalid_grant since %s)", start.Format(time.RFC3339))
			}
			t.Logf("invalid_grant answered from %s; alert active at %s, %.1f s before the token expires",
				start.Format(time.RFC3339Nano), a.ActiveAt.Format(time.RFC3339Nano), expiry.Sub(a.ActiveAt).Seconds())
			if r := prom.query(t, fmt.Sprintf(`tokend_grant_state{instance=%q,state="reauthorization_required"}`, reauth.metrics)); len(r) != 1 {
				t.Errorf("grant state series: %v", r)
			}
		})
	})
	// TokendDown never fired: every tokend was up throughout. Missed
	// scrapes (a pending TokendDown) are logged.
	for _, a := range prom.alerts(t) {
		if a.Labels["alertname"] == "TokendDown" && a.State == "firing" {
			t.Errorf("TokendDown: %+v", a)
		}
	}
	if r := prom.query(t, `count_over_time((up{job="tokend"} == 0)[5m:1s])`); len(r) != 0 {
		t.Logf("missed scrapes (1 s timeout): %v", r)
	}
}

// waitSeries waits until Prometheus has scraped a series matching q.
func waitSeries(t *testing.T, s *server, q string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(s.query(t, q)) > 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("prometheus has no %s after %v", q, timeout)
}
