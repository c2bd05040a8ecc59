package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/store"
)

// newBrowser is a person's browser as these tests need it: a cookie jar,
// and redirects left to the test, which follows them one by one (the
// provider redirects to the redirect_uri's port, which the tests move to
// the listener's real port).
func newBrowser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// noCookies is another local user's HTTP client: no jar, no redirects.
var noCookies = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// startAuthorization asks the daemon to authorize an authorization_code
// grant and returns the start URL it answers.
func (h *harness) startAuthorization(name string) *url.URL {
	h.t.Helper()
	code, body := h.do(http.MethodPost, "/v1/tokens/"+name+"/authorize")
	if code != 200 {
		h.t.Fatalf("authorize: %d %s", code, body)
	}
	var ar api.AuthorizeResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		h.t.Fatal(err)
	}
	u, err := url.Parse(ar.URL)
	if err != nil || !strings.HasPrefix(u.Path, "/start/") || len(u.Path) < len("/start/")+43 || u.RawQuery != "" {
		h.t.Fatalf("authorize answered %q; want a start page URL /start/<256-bit id> without a query", ar.URL)
	}
	return u
}

// onListener returns u moved to the callback listener's real address: the
// test configuration's redirect_uri has port 1.
func (h *harness) onListener(u *url.URL) string {
	c := *u
	c.Scheme, c.Host = "http", h.d.CallbackAddr()
	return c.String()
}

// get does a GET with client c and returns the response, body read.
func get(t *testing.T, c *http.Client, rawURL string, host string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// openStart opens the start page in browser b and returns the provider's
// authorization URL it redirects to.
func (h *harness) openStart(b *http.Client, start *url.URL) *url.URL {
	h.t.Helper()
	resp, body := get(h.t, b, h.onListener(start), "")
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("start page: %d %s", resp.StatusCode, body)
	}
	auth, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(auth.String(), h.prov.URL()+"/") {
		h.t.Fatalf("start page redirects to %q, not to the provider", resp.Header.Get("Location"))
	}
	q := auth.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("state")) < 22 {
		h.t.Fatalf("authorization URL lacks PKCE or state: %s", auth)
	}
	return auth
}

// codeFor signs in at the provider (which approves at once) with client c
// and returns the redirect to tokend's callback it answers, moved to the
// listener.
func (h *harness) codeFor(c *http.Client, auth *url.URL) string {
	h.t.Helper()
	resp, _ := get(h.t, c, auth.String(), "")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		h.t.Fatalf("provider did not redirect with a code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return h.onListener(loc)
}

// Code injection: another local user who learned the
// authorization URL (state and PKCE challenge, once readable in the
// browser's argv) signs in to their own account with it and delivers that
// code to the callback first. The callback does not carry the cookie of
// the browser that opened the start page: refused, nothing exchanged or
// stored, and the authorization stays pending, so the operator's browser
// completes it.
func TestCodeInjectionWithoutBrowserBindingRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	start := h.startAuthorization("user")
	operator := newBrowser(t)
	auth := h.openStart(operator, start)

	attackerCode := h.codeFor(noCookies, auth)
	resp, body := get(t, noCookies, attackerCode, "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("injected callback answered %d, want 400:\n%s", resp.StatusCode, body)
	}
	// A guessed cookie is no better.
	forger, _ := cookiejar.New(nil)
	cbURL, _ := url.Parse(attackerCode)
	forger.SetCookies(cbURL, []*http.Cookie{{Name: bindingCookieName(auth.Query().Get("state"), false), Value: randomToken()}})
	if resp, body := get(t, &http.Client{Jar: forger, Timeout: 10 * time.Second}, attackerCode, ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with a forged cookie answered %d, want 400:\n%s", resp.StatusCode, body)
	}
	h.settle()
	if n := h.prov.Stats().ByGrant["authorization_code"]; n != 0 {
		t.Fatalf("the injected code was exchanged (%d code exchanges)", n)
	}
	if tok := h.stored("user"); tok.AccessToken != "" {
		t.Fatal("a token was stored from the injected code")
	}
	st := h.status("user")
	if !strings.HasPrefix(st.Auth, api.AuthCallbackUnbound) || st.State != api.StatePendingAuthorization {
		t.Fatalf("status after the injection: auth %q, state %s; want %q..., pending", st.Auth, st.State, api.AuthCallbackUnbound)
	}

	// The operator's own browser still completes the authorization.
	resp, body = get(t, operator, h.codeFor(operator, auth), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the operator's callback answered %d after the refused injection:\n%s", resp.StatusCode, body)
	}
	h.settle()
	if tok := h.token("user"); !h.prov.Valid(tok.AccessToken) {
		t.Fatal("the operator's token is not valid")
	}
	if n := h.prov.Stats().ByGrant["authorization_code"]; n != 1 {
		t.Fatalf("%d code exchanges, want exactly the operator's", n)
	}
	if st := h.status("user"); !strings.HasPrefix(st.Auth, "authorized") {
		t.Fatalf("status after the operator's callback: %q", st.Auth)
	}
	// The injected code, delivered again now, finds nothing to redeem.
	if resp, _ := get(t, noCookies, attackerCode, ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("late injected callback: %d", resp.StatusCode)
	}
	h.logMustNotContain(auth.Query().Get("state"), strings.TrimPrefix(start.Path, "/start/"))
}

// The start page works once, sets a binding cookie with the right
// attributes, and keeps only hashes in the store; its id, the cookie and
// the state are not on disk.
func TestStartPageOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	start := h.startAuthorization("user")
	id := strings.TrimPrefix(start.Path, "/start/")
	if start.Host != "127.0.0.1:1" || start.Scheme != "http" {
		t.Fatalf("start URL %s is not on the redirect_uri's origin http://127.0.0.1:1", start)
	}

	b := newBrowser(t)
	resp, _ := get(t, b, h.onListener(start), "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("start page: %d", resp.StatusCode)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("start page set %d cookies, want 1", len(cookies))
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.Domain != "" || len(c.Value) < 43 || c.MaxAge <= 0 {
		t.Fatalf("binding cookie %s: want HttpOnly, SameSite=Lax, Path=/, no Domain, 256 random bits, a Max-Age", c)
	}
	auth, _ := url.Parse(resp.Header.Get("Location"))
	state := auth.Query().Get("state")
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("start page Cache-Control %q", resp.Header.Get("Cache-Control"))
	}

	// Second visit, by the same browser or another: 400, no cookie.
	for _, c := range []*http.Client{b, noCookies} {
		resp, body := get(t, c, h.onListener(start), "")
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 || strings.Contains(body, state) {
			t.Fatalf("second visit of the start page: %d, cookies %v:\n%s", resp.StatusCode, resp.Cookies(), body)
		}
	}
	unknown := *start
	unknown.Path = "/start/" + randomToken()
	if resp, _ := get(t, noCookies, h.onListener(&unknown), ""); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown start page: %d", resp.StatusCode)
	}

	pend, err := h.d.st.(*store.Store).PendingFor("user")
	if err != nil || len(pend) != 1 {
		t.Fatalf("PendingFor: %v, %v", pend, err)
	}
	if pend[0].StartHash != "" || pend[0].BindingHash != hashHex(c.Value) {
		t.Fatalf("stored pending authorization: start %q binding %q; want the start id used up and the cookie's hash", pend[0].StartHash, pend[0].BindingHash)
	}
	h.stop()
	db, err := os.ReadFile(h.cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"start id": id, "cookie": c.Value, "state": state} {
		if strings.Contains(string(db), s) {
			t.Errorf("the store file holds the %s", what)
		}
	}
}

// An expired start page: 400, and the outcome is on the grant.
func TestStartPageExpired(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: func(c *config.Config) {
		userGrant(c)
		c.Refresh.Schedule = config.MustParseSchedule("@every 24h") // no tick prunes the record meanwhile
	}})
	start := h.startAuthorization("user")
	h.clock.Advance(pendingLifetime)
	resp, body := get(t, newBrowser(t), h.onListener(start), "")
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 || !strings.Contains(body, "expired") {
		t.Fatalf("expired start page: %d %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	if st := h.status("user"); st.Auth != "start page opened after the authorization expired" {
		t.Fatalf("status after an expired start page: %q", st.Auth)
	}
}

// Over https the cookie is Secure and __Host- prefixed.
func TestStartPageSecureCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: func(c *config.Config) {
		userGrant(c)
		cl := c.Clients["app"]
		cl.RedirectURI = "https://tokend.example/callback" // a TLS proxy in front of the listener
		c.Clients["app"] = cl
	}})
	start := h.startAuthorization("user")
	if start.Scheme != "https" || start.Host != "tokend.example" {
		t.Fatalf("start URL %s is not on the redirect_uri's origin", start)
	}
	resp, _ := get(t, noCookies, h.onListener(start), "tokend.example")
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusFound || len(cs) != 1 || !cs[0].Secure || !strings.HasPrefix(cs[0].Name, "__Host-") {
		t.Fatalf("start page over https: %d, cookies %v; want one Secure __Host- cookie", resp.StatusCode, cs)
	}
}

// A callback after the authorization expired records why on
// the grant (tokend status shows it), instead of nothing.
func TestExpiredCallbackRecordsOutcome(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: func(c *config.Config) {
		userGrant(c)
		c.Refresh.Schedule = config.MustParseSchedule("@every 24h") // no tick prunes the record meanwhile
	}})
	b := newBrowser(t)
	auth := h.openStart(b, h.startAuthorization("user"))
	cb := h.codeFor(b, auth)
	h.clock.Advance(pendingLifetime + time.Second)
	resp, body := get(t, b, cb, "")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "expired") {
		t.Fatalf("expired callback: %d\n%s", resp.StatusCode, body)
	}
	st := h.status("user")
	if st.Auth != "callback after the authorization expired" || !st.AuthAt.Equal(t0.Add(pendingLifetime+time.Second)) {
		t.Fatalf("status after an expired callback: %q at %v", st.Auth, st.AuthAt)
	}
	if st.State != api.StatePendingAuthorization || h.prov.Stats().ByGrant["authorization_code"] != 0 {
		t.Fatalf("an expired callback changed the grant (%s) or reached the provider", st.State)
	}
}
