package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

const ccSecret = "cc-secret-e2e-0123456789abcdef"

func ccProvider(t *testing.T) *oidcop.Server {
	return oidcop.Start(t, oidcop.Config{ClientCredentialsTTL: 15, Clients: []map[string]any{{
		"client_id":      "cc",
		"client_secret":  ccSecret,
		"grant_types":    []string{"client_credentials"},
		"response_types": []string{},
		"redirect_uris":  []string{},
	}}})
}

func ccConfig(s *Setup, issuer string) string {
	return s.Config(issuer, fmt.Sprintf(`  svc:
    provider: op
    client_id: cc
    client_secret_file: %s
    auth_method: client_secret_basic
`, s.SecretFile("cc", ccSecret)), `  api:
    client: svc
    type: client_credentials
    scopes: [api:read]
    {{READERS}}
`)
}

// TestClientCredentials: tokend obtains a 15 s client_credentials token,
// serves it over the socket and the CLI, renews it before it expires, never
// serves an expired one, exits cleanly on SIGTERM, and after a restart serves
// the stored token without asking the provider.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	o := ccProvider(t)
	s := NewSetup(t)
	td := StartTokend(t, s, ccConfig(s, o.Issuer))
	td.NoLeak(ccSecret)

	start := time.Now()
	first := td.WaitToken("api", 20*time.Second)
	if !strings.EqualFold(first.TokenType, "bearer") {
		t.Errorf("token_type %q, want Bearer", first.TokenType)
	}
	if first.ExpiresIn <= 0 || first.ExpiresIn > 15 {
		t.Errorf("expires_in %d, want 1..15", first.ExpiresIn)
	}
	if d := first.ExpiresAt.Sub(start); d <= 0 || d > 16*time.Second {
		t.Errorf("expires_at %v is %v after the start, want within 15s", first.ExpiresAt, d)
	}
	if first.Scope != "api:read" {
		t.Errorf("scope %q, want api:read", first.Scope)
	}
	if in := o.Introspect(first.AccessToken); !in.Active || in.ClientID != "cc" || in.Scope != "api:read" {
		t.Errorf("introspection = %+v, want active for cc with api:read", in)
	}
	if raw := td.RawToken("api"); raw != first.AccessToken {
		t.Errorf("?format=raw served a different token")
	}
	if out := strings.TrimSpace(td.MustCLI("token", "api")); out != first.AccessToken {
		t.Errorf("`tokend token api` printed %d chars, not the token", len(out))
	}
	if status, body := td.Get("/v1/tokens/nosuch"); status != http.StatusNotFound {
		t.Errorf("unknown grant: %d %s, want 404", status, body)
	}
	if st := td.Status("api"); st.Name != "api" || st.Type != "client_credentials" || st.State != "valid" {
		t.Errorf("status = %+v, want api, client_credentials, valid", st)
	}
	var cliStatus api.GrantStatus
	if out := td.MustCLI("status", "api", "--json"); json.Unmarshal([]byte(out), &cliStatus) != nil || cliStatus.Name != "api" || cliStatus.State != "valid" {
		t.Errorf("`tokend status api --json` printed %q, want the grant's status as JSON", out)
	}
	if out := td.MustCLI("status"); !strings.Contains(out, "api") {
		t.Errorf("`tokend status` does not list grant api:\n%s", out)
	}
	if code, body := td.Metrics("/metrics"); code != http.StatusOK || !strings.Contains(body, "tokend_refresh_total") {
		t.Errorf("/metrics: %d, tokend_refresh_total present: %t", code, strings.Contains(body, "tokend_refresh_total"))
	}

	// Renewed before expiry at least twice.
	w := newTokenWatch(t, o, td, "api")
	w.observe()
	w.until(3, 45*time.Second, 200*time.Millisecond)
	if got := o.Stats().TokenRequests["client_credentials"]; got < 3 || got > 4 {
		t.Errorf("token requests = %d for 3 tokens served", got)
	}

	// SIGTERM right after a renewal: a clean exit, the socket removed.
	if code := td.Stop(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if !socketGone(s.Socket) {
		t.Errorf("socket %s left behind after SIGTERM", s.Socket)
	}
	before := o.Stats().TokenRequests["client_credentials"]

	// Restart: the stored token is served at once, the provider not asked.
	td.Start()
	if tok := td.MustToken("api"); tok.AccessToken != w.last() {
		t.Errorf("after restart tokend served another token than the stored one")
	}
	if got := o.Stats().TokenRequests["client_credentials"]; got != before {
		t.Errorf("token requests went from %d to %d on restart", before, got)
	}
	// And it goes on renewing.
	w.until(len(w.order)+1, 20*time.Second, 200*time.Millisecond)
	if s := o.Stats(); s.InvalidGrant != 0 || s.ServerErrors != 0 {
		t.Errorf("provider stats = %+v", s)
	}
}
