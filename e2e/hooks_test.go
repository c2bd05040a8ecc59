package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHooks: the built tokend runs a real command hook and a real webhook
// on each refresh of a grant served by oidc-provider. The command sees the
// TOKEND_EVENT_* variables and no token; the webhook's signature verifies;
// events arrive in order; and the time from `tokend refresh` returning to
// the hook running is logged as the hook latency.
func TestHooks(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	const hookSecret = "e2e-hook-secret-0123456789"
	o := ccProvider(t)
	s := NewSetup(t)

	type delivery struct {
		at, time   time.Time
		event, gen string
		body       []byte
	}
	var mu sync.Mutex
	var got []delivery
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(hookSecret))
		mac.Write([]byte(r.Header.Get("X-Tokend-Timestamp") + "." + string(body)))
		if !hmac.Equal([]byte("sha256="+hex.EncodeToString(mac.Sum(nil))), []byte(r.Header.Get("X-Tokend-Signature"))) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var e struct {
			Event      string    `json:"event"`
			Generation uint64    `json:"generation"`
			Time       time.Time `json:"time"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, delivery{time.Now(), e.Time, e.Event, fmt.Sprint(e.Generation), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	out := filepath.Join(s.Dir, "hook.out")
	script := fmt.Sprintf(`{ echo "$TOKEND_EVENT_NAME $TOKEND_EVENT_GRANT $TOKEND_EVENT_GENERATION"; env; echo END; } >> '%s'`, out)
	cfg := ccConfig(s, o.Issuer) + fmt.Sprintf(`hooks:
  - name: script
    events: [refreshed, revoked]
    command: [sh, -c, %q]
  - name: web
    events: [refreshed, revoked]
    grants: [api]
    url: %s/hook
    secret_file: %s
    timeout: 5s
`, script, srv.URL, s.SecretFile("hook", hookSecret))
	td := StartTokend(t, s, cfg)
	td.NoLeak(ccSecret, hookSecret)
	if out, err := exec.Command(tokendBin, "check-config", td.cfgPath).CombinedOutput(); err != nil || !strings.Contains(string(out), "hooks (2):") {
		t.Errorf("check-config does not explain the hooks (%v):\n%s", err, out)
	}
	td.WaitToken("api", 20*time.Second)

	var tokens []string
	var lat []time.Duration
	const rounds = 5
	for range rounds {
		td.MustCLI("refresh", "api")
		tokens = append(tokens, td.MustToken("api").AccessToken)
		gen := fmt.Sprint(td.Status("api").Generation)
		eventually(t, 10*time.Second, 2*time.Millisecond, "the webhook for generation "+gen, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range got {
				if d.event == "refreshed" && d.gen == gen {
					lat = append(lat, d.at.Sub(d.time))
					return nil
				}
			}
			return fmt.Errorf("not delivered yet")
		})
	}
	td.MustCLI("revoke", "api")
	eventually(t, 10*time.Second, 10*time.Millisecond, "the revoked event", func() error {
		b, _ := os.ReadFile(out)
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(string(b), "revoked api") {
			return fmt.Errorf("not run yet")
		}
		for _, d := range got {
			if d.event == "revoked" {
				return nil
			}
		}
		return fmt.Errorf("not delivered yet")
	})

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, block := range strings.Split(string(b), "END\n") {
		if first, _, ok := strings.Cut(block, "\n"); ok {
			lines = append(lines, first)
		}
	}
	mu.Lock()
	var web []string
	var bodies strings.Builder
	for _, d := range got {
		web = append(web, d.event+" api "+d.gen)
		bodies.Write(d.body)
	}
	mu.Unlock()
	// A cc grant is obtained again right after its revocation: compare
	// what both saw up to the revocation.
	upToRevoked := func(l []string) []string {
		for i, x := range l {
			if strings.HasPrefix(x, "revoked ") {
				return l[:i+1]
			}
		}
		return l
	}
	lines, web = upToRevoked(lines), upToRevoked(web)
	if len(web) < rounds+1 || !slices.Equal(lines, web) {
		t.Errorf("the command saw\n%s\nthe webhook\n%s", strings.Join(lines, "\n"), strings.Join(web, "\n"))
	}
	for i := 1; i < len(web); i++ {
		var a, b uint64
		fmt.Sscanf(strings.Fields(web[i-1])[2], "%d", &a)
		fmt.Sscanf(strings.Fields(web[i])[2], "%d", &b)
		if b < a {
			t.Errorf("out of order: %q after %q", web[i], web[i-1])
		}
	}
	for _, tok := range tokens {
		if strings.Contains(string(b), tok) || strings.Contains(bodies.String(), tok) {
			t.Fatal("a hook saw an access token")
		}
	}
	if _, m := td.Metrics("/metrics"); !strings.Contains(m, `tokend_hook_runs_total{hook="web",result="success"}`) ||
		!strings.Contains(m, `tokend_hook_runs_total{hook="script",result="success"}`) {
		t.Errorf("metrics lack the hook runs")
	}
	slices.Sort(lat)
	t.Logf("hook latency, event → webhook received (%d refreshes): min %s, median %s, max %s",
		len(lat), lat[0], lat[len(lat)/2], lat[len(lat)-1])
}
