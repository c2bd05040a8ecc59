package security

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

// TestCodeInjectionAsOtherUser carries out code injection for real: root
// starts an authorization; another local user (uid 65534, a real process)
// who learned the provider's authorization URL, state and PKCE challenge
// included (it used to be on the browser's command line), signs in with it
// and delivers the code to tokend's loopback callback before the
// operator's browser does. That user never opened the start page, so the
// callback lacks the binding cookie: refused, nothing exchanged or stored.
// The operator's browser then completes the authorization.
func TestCodeInjectionAsOtherUser(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov: devprovider.Options{AccessTTL: time.Hour, AutoApprove: true},
		grants: `  code:
    client: app
    type: authorization_code
    scopes: [openid, offline_access]
    readers: {uids: [65534]}
`,
	})
	e.start()
	ar := e.run(0, "authorize", "code")
	startURL := urlIn(ar.stdout)
	if ar.code != exitOK || !strings.HasPrefix(startURL, "http://"+e.callback+"/start/") {
		t.Fatalf("authorize printed no start URL on the callback listener: %v", ar)
	}

	// The operator's browser opens the start page: a cookie, and the
	// redirect to the provider.
	browser := noRedirectBrowser()
	authURL := testutil.StartPageRedirect(t, browser, startURL, e.prov.URL()+"/authorize?")

	// The attacker, as uid 65534: their own sign-in with tokend's URL, and
	// the code delivered to the callback first.
	code, cb := getAs(t, uidNobody, authURL)
	if code != http.StatusFound || !strings.HasPrefix(cb, "http://"+e.callback+"/callback?") || !strings.Contains(cb, "code=") {
		t.Fatalf("the provider answered the attacker %d, Location %q", code, cb)
	}
	if code, _ := getAs(t, uidNobody, cb); code != http.StatusBadRequest {
		t.Fatalf("the injected callback answered %d, want 400", code)
	}
	if n := e.prov.Stats().ByGrant["authorization_code"]; n != 0 {
		t.Fatalf("tokend exchanged the injected code (%d code exchanges)", n)
	}
	if r := e.run(uidNobody, "token", "code"); r.code == exitOK {
		t.Fatalf("a token is served after the injected callback: %v", r)
	}
	var st api.GrantStatus
	if r := e.run(0, "status", "code", "--json"); json.Unmarshal([]byte(r.stdout), &st) != nil ||
		!strings.HasPrefix(st.Auth, api.AuthCallbackUnbound) || st.State != api.StatePendingAuthorization {
		t.Fatalf("status after the injection: %v", r)
	}
	if r := e.run(0, "status", "code"); !strings.Contains(r.stdout, "callback without the browser binding") {
		t.Errorf("tokend status does not say the callback was refused:\n%s", r.stdout)
	}

	// The operator's browser completes the authorization.
	resp, err := browser.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = browser.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the operator's callback answered %d", resp.StatusCode)
	}
	r := e.run(uidNobody, "token", "code")
	if r.code != exitOK || !e.prov.Valid(strings.TrimSpace(r.stdout)) {
		t.Fatalf("no valid token after the operator's callback: %v", r)
	}
	if n := e.prov.Stats().ByGrant["authorization_code"]; n != 1 {
		t.Fatalf("%d code exchanges, want exactly the operator's", n)
	}
	// The attacker's code, delivered again, redeems nothing now.
	if code, _ := getAs(t, uidNobody, cb); code != http.StatusBadRequest {
		t.Fatalf("the late injected callback answered %d, want 400", code)
	}
}
