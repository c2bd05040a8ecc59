package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// authClient is one way for tokend to authenticate at the token endpoint.
type authClient struct {
	method string
	secret string // "" for a public client
}

var authClients = []authClient{
	{"client_secret_basic", "basic-secret-e2e-0123456789"},
	{"client_secret_post", "post-secret-e2e-0123456789"},
	{"none", ""},
}

// codeProvider starts oidc-provider with client "app" allowed the
// authorization_code and refresh_token grants, any loopback redirect port.
func codeProvider(t *testing.T, c authClient, accessTTL int) *oidcop.Server {
	return oidcop.Start(t, oidcop.Config{AccessTokenTTL: accessTTL, Clients: []map[string]any{codeClient(c)}})
}

// startCodeTokend starts oidc-provider with codeProvider and tokend with
// codeConfig: grant "web" of client "app", whose secret must not leak.
func startCodeTokend(t *testing.T, c authClient, accessTTL int) (*oidcop.Server, *Setup, *Tokend) {
	t.Helper()
	o := codeProvider(t, c, accessTTL)
	s := NewSetup(t)
	td := StartTokend(t, s, codeConfig(s, o.Issuer, c))
	td.NoLeak(c.secret)
	return o, s, td
}

// codeClient is oidc-provider's registration of the authorization code
// client "app" authenticating as c says; a native client, any loopback
// port of its redirect URI goes.
func codeClient(c authClient) map[string]any {
	client := map[string]any{
		"client_id":                  "app",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"token_endpoint_auth_method": c.method,
	}
	if c.secret != "" {
		client["client_secret"] = c.secret
	}
	return client
}

// codeConfig is tokend's configuration for grant "web" of client "app".
func codeConfig(s *Setup, issuer string, c authClient) string {
	client := fmt.Sprintf("  app:\n    provider: op\n    client_id: app\n    auth_method: %s\n    redirect_uri: %s\n", c.method, s.CallbackURL)
	if c.secret != "" {
		client += fmt.Sprintf("    client_secret_file: %s\n", s.SecretFile("app", c.secret))
	}
	return s.Config(issuer, client, `  web:
    client: app
    type: authorization_code
    scopes: [openid]
    {{READERS}}
`)
}

// authorizeInBrowser runs `tokend authorize GRANT`, opens the start URL it
// prints in a browser, which tokend redirects to the provider (with a
// binding cookie), follows the provider's pages to tokend's callback, and
// returns the callback URL visited.
func authorizeInBrowser(t *testing.T, o *oidcop.Server, td *Tokend, grant string) string {
	t.Helper()
	startURL, cli := td.Authorize(grant)
	b := testutil.NewBrowser(t)
	page := b.Open(startURL)
	if len(b.Visited) < 2 || b.Visited[0] != startURL || !strings.HasPrefix(b.Visited[1], o.Issuer+"/") {
		t.Fatalf("the start page did not redirect to the provider: visited %v", b.Visited)
	}
	u, err := url.Parse(b.Visited[1])
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("redirect_uri") != td.Setup.CallbackURL || q.Get("state") == "" || q.Get("response_type") != "code" {
		t.Errorf("authorization URL query %v: want response_type=code, state and redirect_uri=%s", q, td.Setup.CallbackURL)
	}
	if q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256" {
		t.Errorf("authorization URL has no S256 PKCE challenge: %v", q)
	}
	cb := b.Find("http://" + td.Setup.Callback + "/callback")
	if cb == "" {
		t.Fatalf("the browser never reached tokend's callback; ended at %s (%d):\n%s\nvisited %v", page.URL, page.Status, page.Body, b.Visited)
	}
	if page.Status != http.StatusOK || page.URL.Host != td.Setup.Callback {
		t.Fatalf("callback answered %d at %s, want 200:\n%s", page.Status, page.URL, page.Body)
	}
	cu, _ := url.Parse(cb)
	if cu.Query().Get("code") == "" || cu.Query().Get("state") != q.Get("state") {
		t.Fatalf("callback URL %s lacks the code or the state", cu.Redacted())
	}
	// The CLI may print the URL and exit, or wait for the outcome.
	if code := cli.Wait(30 * time.Second); code != 0 {
		t.Errorf("tokend authorize exited %d:\n%s", code, cli.Output())
	}
	return cb
}

// TestAuthorizationCode: for each client authentication method, tokend
// authorize prints a URL; a browser following it ends at tokend's callback
// with 200; the token is served and active; tokend refresh rotates it; a
// replayed callback and a forged state are refused with 400 and change
// nothing.
func TestAuthorizationCode(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, c := range authClients {
		t.Run(c.method, func(t *testing.T) {
			t.Parallel()
			o, s, td := startCodeTokend(t, c, 60)

			if _, status, _ := td.Token("web"); status == http.StatusOK {
				t.Fatal("a token was served before any authorization")
			}
			cb := authorizeInBrowser(t, o, td, "web")
			tok := td.WaitToken("web", 10*time.Second)
			in := o.Introspect(tok.AccessToken)
			if !in.Active || in.ClientID != "app" || in.Sub != "e2e-user" {
				t.Fatalf("introspection = %+v, want active, app, e2e-user", in)
			}
			if st := td.Status("web"); !st.HasRefreshToken || st.State != "valid" {
				t.Errorf("status = %+v, want valid with a refresh token", st)
			}
			if rt := o.RefreshTokens("app"); rt.Active != 1 {
				t.Errorf("refresh tokens = %+v, want 1 active", rt)
			}

			// tokend refresh: a new access token, the refresh token rotated.
			td.MustCLI("refresh", "web")
			tok2 := td.MustToken("web")
			if tok2.AccessToken == tok.AccessToken {
				t.Fatal("tokend refresh left the same access token")
			}
			if !o.Introspect(tok2.AccessToken).Active {
				t.Errorf("refreshed token not active")
			}
			if rt := o.RefreshTokens("app"); rt.Active != 1 || rt.Consumed != 1 {
				t.Errorf("refresh tokens after refresh = %+v, want 1 active 1 consumed (rotation)", rt)
			}

			// A replayed callback: refused, nothing changes.
			if code := callbackGet(t, cb); code != http.StatusBadRequest {
				t.Errorf("replayed callback: %d, want 400", code)
			}
			// A forged state.
			cu, _ := url.Parse(cb)
			forged := *cu
			q := cu.Query()
			q.Set("state", "forged-"+q.Get("state"))
			forged.RawQuery = q.Encode()
			if code := callbackGet(t, forged.String()); code != http.StatusBadRequest {
				t.Errorf("forged state: %d, want 400", code)
			}
			if code := callbackGet(t, "http://"+s.Callback+"/callback?code=x&state=y"); code != http.StatusBadRequest {
				t.Errorf("unknown state: %d, want 400", code)
			}
			if tok3 := td.MustToken("web"); tok3.AccessToken != tok2.AccessToken {
				t.Errorf("the token changed after a replayed or forged callback")
			}
			st := o.Stats()
			if st.InvalidGrant != 0 || st.TokenSuccess["authorization_code"] != 1 || st.TokenSuccess["refresh_token"] != 1 {
				t.Errorf("provider stats = %+v, want one code exchange, one refresh, no invalid_grant", st)
			}
		})
	}
}

// TestAuthorizationCodeInjection: another local user who learned the
// provider's authorization URL (state and PKCE challenge: once readable in
// the browser's argv) signs in with it in their own browser, which
// oidc-provider redirects to tokend's callback with their code. That
// browser never opened tokend's start page, so it has no binding cookie:
// the callback is refused and the authorization stays pending; the
// operator's browser then completes it, and the token is the operator's.
func TestAuthorizationCodeInjection(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	c := authClients[0]
	o, s, td := startCodeTokend(t, c, 60)

	startURL, cli := td.Authorize("web")
	operator := testutil.NewBrowser(t)
	// The operator's browser opens the start page (and gets the cookie);
	// the test stops at its redirect to learn the provider's URL.
	authURL := testutil.StartPageRedirect(t, operator.HTTPClient(), startURL, o.Issuer+"/")

	attacker := testutil.NewBrowser(t)
	page := attacker.Open(authURL)
	if attacker.Find("http://"+s.Callback+"/callback") == "" || page.Status != http.StatusBadRequest {
		t.Fatalf("the attacker's callback answered %d at %s, want 400:\n%s", page.Status, page.URL, page.Body)
	}
	if _, status, _ := td.Token("web"); status == http.StatusOK {
		t.Fatal("a token was served from the injected code")
	}
	if st := td.Status("web"); !strings.HasPrefix(st.Auth, "callback without the browser binding") {
		t.Errorf("status after the injection: authorization %q", st.Auth)
	}

	page = operator.Open(authURL)
	if page.Status != http.StatusOK || page.URL.Host != s.Callback {
		t.Fatalf("the operator's callback answered %d at %s, want 200:\n%s", page.Status, page.URL, page.Body)
	}
	tok := td.WaitToken("web", 10*time.Second)
	if !o.Introspect(tok.AccessToken).Active {
		t.Error("the operator's token is not active")
	}
	if st := o.Stats(); st.TokenSuccess["authorization_code"] != 1 || st.InvalidGrant != 0 {
		t.Errorf("provider stats = %+v, want exactly one code exchange (the operator's)", st)
	}
	if code := cli.Wait(30 * time.Second); code != 0 {
		t.Errorf("tokend authorize exited %d:\n%s", code, cli.Output())
	}
}
