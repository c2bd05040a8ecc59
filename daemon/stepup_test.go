package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

// resourceUser is userGrant for a protected resource whose client names
// the provider: no discovery, the resource sent with every request.
func resourceUser(c *config.Config) {
	userGrant(c)
	g := c.Grants["user"]
	g.ProtectedResource = "http://127.0.0.1:1/mcp"
	c.Grants["user"] = g
}

// authorizePaste starts a paste-back authorization and returns its answer.
func (h *harness) authorizePaste(name string) api.AuthorizeResponse {
	h.t.Helper()
	code, body := h.post("/v1/tokens/"+name+"/authorize", `{"paste":true}`)
	if code != 200 {
		h.t.Fatalf("authorize --paste: %d %s", code, body)
	}
	var ar api.AuthorizeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		h.t.Fatal(err)
	}
	if ar.PasteID == "" || !strings.HasPrefix(ar.URL, h.prov.URL()+"/") {
		h.t.Fatalf("paste authorization answered %+v: want the provider's URL and a paste id", ar)
	}
	return ar
}

// approve follows the provider's URL (which approves at once) and returns
// the address the browser ends on: the redirect URI with the answer.
func (h *harness) approve(authURL string) string {
	h.t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, _ := get(h.t, noCookies, u.String(), "")
	loc := resp.Header.Get("Location")
	if lu, err := url.Parse(loc); err != nil || lu.Query().Get("state") == "" {
		h.t.Fatalf("provider did not redirect with an answer: %d %q", resp.StatusCode, loc)
	}
	return loc
}

func (h *harness) complete(name, pasteID, address string) (int, []byte) {
	h.t.Helper()
	b, _ := json.Marshal(api.CompleteRequest{PasteID: pasteID, URL: address})
	return h.post("/v1/tokens/"+name+"/authorize/complete", string(b))
}

// A paste-back authorization: the provider's own URL, approved anywhere,
// and the address the browser ended on pasted back. A wrong paste id
// leaves it pending; the right one completes it, once; a replay and a
// forged state are refused with paste_refused, and nothing changes.
func TestPasteAuthorization(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	ar := h.authorizePaste("user")
	landed := h.approve(ar.URL)

	// The browser's redirect reaching the callback listener (a browser on
	// this host) cannot use it: it has no binding.
	lu, _ := url.Parse(landed)
	if resp, page := get(t, noCookies, h.onListener(lu), ""); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "--paste") {
		t.Fatalf("callback of a paste-back authorization: %d %s", resp.StatusCode, page)
	}
	code, body := h.complete("user", "not-"+ar.PasteID, landed)
	if code != http.StatusBadRequest || !strings.Contains(string(body), api.CodePasteRefused) {
		t.Fatalf("paste with another id: %d %s", code, body)
	}
	// Another user with the right id: the binding includes the uid.
	g := h.d.grant("user")
	if err := h.d.completePaste(t.Context(), g, peer{ok: true, uid: h.d.selfUID + 1}, api.CompleteRequest{PasteID: ar.PasteID, URL: landed}); err == nil || !strings.Contains(err.Error(), "another user") {
		t.Fatalf("paste by another uid: %v", err)
	}
	code, body = h.complete("user", ar.PasteID, landed)
	if code != http.StatusOK {
		t.Fatalf("paste: %d %s", code, body)
	}
	var st api.GrantStatus
	if err := json.Unmarshal(body, &st); err != nil || st.State != api.StateValid {
		t.Fatalf("status after paste: %s", body)
	}
	tok := h.token("user")
	if !h.prov.Valid(tok.AccessToken) {
		t.Fatal("pasted authorization's token is not valid")
	}
	gen := h.stored("user").Generation
	code, body = h.complete("user", ar.PasteID, landed)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "already used") {
		t.Fatalf("replayed paste: %d %s", code, body)
	}
	forged := strings.Replace(landed, "state=", "state=forged", 1)
	if code, body = h.complete("user", ar.PasteID, forged); code != http.StatusBadRequest || !strings.Contains(string(body), api.CodePasteRefused) {
		t.Fatalf("forged paste: %d %s", code, body)
	}
	if code, body = h.complete("user", ar.PasteID, "not an address"); code != http.StatusBadRequest || !strings.Contains(string(body), "not an absolute address") {
		t.Fatalf("garbage paste: %d %s", code, body)
	}
	if got := h.stored("user").Generation; got != gen {
		t.Fatalf("a refused paste changed the token: generation %d, was %d", got, gen)
	}
	h.logMustNotContain(tok.AccessToken, ar.PasteID)
}

// RFC 9207: the provider advertises iss, so a pasted answer whose iss is
// missing or another server's is refused, error answers included, and its
// code is never exchanged.
func TestPasteIssuerChecked(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	for _, tc := range []struct {
		name, want string
		alter      func(q url.Values)
	}{
		{"missing", "no iss parameter", func(q url.Values) { q.Del("iss") }},
		{"wrong", "iss", func(q url.Values) { q.Set("iss", "https://evil.example.com") }},
		{"error answer without iss", "no iss parameter", func(q url.Values) {
			q.Del("iss")
			q.Del("code")
			q.Set("error", "access_denied")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ar := h.authorizePaste("user")
			u, _ := url.Parse(h.approve(ar.URL))
			q := u.Query()
			tc.alter(q)
			u.RawQuery = q.Encode()
			before := h.prov.Stats().ByGrant["authorization_code"]
			code, body := h.complete("user", ar.PasteID, u.String())
			if code != http.StatusBadRequest || !strings.Contains(string(body), tc.want) {
				t.Fatalf("paste with iss %s: %d %s", tc.name, code, body)
			}
			if after := h.prov.Stats().ByGrant["authorization_code"]; after != before {
				t.Fatal("the code of a refused answer was exchanged")
			}
		})
	}
	if st := h.status("user"); st.State != api.StatePendingAuthorization {
		t.Fatalf("state after refused answers: %s", st.State)
	}
}

// A protected_resource grant names its resource (RFC 8707) on the
// authorization request, the code exchange and every refresh.
func TestResourceOnEveryRequest(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: resourceUser})
	ar := h.authorizePaste("user")
	if u, _ := url.Parse(ar.URL); u.Query().Get("resource") != "http://127.0.0.1:1/mcp" {
		t.Fatalf("authorization URL lacks the resource: %s", ar.URL)
	}
	if code, body := h.complete("user", ar.PasteID, h.approve(ar.URL)); code != 200 {
		t.Fatalf("paste: %d %s", code, body)
	}
	if code, body := h.post("/v1/tokens/user/refresh", ""); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	h.advance(10 * time.Minute) // the scheduled refresh too
	want := []string{"authorize http://127.0.0.1:1/mcp", "authorization_code http://127.0.0.1:1/mcp", "refresh_token http://127.0.0.1:1/mcp"}
	got := h.prov.Stats().Resources
	if len(got) < 4 || !slices.Equal(got[:3], want) {
		t.Fatalf("resources sent: %q, want %q then more refreshes", got, want)
	}
	for _, r := range got[3:] {
		if r != want[2] {
			t.Fatalf("a later request sent %q", r)
		}
	}
	if s := h.status("user"); s.ProtectedResource != "http://127.0.0.1:1/mcp" {
		t.Errorf("status protected_resource = %q", s.ProtectedResource)
	}
}

// A step-up records the scopes a resource asked for; the grant then needs
// an authorization (status, hook-visible state), the next one asks for
// the held scopes and the new ones, and it clears the step-up. Scopes the
// token has change nothing; more than three step-ups within ten minutes
// are refused with 429 step_up_limit.
func TestStepUp(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	ar := h.authorizePaste("user")
	if code, body := h.complete("user", ar.PasteID, h.approve(ar.URL)); code != 200 {
		t.Fatalf("paste: %d %s", code, body)
	}
	held := h.status("user").Scope
	if !strings.Contains(held, "openid") {
		t.Fatalf("held scope %q", held)
	}
	stepUp := func(scope string) (int, api.GrantStatus, string) {
		b, _ := json.Marshal(api.StepUpRequest{Scope: scope, Challenge: `Bearer error="insufficient_scope", scope="` + scope + `"`})
		code, body := h.post("/v1/tokens/user/step-up", string(b))
		var st api.GrantStatus
		_ = json.Unmarshal(body, &st)
		return code, st, string(body)
	}
	if code, st, body := stepUp("openid"); code != 200 || st.State != api.StateValid || len(st.StepUpScopes) != 0 {
		t.Fatalf("step-up for a held scope: %d %s", code, body)
	}
	code, st, body := stepUp("notes:write openid")
	if code != 200 || st.State != api.StateReauthorizationRequired || !slices.Equal(st.StepUpScopes, []string{"notes:write"}) || !strings.Contains(st.StepUpReason, "insufficient_scope") {
		t.Fatalf("step-up: %d %s", code, body)
	}
	// The token is still served for what it covers.
	h.token("user")
	// The scope may come in the challenge alone.
	if code, body := h.post("/v1/tokens/user/step-up", `{"www_authenticate":"Bearer error=\"insufficient_scope\", scope=\"notes:admin\""}`); code != 200 || !strings.Contains(string(body), `"notes:admin"`) {
		t.Fatalf("step-up by challenge: %d %s", code, body)
	}
	if code, _, body = stepUp("notes:admin"); code != 200 {
		t.Fatalf("second step-up: %d %s", code, body)
	}
	if code, _, body = stepUp("notes:delete"); code != http.StatusTooManyRequests || !strings.Contains(body, api.CodeStepUpLimit) {
		t.Fatalf("fourth step-up within the window: %d %s", code, body)
	}
	ar = h.authorizePaste("user")
	u, _ := url.Parse(ar.URL)
	asked := strings.Fields(u.Query().Get("scope"))
	for _, s := range []string{"openid", "offline_access", "notes:write", "notes:admin"} {
		if !slices.Contains(asked, s) {
			t.Fatalf("the authorization after a step-up asks for %q, lacking %s", asked, s)
		}
	}
	if slices.Contains(asked, "notes:delete") {
		t.Fatal("a refused step-up's scope was asked for")
	}
	if code, body := h.complete("user", ar.PasteID, h.approve(ar.URL)); code != 200 {
		t.Fatalf("paste: %d %s", code, body)
	}
	if st := h.status("user"); st.State != api.StateValid || len(st.StepUpScopes) != 0 {
		t.Fatalf("status after the step-up's authorization: %+v", st)
	}
	// The window moves on.
	h.advance(stepUpWindow)
	if code, _, body = stepUp("notes:delete"); code != 200 {
		t.Fatalf("step-up after the window: %d %s", code, body)
	}
}

// A token the resource refused is refreshed once, however many callers
// report it together; all get the new token. Reporting the old token
// again gets the current one at once, with no new refresh.
func TestRejectedTokenRefreshedOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	ar := h.authorizePaste("user")
	if code, body := h.complete("user", ar.PasteID, h.approve(ar.URL)); code != 200 {
		t.Fatalf("paste: %d %s", code, body)
	}
	old := h.token("user").AccessToken
	before := h.prov.Stats().Refreshes
	h.prov.SetLatency(200 * time.Millisecond) // the callers arrive while the refresh runs
	body, _ := json.Marshal(api.RejectedRequest{AccessToken: old, Challenge: `Bearer error="invalid_token"`})
	const callers = 8
	got := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, b := h.post("/v1/tokens/user/rejected", string(body))
			var tr api.TokenResponse
			if code != 200 || json.Unmarshal(b, &tr) != nil {
				t.Errorf("rejected: %d %s", code, b)
				return
			}
			got[i] = tr.AccessToken
		}()
	}
	wg.Wait()
	h.prov.SetLatency(0)
	if n := h.prov.Stats().Refreshes - before; n != 1 {
		t.Fatalf("%d refreshes for one rejected token, want 1", n)
	}
	for _, tok := range got {
		if tok == old || tok != got[0] {
			t.Fatalf("callers got %q; want one new token", got)
		}
	}
	code, b := h.post("/v1/tokens/user/rejected", string(body))
	if code != 200 || !strings.Contains(string(b), got[0]) {
		t.Fatalf("rejected old token again: %d %s", code, b)
	}
	if n := h.prov.Stats().Refreshes - before; n != 1 {
		t.Fatalf("reporting a token the grant moved on from refreshed again")
	}
	if s := h.prov.Stats(); s.Reuses != 0 {
		t.Fatalf("%d refresh token reuses", s.Reuses)
	}
	if code, b := h.post("/v1/tokens/user/rejected", `{}`); code != http.StatusBadRequest {
		t.Fatalf("rejected without a token: %d %s", code, b)
	}
	// A token refused for its scopes is a step-up, not a refresh.
	scoped, _ := json.Marshal(api.RejectedRequest{AccessToken: got[0], Challenge: `Bearer error="insufficient_scope", scope="write"`})
	if code, b := h.post("/v1/tokens/user/rejected", string(scoped)); code != http.StatusBadRequest || !strings.Contains(string(b), "step-up") {
		t.Fatalf("rejected for insufficient_scope: %d %s", code, b)
	}
	if n := h.prov.Stats().Refreshes - before; n != 1 {
		t.Fatalf("a token refused for its scopes was refreshed")
	}
}

// A client_credentials grant on a protected resource names it on every
// token request.
func TestResourceOnClientCredentials(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		g := c.Grants["cc"]
		g.ProtectedResource = "https://api.example.com/v1"
		c.Grants["cc"] = g
	}})
	h.token("cc")
	if code, body := h.post("/v1/tokens/cc/refresh", ""); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	got := h.prov.Stats().Resources
	if len(got) != 2 || got[0] != "client_credentials https://api.example.com/v1" || got[1] != got[0] {
		t.Fatalf("resources sent: %q", got)
	}
}

// A step-up of a grant that needs no person: tokend authorize obtains a
// token with the held and the asked-for scopes at once, which ends it.
func TestStepUpClientCredentials(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	if s := h.status("cc").Scope; s != "read" {
		t.Fatalf("scope %q", s)
	}
	if code, body := h.post("/v1/tokens/cc/step-up", `{"scope":"write"}`); code != 200 || !strings.Contains(string(body), `"step_up_scopes":["write"]`) {
		t.Fatalf("step-up: %d %s", code, body)
	}
	if code, body := h.post("/v1/tokens/cc/authorize", ""); code != 200 {
		t.Fatalf("authorize: %d %s", code, body)
	}
	st := h.status("cc")
	if st.State != api.StateValid || len(st.StepUpScopes) != 0 || !slices.Equal(strings.Fields(st.Scope), []string{"read", "write"}) {
		t.Fatalf("after authorize: state %s, step-up %q, scope %q", st.State, st.StepUpScopes, st.Scope)
	}
}

// A recorded step-up is a hook event; a covered one and a refused one are
// not, and the metric counts all three.
func TestStepUpHookAndMetric(t *testing.T) {
	out := filepath.Join(t.TempDir(), "events")
	script := fmt.Sprintf(`printf '%%s %%s %%s\n' "$TOKEND_EVENT_NAME" "$TOKEND_EVENT_GRANT" "$TOKEND_EVENT_STATE" >> '%s'`, out)
	m := &stepUpCounts{}
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Events: []string{config.EventStepUp}, Command: []string{"sh", "-c", script}}}
	}})
	h.startWith(Options{Metrics: m})
	for _, scope := range []string{"read", "write", "admin", "delete", "more"} {
		h.post("/v1/tokens/cc/step-up", `{"scope":"`+scope+`"}`)
	}
	want := []string{"step_up cc reauthorization_required", "step_up cc reauthorization_required", "step_up cc reauthorization_required"}
	waitFor(t, "the step-up events", func() bool { return len(readLines(t, out)) >= len(want) })
	if got := readLines(t, out); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if got := m.get(); !slices.Equal(got, []string{"cc covered", "cc recorded", "cc recorded", "cc recorded", "cc limited"}) {
		t.Fatalf("step-up metric %q", got)
	}
}

// stepUpCounts is a Metrics that records ObserveStepUp.
type stepUpCounts struct {
	nopMetrics
	mu   sync.Mutex
	seen []string
}

func (m *stepUpCounts) ObserveStepUp(grant, result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = append(m.seen, grant+" "+result)
}

func (m *stepUpCounts) get() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.seen)
}
