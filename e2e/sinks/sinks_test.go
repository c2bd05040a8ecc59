package sinks

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// TestPrometheusCredentialsFile runs the real Prometheus, as its own user,
// scraping a loopback target that accepts only a bearer token the provider
// considers valid, with authorization.credentials_file set to a raw sink.
// Tokens live 4 s and tokend refreshes them at half their life: over at
// least three rotations no scrape may fail.
func TestPrometheusCredentialsFile(t *testing.T) {
	needRoot(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		// Never skipped: make test and CI run it (scripts/test-deps
		// installs Debian's prometheus).
		t.Fatal("prometheus is not installed: run ./scripts/test-deps")
	}
	const promUID = 65534
	prov := newProvider(t, 4*time.Second)

	// The target: /metrics answers only the provider's valid tokens.
	target := startBearerTarget(t, prov, "# TYPE sink_target_up gauge\nsink_target_up 1\n")

	dir := testutil.SharedDir(t)
	sinks := sinkDir(t)
	sink := filepath.Join(sinks, "prometheus.token")
	cfg := writeConfig(t, dir, prov.URL(), rotatingRefresh,
		fmt.Sprintf("      - path: %s\n        owner: \"%d\"\n        group: \"%d\"\n        mode: \"0400\"\n", sink, promUID, promUID))
	ac := api.NewClient(filepath.Join(dir, "tokend.sock"))
	start(t, cfg, filepath.Join(dir, "tokend.log"), ac)
	waitFor(t, "the sink written", func() bool { _, err := os.Stat(sink); return err == nil })

	promDir := filepath.Join(dir, "prom")
	if err := os.Mkdir(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(promDir, promUID, promUID); err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: target
    authorization:
      credentials_file: %s
    static_configs:
      - targets: ["%s"]
`, sink, target.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	promLog := filepath.Join(dir, "prometheus.log")
	lf, err := os.Create(promLog)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	prom := exec.Command(promBin, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")
	prom.Stdout, prom.Stderr = lf, lf
	testutil.AsUser(prom, promUID)
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Process.Kill(); _ = prom.Wait() })

	// Run until the target has seen four tokens (three rotations) and
	// scraped after the last one for a few seconds.
	began := time.Now()
	deadline := began.Add(60 * time.Second)
	for {
		n := target.tokens()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the target saw %d tokens (accepted %d, rejected %d)\n%s", n, target.accepted.Load(), target.rejected.Load(), testutil.TailFile(promLog, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	ran := time.Since(began)

	count := promQuery(t, promAddr, `count_over_time(up{job="target"}[10m])`)
	sum := promQuery(t, promAddr, `sum_over_time(up{job="target"}[10m])`)
	failed := scrapeFailures(t, promAddr)
	tokens := target.tokens()
	t.Logf("prometheus ran %s: %v scrapes recorded, %v up; target accepted %d, rejected %d; %d distinct tokens (%d rotations); scrape anomalies %v",
		ran.Round(time.Second), count, sum, target.accepted.Load(), target.rejected.Load(), tokens, tokens-1, failed)
	if target.rejected.Load() != 0 {
		t.Errorf("the target rejected %d scrapes", target.rejected.Load())
	}
	if count < 5 || sum != count {
		t.Errorf("up: %v of %v scrapes succeeded", sum, count)
	}
	if failed != 0 {
		t.Errorf("scrape anomalies: %v", failed)
	}
	resp, err := http.Get("http://" + promAddr + "/api/v1/targets")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&targets); err != nil {
		t.Fatal(err)
	}
	if len(targets.Data.ActiveTargets) != 1 || targets.Data.ActiveTargets[0].Health != "up" || targets.Data.ActiveTargets[0].LastError != "" {
		t.Errorf("targets: %+v", targets.Data.ActiveTargets)
	}
}

// scrapeFailures sums Prometheus's own prometheus_target_scrapes_*
// counters of scrapes that went wrong (all but cache_flush_forced).
func scrapeFailures(t *testing.T, addr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	n := 0
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "prometheus_target_scrapes_") || strings.Contains(line, "cache_flush_forced") {
			continue
		}
		var name string
		var v float64
		if _, err := fmt.Sscan(line, &name, &v); err == nil {
			sum += v
			n++
		}
	}
	if n == 0 {
		t.Fatal("prometheus exports no prometheus_target_scrapes_* counters")
	}
	return sum
}

// promQuery evaluates an instant query and returns its single value.
func promQuery(t *testing.T, addr, q string) float64 {
	t.Helper()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	for range 50 { // Prometheus may not have loaded its head yet
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
		}
		if err == nil && out.Status == "success" && len(out.Data.Result) == 1 {
			var v float64
			if s, ok := out.Data.Result[0].Value[1].(string); ok {
				fmt.Sscan(s, &v)
			}
			return v
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("query %s: no single result (%+v)", q, out)
	return 0
}

// TestReaderNeverSeesPartial refreshes as fast as the socket allows while
// a reader reads the sink in a loop: every read is a whole token the
// provider issued. It measures the time from a refresh's answer (the token
// committed) to the file holding the new token, and checks the owner and
// mode as the owning user and as another user.
func TestReaderNeverSeesPartial(t *testing.T) {
	needRoot(t)
	prov := newProvider(t, time.Hour)
	dir := testutil.SharedDir(t)
	sinks := sinkDir(t)
	raw, js := filepath.Join(sinks, "g.token"), filepath.Join(sinks, "g.json")
	cfg := writeConfig(t, dir, prov.URL(), quietRefresh,
		fmt.Sprintf("      - path: %s\n        owner: \"65534\"\n        group: \"65534\"\n        mode: \"0440\"\n      - path: %s\n        format: json\n", raw, js))
	ac := api.NewClient(filepath.Join(dir, "tokend.sock"))
	start(t, cfg, filepath.Join(dir, "tokend.log"), ac)
	// Each sink has its own worker: the readers start once both wrote.
	for _, path := range []string{raw, js} {
		waitFor(t, path+" written", func() bool { _, err := os.Stat(path); return err == nil })
	}

	stop := make(chan struct{})
	var reads, bad atomic.Int64
	var firstBad atomic.Value
	var wg sync.WaitGroup
	for _, path := range []string{raw, js} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := os.ReadFile(path)
				reads.Add(1)
				tok := string(b)
				if path == js {
					var tr api.TokenResponse
					if json.Unmarshal(b, &tr) != nil {
						tok = ""
					} else {
						tok = tr.AccessToken
					}
				}
				if err != nil || tok == "" || !prov.Valid(tok) {
					if bad.Add(1) == 1 {
						firstBad.Store(fmt.Sprintf("%s: %v %q", path, err, b))
					}
				}
			}
		})
	}
	const refreshes = 200
	var lags []time.Duration
	for range refreshes {
		if _, err := ac.Refresh(ctx(t), "g"); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		tok, err := ac.RawToken(ctx(t), "g")
		if err != nil {
			t.Fatal(err)
		}
		for {
			if b, _ := os.ReadFile(raw); string(b) == tok {
				break
			}
			if time.Since(committed) > 10*time.Second {
				t.Fatal("the sink did not follow the token within 10 s")
			}
			time.Sleep(200 * time.Microsecond)
		}
		lags = append(lags, time.Since(committed))
	}
	close(stop)
	wg.Wait()
	slices.Sort(lags)
	t.Logf("%d refreshes, %d reads, %d bad; commit→sink (upper bound, includes a token fetch): median %s, p99 %s, max %s",
		refreshes, reads.Load(), bad.Load(), lags[len(lags)/2], lags[len(lags)*99/100], lags[len(lags)-1])
	if bad.Load() != 0 {
		t.Fatalf("%d reads saw a partial, empty or unknown file; first: %v", bad.Load(), firstBad.Load())
	}
	if reads.Load() < 2000 {
		t.Errorf("only %d reads", reads.Load())
	}

	// Owner and mode as configured, as the owner and another user see them.
	tok, _ := ac.RawToken(ctx(t), "g")
	fi, err := os.Stat(raw)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o440 || st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("%s: mode %v uid %d gid %d, want 0440 65534:65534", raw, fi.Mode().Perm(), st.Uid, st.Gid)
	}
	if out, err := catAs(65534, raw); err != nil || out != tok {
		t.Errorf("the owner (65534) reads %q, %v", out, err)
	}
	if out, err := catAs(65533, raw); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user (65533) reads %q, %v", out, err)
	}
	if fi, err := os.Stat(js); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("%s: default mode and owner: %v %v", js, fi.Mode(), err)
	}
	if out, err := catAs(65534, js); err == nil {
		t.Errorf("65534 reads the 0600 root sink: %q", out)
	}
	ents, _ := os.ReadDir(sinks)
	if len(ents) != 2 {
		t.Errorf("the sink directory holds %d entries, want 2", len(ents))
	}
}

func catAs(uid uint32, path string) (string, error) {
	cmd := exec.Command("cat", path)
	testutil.AsUser(cmd, uid)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKill9Writer kills tokend with SIGKILL at random moments while it
// writes its sinks as fast as refreshes come, and checks after every kill
// that each sink holds a whole token the provider issued (the old or the
// new one), and after a restart that the sinks are brought up to date.
func TestKill9Writer(t *testing.T) {
	needRoot(t)
	prov := newProvider(t, time.Hour)
	dir := testutil.SharedDir(t)
	sinks := sinkDir(t)
	raw, js, env := filepath.Join(sinks, "g.token"), filepath.Join(sinks, "g.json"), filepath.Join(sinks, "g.env")
	cfg := writeConfig(t, dir, prov.URL(), quietRefresh,
		fmt.Sprintf("      - path: %s\n      - path: %s\n        format: json\n      - path: %s\n        format: env\n", raw, js, env))
	ac := api.NewClient(filepath.Join(dir, "tokend.sock"))
	logPath := filepath.Join(dir, "tokend.log")
	issued := func(tok string) bool { return tok != "" && slices.Contains(prov.Issued(), tok) }
	check := func(when string) {
		t.Helper()
		b, err := os.ReadFile(raw)
		if err != nil || !issued(string(b)) {
			t.Fatalf("%s: raw sink %q, %v", when, b, err)
		}
		var tr api.TokenResponse
		b, err = os.ReadFile(js)
		if err != nil || json.Unmarshal(b, &tr) != nil || !issued(tr.AccessToken) {
			t.Fatalf("%s: json sink %q, %v", when, b, err)
		}
		b, err = os.ReadFile(env)
		v, ok := strings.CutPrefix(string(b), "TOKEND_ACCESS_TOKEN=")
		v, _, _ = strings.Cut(v, "\n")
		if err != nil || !ok || !issued(v) || !strings.HasSuffix(string(b), "Z\n") {
			t.Fatalf("%s: env sink %q, %v", when, b, err)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const kills = 25
	p := start(t, cfg, logPath, ac)
	waitFor(t, "the sinks written", func() bool { _, err := os.Stat(env); return err == nil })
	writesBefore := len(prov.Issued())
	midWrite := 0
	for i := range kills {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = ac.Refresh(ctx(t), "g")
			}
		})
		time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		p.Kill9(t)
		close(stop)
		wg.Wait()
		// A temporary file left behind (".NAME.tokend-tmp-RANDOM"): the
		// kill landed in the middle of writing a sink.
		if left, _ := filepath.Glob(filepath.Join(sinks, ".*.tokend-tmp-*")); len(left) > 0 {
			midWrite++
		}
		check(fmt.Sprintf("after kill %d", i+1))
		p = start(t, cfg, logPath, ac)
	}
	issuedDuring := len(prov.Issued()) - writesBefore
	// After the last start the sinks hold the current token.
	tok, err := ac.RawToken(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "sinks up to date after start-up", func() bool { b, _ := os.ReadFile(raw); return string(b) == tok })
	check("at the end")
	if _, err := ac.Refresh(ctx(t), "g"); err != nil {
		t.Fatal(err)
	}
	tok, _ = ac.RawToken(ctx(t), "g")
	waitFor(t, "sinks after a last refresh", func() bool { b, _ := os.ReadFile(raw); return string(b) == tok })
	waitFor(t, "no temporary file left", func() bool {
		ents, _ := os.ReadDir(sinks)
		return len(ents) == 3
	})
	t.Logf("%d kills, %d of them in the middle of a sink write (a temporary file left); %d tokens issued (each written to 3 sinks) while being killed", kills, midWrite, issuedDuring)
}
