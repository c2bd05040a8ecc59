package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

func TestFetchAndScheduledRefresh(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	if first.AccessToken == "" || first.TokenType != "Bearer" || first.Scope != "read" {
		t.Fatalf("first token: %+v", first)
	}
	if !h.prov.Valid(first.AccessToken) {
		t.Fatal("served token is not valid at the provider")
	}
	if first.ExpiresIn != 600 || !first.ExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("expiry: in %d at %v", first.ExpiresIn, first.ExpiresAt)
	}
	// Raw form, both ways of asking.
	code, body := h.get("/v1/tokens/cc?format=raw")
	if code != 200 || strings.TrimSpace(string(body)) != first.AccessToken {
		t.Fatalf("raw: %d %q", code, body)
	}

	// Not due before 70 % of the lifetime, whatever the jitter.
	h.advance(7 * time.Minute)
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("refreshed before it was due")
	}
	// Due by 80 %: renewed before expiry, twice over.
	h.advance(1 * time.Minute)
	second := h.token("cc")
	if second.AccessToken == first.AccessToken {
		t.Fatal("not refreshed at 80 % of the lifetime")
	}
	h.advance(8 * time.Minute)
	third := h.token("cc")
	if third.AccessToken == second.AccessToken || !h.prov.Valid(third.AccessToken) {
		t.Fatal("not refreshed a second time")
	}
	st := h.status("cc")
	if st.State != api.StateValid || st.Generation != 3 || len(st.History) != 3 {
		t.Fatalf("status: %+v", st)
	}
	if got := h.prov.Stats().ByGrant["client_credentials"]; got != 3 {
		t.Fatalf("provider saw %d client_credentials requests, want 3", got)
	}
	h.logMustNotContain(h.prov.Issued()...)
	h.logMustNotContain(testSecret)
}

func TestUnknownGrantAndList(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	code, body := h.get("/v1/tokens/nope")
	var e api.ErrorResponse
	_ = json.Unmarshal(body, &e)
	if code != http.StatusNotFound || e.Error != "unknown_grant" {
		t.Fatalf("unknown grant: %d %s", code, body)
	}
	code, body = h.get("/v1/tokens")
	var list api.TokenList
	if err := json.Unmarshal(body, &list); err != nil || code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(list.Grants) != 1 || list.Grants[0].Name != "cc" || list.Grants[0].State != api.StateValid {
		t.Fatalf("list: %+v", list)
	}
	for _, s := range h.prov.Issued() {
		if strings.Contains(string(body), s) {
			t.Fatal("the list shows a secret")
		}
	}
	code, _ = h.do(http.MethodDelete, "/v1/tokens/cc")
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", code)
	}
}

func TestAccessRules(t *testing.T) {
	a, err := resolveAccess(config.Readers{UIDs: []int{1000}, GIDs: []int{50}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p    peer
		want bool
	}{
		{peer{ok: true, uid: 1000, gid: 1000}, true},
		{peer{ok: true, uid: 1001, gid: 50}, true},
		{peer{ok: true, uid: 1001, gid: 1001}, false},
		{peer{ok: false, uid: 1000}, false},
	}
	for _, c := range cases {
		if got := a.allows(c.p); got != c.want {
			t.Errorf("allows(%+v) = %v", c.p, got)
		}
	}
	d := &Daemon{selfUID: 4242}
	if !d.isOperator(peer{ok: true, uid: 0}) || !d.isOperator(peer{ok: true, uid: 4242}) || d.isOperator(peer{ok: true, uid: 1000}) {
		t.Fatal("operator rules")
	}
}

// A provider answering garbage (or no access token) leaves the stored
// token untouched and says why in the status.
func TestMalformedProviderAnswers(t *testing.T) {
	for _, kind := range []devprovider.FaultKind{devprovider.FaultHTML, devprovider.FaultEmpty, devprovider.FaultHuge, devprovider.FaultNoAccessToken, devprovider.FaultErrorIn200} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			before := h.stored("cc")
			h.prov.SetFault(devprovider.Fault{Kind: kind})
			go func() { _, _ = h.d.refresh(h.d.grant("cc"), "manual") }()
			waitFor(t, "failure shown", func() bool { return h.status("cc").LastError != "" })
			st := h.status("cc")
			want := api.StateFailing
			if kind == devprovider.FaultNoAccessToken {
				want = api.StateConfigurationError // unservable, not garbage: asking again gets the same
			}
			if st.State != want || st.LastError == "" || st.Failures == 0 {
				t.Fatalf("status after %v: %+v", kind, st)
			}
			after := h.stored("cc")
			if after.AccessToken != before.AccessToken || after.Generation != before.Generation {
				t.Fatal("stored token changed")
			}
			if got := h.token("cc"); got.AccessToken != before.AccessToken {
				t.Fatal("the still-valid token is no longer served")
			}
			if len(st.LastError) > 300 {
				t.Fatalf("error too long (body leaked?): %q", st.LastError)
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault429, RetryAfter: 40 * time.Second, Times: 1})
	before := h.prov.Stats().TokenRequests
	for h.prov.Stats().TokenRequests == before { // until due: the refresh hits the 429
		h.advance(15 * time.Second)
	}
	h.clock.Advance(30 * time.Second)
	h.settle() // a retry due within the 30 s has been made by now
	if n := h.prov.Stats().TokenRequests; n != before+1 {
		t.Fatalf("retried after 30 s despite Retry-After: 40 (%d requests)", n-before)
	}
	h.clock.Advance(11 * time.Second)
	waitFor(t, "retry", func() bool { return h.prov.Stats().TokenRequests == before+2 })
	waitFor(t, "refreshed", func() bool { return h.status("cc").Generation == 2 })
}

func TestBackoffGivesUpBeforeExpiry(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500})
	h.advance(9*time.Minute + 30*time.Second)
	st := h.status("cc")
	if st.State != api.StateFailing {
		t.Fatalf("state %s, want failing", st.State)
	}
	h.advance(time.Minute)
	st = h.status("cc")
	if st.State != api.StateExpired {
		t.Fatalf("state %s after expiry, want expired", st.State)
	}
	code, body := h.get("/v1/tokens/cc")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("fetch of expired token with provider down: %d %s", code, body)
	}
	// Answered at once, not after waiting out the refresh's backoff.
	if !strings.Contains(string(body), "tokend is retrying") || !strings.Contains(string(body), "server_error") {
		t.Fatalf("503 does not say why: %s", body)
	}
	// Back up: the next tick recovers.
	h.prov.ClearFault()
	h.advance(15 * time.Second)
	if st := h.status("cc"); st.State != api.StateValid {
		t.Fatalf("did not recover: %+v", st)
	}
}

func seedAuthCode(t *testing.T, h *harness, rt string, mut func(*store.Token)) {
	t.Helper()
	st, err := store.Open(store.Options{Path: h.cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	tok := store.Token{Grant: "user", AccessToken: "at-old", RefreshToken: rt, TokenType: "Bearer", Obtained: t0.Add(-time.Hour), Expiry: t0.Add(-time.Minute), State: api.StateValid, Generation: 1}
	if mut != nil {
		mut(&tok)
	}
	if err := st.PutToken(tok, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
}

func userGrant(c *config.Config) {
	c.Grants = map[string]config.Grant{"user": {Client: "app", Type: config.GrantAuthorizationCode, Scopes: []string{"openid", "offline_access"}}}
	cl := c.Clients["app"]
	cl.RedirectURI = "http://127.0.0.1:1/callback"
	c.Clients["app"] = cl
}

func TestInvalidGrantNeedsReauthorization(t *testing.T) {
	h := newHarness(t, harnessOpts{config: userGrant, noRun: true})
	seedAuthCode(t, h, "rt-unknown-to-provider", nil)
	h.start()
	st := h.status("user")
	if st.State != api.StateReauthorizationRequired || st.LastErrorCode != "invalid_grant" {
		t.Fatalf("status: %+v", st)
	}
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("invalid_grant was retried: %d requests", n)
	}
	code, body := h.get("/v1/tokens/user")
	if code != http.StatusConflict {
		t.Fatalf("fetch: %d %s", code, body)
	}
	// Ticks do not retry a dead grant.
	h.advance(time.Minute)
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("dead grant retried on tick: %d requests", n)
	}
	if !strings.Contains(h.logs.String(), "invalid_grant") {
		t.Fatal("invalid_grant not logged")
	}
}

func TestPasswordGrantReobtainsWhenRefreshTokenDies(t *testing.T) {
	h := newHarness(t, harnessOpts{
		prov: devprovider.Options{Users: map[string]string{"svc": "pw"}, Rotate: true},
		config: func(c *config.Config) {
			c.Grants = map[string]config.Grant{"pw": {Client: "app", Type: config.GrantPassword, Username: "svc", Password: oauth.NewSecret("pw")}}
		},
	})
	first := h.stored("pw")
	if first.RefreshToken == "" {
		t.Fatal("no refresh token from the password grant")
	}
	h.prov.RevokeFamilyOf(first.RefreshToken)
	h.advance(8 * time.Minute)
	st := h.status("pw")
	if st.State != api.StateValid || st.Generation != 2 {
		t.Fatalf("status: %+v", st)
	}
	if h.prov.Stats().ByGrant["password"] != 2 {
		t.Fatalf("password grant not used again: %+v", h.prov.Stats().ByGrant)
	}
	h.logMustNotContain("pw\"", first.RefreshToken)
}

// With rotation on, tokend never sends a refresh token twice.
func TestRotationNeverReusesRefreshToken(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true, AccessTTL: time.Minute, AutoApprove: true}, config: userGrant})
	h.authorizeViaCallback("user")
	seen := map[string]bool{}
	for range 20 {
		h.advance(50 * time.Second)
		rt := h.stored("user").RefreshToken
		seen[rt] = true
	}
	s := h.prov.Stats()
	if s.Reuses != 0 {
		t.Fatalf("%d refresh token reuses", s.Reuses)
	}
	if s.Refreshes < 15 || len(seen) < 15 {
		t.Fatalf("refreshes %d, distinct refresh tokens %d", s.Refreshes, len(seen))
	}
	if st := h.status("user"); st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
}

// authorizeViaCallback runs the authorization-code flow in a browser: the
// start page binds it, the provider approves at once, and its redirect is
// delivered to the daemon's callback with the binding cookie.
func (h *harness) authorizeViaCallback(name string) string {
	h.t.Helper()
	b := newBrowser(h.t)
	auth := h.openStart(b, h.startAuthorization(name))
	cb := h.codeFor(b, auth)
	resp, body := get(h.t, b, cb, "")
	if resp.StatusCode != 200 {
		h.t.Fatalf("callback: %d %s", resp.StatusCode, body)
	}
	h.settle()
	return cb
}

func TestCallbackOnceOnly(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	if st := h.status("user"); st.State != api.StatePendingAuthorization {
		t.Fatalf("before authorization: %+v", st)
	}
	cb := h.authorizeViaCallback("user")
	tok := h.token("user")
	if !h.prov.Valid(tok.AccessToken) {
		t.Fatal("authorized token not valid")
	}
	gen := h.stored("user").Generation
	// Replay: refused, nothing changed.
	resp, err := http.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
	// Forged state.
	resp, err = http.Get("http://" + h.d.CallbackAddr() + "/callback?code=x&state=forged-state-value-123456")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged callback: %d", resp.StatusCode)
	}
	if got := h.stored("user"); got.Generation != gen || got.AccessToken != tok.AccessToken {
		t.Fatal("a refused callback changed the token")
	}
	if h.prov.Stats().ByGrant["authorization_code"] != 1 {
		t.Fatal("a refused callback reached the provider")
	}
}

func TestCallbackAccessDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{config: userGrant})
	b := newBrowser(t)
	state := h.openStart(b, h.startAuthorization("user")).Query().Get("state")
	resp, _ := get(t, b, "http://"+h.d.CallbackAddr()+"/callback?error=access_denied&state="+url.QueryEscape(state)+"&iss="+url.QueryEscape(h.prov.URL()), "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("denied callback: %d", resp.StatusCode)
	}
	st := h.status("user")
	if !strings.Contains(st.Auth, "access_denied") || st.State != api.StatePendingAuthorization {
		t.Fatalf("status after denial: %+v", st)
	}
}

// A fetch of an expired token refreshes it and waits; a fetch of a valid
// token never waits for a refresh in flight.
func TestOnDemandAndNeverWait(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) { c.Refresh.Schedule = config.MustParseSchedule("@every 24h") }})
	first := h.token("cc")

	// A refresh that hangs at the provider while the token is still valid.
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultSlow, Delay: time.Hour, Times: 1})
	g := h.d.grant("cc")
	go func() { _, _ = h.d.refresh(g, "manual") }()
	waitFor(t, "slow refresh in flight", func() bool { return h.prov.Stats().Faulted == 1 })
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("a valid token was not served during a refresh")
	}
	h.stop()

	// Restart after expiry: the fetch itself triggers the refresh.
	h.prov.ClearFault()
	h2 := &harness{t: t, clock: h.clock, prov: h.prov, cfg: h.cfg, sock: h.sock, http: h.http, logs: &testutil.SyncBuffer{}, step: h.step}
	h2.start()
	// Past expiry with no tick in between: only the fetch can refresh.
	h.clock.Advance(11 * time.Minute)
	tok := h2.token("cc")
	if tok.AccessToken == first.AccessToken || !h.prov.Valid(tok.AccessToken) {
		t.Fatal("expired token not refreshed on demand")
	}
}

func TestRestartServesStoredToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	n := h.prov.Stats().TokenRequests
	h.stop()
	h2 := &harness{t: t, clock: h.clock, prov: h.prov, cfg: h.cfg, sock: h.sock, http: h.http, logs: &testutil.SyncBuffer{}, step: h.step}
	h2.start()
	if got := h2.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("restart did not serve the stored token")
	}
	if h.prov.Stats().TokenRequests != n {
		t.Fatal("restart asked the provider for a token it already had")
	}
}

func TestSecondDaemonOnSameStore(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	cfg := *h.cfg
	cfg.Listen.Socket = h.sock + "2"
	d, err := New(&cfg, Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(context.Background(), serversOf(d)) }()
	select {
	case err := <-errc:
		if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), h.cfg.Store.Path) {
			t.Fatalf("second daemon: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second daemon on the same store did not fail")
	}
	// The first one still serves.
	h.token("cc")
}

func TestReloadKeepsTokensAndAddsGrants(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{
		"cc":  h.cfg.Grants["cc"],
		"cc2": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"write"}},
	}
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("reload dropped the stored token")
	}
	if got := h.token("cc2"); got.Scope != "write" {
		t.Fatalf("new grant: %+v", got)
	}
}

func TestInvalidClientIsCredentialsError(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidClient})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	st := h.status("cc")
	if st.State != api.StateCredentialsError || st.LastErrorCode != "invalid_client" {
		t.Fatalf("status: %+v", st)
	}
	n := h.prov.Stats().TokenRequests
	h.advance(time.Minute)
	if h.prov.Stats().TokenRequests != n {
		t.Fatal("credentials error retried on tick")
	}
}

func TestRevoke(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	tok := h.stored("user")
	code, body := h.do(http.MethodPost, "/v1/tokens/user/revoke")
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if h.prov.Valid(tok.AccessToken) || h.prov.RefreshValid(tok.RefreshToken) {
		t.Fatal("tokens still valid at the provider")
	}
	after := h.stored("user")
	if after.AccessToken != "" || after.RefreshToken != "" {
		t.Fatal("revoked tokens still stored")
	}
	if code, _ := h.get("/v1/tokens/user"); code != http.StatusConflict {
		t.Fatalf("fetch after revoke: %d", code)
	}
}

func TestDynamicRegistrationOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AllowRegistration: true}, config: func(c *config.Config) {
		c.Clients["dyn"] = config.Client{Provider: "test"}
		c.Grants = map[string]config.Grant{"dyn": {Client: "dyn", Type: config.GrantClientCredentials}}
	}})
	if got := h.token("dyn"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("token of a registered client invalid")
	}
	if n := h.prov.Stats().Registrations; n != 1 {
		t.Fatalf("%d registrations", n)
	}
	h.stop()
	h2 := &harness{t: t, clock: h.clock, prov: h.prov, cfg: h.cfg, sock: h.sock, http: h.http, logs: &testutil.SyncBuffer{}, step: h.step}
	h2.start()
	h2.do(http.MethodPost, "/v1/tokens/dyn/refresh")
	if n := h.prov.Stats().Registrations; n != 1 {
		t.Fatalf("registered again after restart: %d registrations", n)
	}
	if got := h2.token("dyn"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("token after restart invalid")
	}
}

func TestDeviceFlow(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true}, config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{"dev": {Client: "app", Type: config.GrantDeviceCode, Scopes: []string{"read"}}}
	}})
	code, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
	if code != 200 {
		t.Fatalf("authorize: %d %s", code, body)
	}
	var ar api.AuthorizeResponse
	_ = json.Unmarshal(body, &ar)
	if ar.Kind != config.GrantDeviceCode || ar.UserCode == "" || ar.VerificationURI == "" {
		t.Fatalf("device authorization: %+v", ar)
	}
	if err := h.prov.ApproveDevice(ar.UserCode); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "device token", func() bool { return h.status("dev").State == api.StateValid })
	st := h.status("dev")
	if !st.HasRefreshToken || !strings.HasPrefix(st.Auth, "authorized") {
		t.Fatalf("status: %+v", st)
	}
	if !h.prov.Valid(h.token("dev").AccessToken) {
		t.Fatal("device token not valid")
	}
}

func TestDeviceFlowDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{"dev": {Client: "app", Type: config.GrantDeviceCode}}
	}})
	_, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
	var ar api.AuthorizeResponse
	_ = json.Unmarshal(body, &ar)
	if err := h.prov.DenyDevice(ar.UserCode); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "denial recorded", func() bool { return strings.Contains(h.status("dev").Auth, "access_denied") })
	if st := h.status("dev"); st.State != api.StatePendingAuthorization || st.HasRefreshToken {
		t.Fatalf("status after denial: %+v", st)
	}
}

// A provider whose discovery is down at start is used through the
// endpoints cached in the store.
func TestDiscoveryFallsBackToCache(t *testing.T) {
	dead := "http://127.0.0.1:1"
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Providers["test"] = config.Provider{Issuer: dead}
	}})
	st, err := store.Open(store.Options{Path: h.cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(oauth.Endpoints{Issuer: dead, Token: h.prov.URL() + "/token"})
	if err := st.PutProvider("test", meta); err != nil {
		t.Fatal(err)
	}
	st.Close()
	h.start()
	if got := h.token("cc"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("no token through cached endpoints")
	}
	if !strings.Contains(h.logs.String(), "using cached endpoints") {
		t.Fatal("fallback not logged")
	}
}

// A refresh token's own lifetime (Personium: 24 h) is kept from lapsing
// even when the access token would outlive it.
func TestRefreshTokenLifetimeKeptAlive(t *testing.T) {
	h := newHarness(t, harnessOpts{
		step: time.Hour,
		prov: devprovider.Options{Rotate: true, AccessTTL: 48 * time.Hour, RefreshTTL: 24 * time.Hour, AutoApprove: true},
		config: func(c *config.Config) {
			userGrant(c)
			c.Refresh.Schedule = config.MustParseSchedule("@every 1h")
			c.Refresh.MaxInterval = 1000 * time.Hour
		},
	})
	h.authorizeViaCallback("user")
	first := h.stored("user")
	if !first.RefreshExpiry.Equal(t0.Add(24 * time.Hour)) {
		t.Fatalf("refresh expiry %v", first.RefreshExpiry)
	}
	h.advance(17 * time.Hour)
	if h.stored("user").Generation != first.Generation {
		t.Fatal("refreshed too early")
	}
	h.advance(2 * time.Hour)
	got := h.stored("user")
	if got.Generation != first.Generation+1 || !got.RefreshExpiry.After(first.RefreshExpiry) {
		t.Fatalf("refresh token not renewed before its expiry: %+v", got)
	}
	for range 3 { // and so on, day after day
		h.advance(24 * time.Hour)
	}
	if st := h.status("user"); st.State != api.StateValid || h.prov.Stats().Reuses != 0 {
		t.Fatalf("chain lapsed: %+v", st)
	}
}

func TestSocketModes(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	var sockDir string
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		sockDir = filepath.Join(filepath.Dir(c.Store.Path), "run", "tokend")
		c.Listen.Socket = filepath.Join(sockDir, "tokend.sock")
		c.Listen.SocketMode = config.Mode(0o640)
	}})
	fi, err := os.Stat(sockDir)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("socket directory: %v %v", fi.Mode(), err)
	}
	fi, err = os.Lstat(h.sock)
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	fi, err = os.Stat(h.cfg.Store.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store: %v %v", fi.Mode(), err)
	}
	h.stop()
	if _, err := os.Lstat(h.sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}

// A file that is not a socket where the socket should be is not removed.
func TestSocketPathOccupied(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	if err := os.WriteFile(h.sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(h.cfg, Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), serversOf(d))
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run: %v", err)
	}
	if b, _ := os.ReadFile(h.sock); string(b) != "precious" {
		t.Fatal("the file at the socket path was touched")
	}
}

// A refresh running across a reload lands in the reloaded grant: otherwise
// the grant would keep serving (and refreshing with) the old token set.
func TestRefreshAcrossReload(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	first := h.stored("user")
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultSlow, Delay: 300 * time.Millisecond, Times: 1})
	done := make(chan struct{})
	go func() { _, _ = h.d.refresh(h.d.grant("user"), "manual"); close(done) }()
	waitFor(t, "refresh at the provider", func() bool { return h.prov.Stats().Faulted == 1 })
	cfg := *h.cfg
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	<-done
	got := h.d.grant("user").cur.Load()
	if got.Generation != first.Generation+1 || got.RefreshToken == first.RefreshToken {
		t.Fatalf("reloaded grant holds generation %d, want %d", got.Generation, first.Generation+1)
	}
	h.do(http.MethodPost, "/v1/tokens/user/refresh")
	if s := h.prov.Stats(); s.Reuses != 0 {
		t.Fatalf("%d refresh token reuses after the reload", s.Reuses)
	}
}

// An operator's revoke does not queue behind a refresh round that backs
// off (it could until the token expires): it ends the round and goes first.
func TestRevokeEndsBackoffRound(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	tok := h.stored("user")
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500})
	go func() { _, _ = h.d.refresh(h.d.grant("user"), "manual") }()
	waitFor(t, "refresh backing off", func() bool { return h.d.grant("user").backingOff.Load() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://tokend/v1/tokens/user/revoke", nil)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("revoke during a backoff round: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || h.prov.RefreshValid(tok.RefreshToken) {
		t.Fatalf("revoke: %d, refresh token still valid: %v", resp.StatusCode, h.prov.RefreshValid(tok.RefreshToken))
	}
	if st := h.status("user"); st.HasRefreshToken || st.State != api.StateReauthorizationRequired {
		t.Fatalf("after revoke: %+v", st)
	}
}
