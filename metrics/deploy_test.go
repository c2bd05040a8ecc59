package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// The alerting rules and the dashboard in deploy/ query these metrics by
// name; these tests keep them in step with the collectors defined here.

const (
	rulesFile     = "../deploy/prometheus/tokend.rules.yml"
	rulesTestFile = "../deploy/prometheus/tokend.rules.test.yml"
	dashboardFile = "../deploy/grafana/tokend-dashboard.json"
)

var metricName = regexp.MustCompile(`\btokend_[a-zA-Z0-9_]+`)

// exportedNames returns every series name tokend exports, histogram
// suffixes included.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := New(BuildInfo{Version: "v1"})
	populate(m)
	names := map[string]bool{}
	for _, mf := range gather(t, m) {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// checkNames reports every tokend_* name in expr that tokend does not export.
func checkNames(t *testing.T, where, expr string, known map[string]bool) {
	t.Helper()
	for _, n := range metricName.FindAllString(expr, -1) {
		if !known[n] {
			t.Errorf("%s: %s is not a metric tokend exports (expr %q)", where, n, expr)
		}
	}
}

func TestDashboardMetrics(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	known := exportedNames(t)

	var exprs []string
	used := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(path+"."+k, c)
			}
		case []any:
			for _, c := range v {
				walk(path+"[]", c)
			}
		case string:
			// Every string: exprs, template variable queries and
			// descriptions alike must name real metrics.
			checkNames(t, dashboardFile+":"+path, v, known)
			for _, n := range metricName.FindAllString(v, -1) {
				used[n] = true
			}
		}
	}
	walk("", dash)

	if len(exprs) < 8 {
		t.Fatalf("found %d exprs in the dashboard; the walk is broken", len(exprs))
	}
	for _, e := range exprs {
		if !metricName.MatchString(e) {
			t.Errorf("dashboard expr queries no tokend metric: %q", e)
		}
	}
	for _, want := range []string{
		"tokend_token_expiry_timestamp_seconds",
		"tokend_refresh_total",
		"tokend_refresh_duration_seconds_bucket",
		"tokend_grant_state",
		"tokend_fetch_requests_total",
	} {
		if !used[want] {
			t.Errorf("dashboard does not show %s", want)
		}
	}

	ids := map[float64]bool{}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		id, _ := p.(map[string]any)["id"].(float64)
		if ids[id] {
			t.Errorf("duplicate panel id %v", id)
		}
		ids[id] = true
	}
}

func TestRulesMetrics(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatal(err)
	}
	known := exportedNames(t)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkNames(t, rulesFile+":"+r.Alert, r.Expr, known)
		}
	}
	sort.Strings(alerts)
	want := []string{"TokendDown", "TokendFleetConflict", "TokendFleetLeaseLost", "TokendFleetQuorumLost", "TokendFleetWatchBroken", "TokendHookFailing", "TokendReauthorizationRequired", "TokendRefreshFailing", "TokendTokenExpiringSoon"}
	if len(alerts) != len(want) {
		t.Fatalf("alerts = %v, want %v", alerts, want)
	}
	for i := range want {
		if alerts[i] != want[i] {
			t.Fatalf("alerts = %v, want %v", alerts, want)
		}
	}
}

// promtool finds promtool; it skips on a developer machine without it, but
// CI (CI set) installs it with scripts/test-deps and must run these tests.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found but CI is set: scripts/test-deps should have installed it (Debian package prometheus)")
		}
		t.Skip("promtool not installed; run scripts/test-deps (Debian package prometheus)")
	}
	return p
}

func TestPromtoolCheckRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	abs, err := filepath.Abs(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool(t), "test", "rules", abs).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
