package e2e

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// The authorization-code flow in a real browser: headless Chromium opens
// tokend's start page, signs in and consents on oidc-provider's
// interactive pages by typing and clicking, and lands on tokend's callback
// page, which is read through the DOM and checked on a screenshot.

// interactiveCodeProvider starts oidc-provider with login and consent
// pages to fill in and client "app" (client_secret_basic).
func interactiveCodeProvider(t *testing.T) (*oidcop.Server, authClient) {
	t.Helper()
	c := authClients[0]
	return oidcop.Start(t, oidcop.Config{AccessTokenTTL: 60, Interactive: true, Clients: []map[string]any{{
		"client_id":                  "app",
		"client_secret":              c.secret,
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"token_endpoint_auth_method": c.method,
	}}}), c
}

// atProvider and atCallback are WaitPage conditions: the page shown is on
// the provider (path prefix) or is tokend's callback page.
func atProvider(o *oidcop.Server, path string) string {
	return fmt.Sprintf(`location.origin === %q && location.pathname.startsWith(%q)`, o.Issuer, path)
}

func atCallback(s *Setup) string {
	return fmt.Sprintf(`location.origin === %q && location.pathname === "/callback" && !!document.querySelector("h1")`, "http://"+s.Callback)
}

// signIn fills in the provider's login page as the one user (after one
// wrong password, which the page must refuse) and waits for the consent
// page, which must name the client and the scope asked.
func signIn(t *testing.T, b *Chromium, o *oidcop.Server) {
	t.Helper()
	b.WaitPage("the provider's login page", atProvider(o, "/interaction/")+` && !!document.getElementById("username")`, 20*time.Second)
	if txt := b.Text("body"); !strings.Contains(txt, "Sign in to authorize app") {
		t.Errorf("login page text %q: want it to name client app", txt)
	}
	b.Screenshot("1-login", "h1")
	b.Type("username", "e2e-user")
	b.Type("password", "not-the-password")
	b.Click("signin")
	b.WaitPage("the login page refusing a wrong password", `!!document.getElementById("message")`, 10*time.Second)
	if msg := b.Text("#message"); !strings.Contains(msg, "Wrong username or password") {
		t.Errorf("after a wrong password the page says %q", msg)
	}
	b.Type("username", "e2e-user")
	b.Type("password", "e2e-password")
	b.Click("signin")
	b.WaitPage("the provider's consent page", atProvider(o, "/interaction/")+` && !!document.getElementById("allow")`, 10*time.Second)
	if txt := b.Text("body"); !strings.Contains(txt, "app asks for access to your account e2e-user") || !strings.Contains(b.Text("#scopes"), "openid") {
		t.Errorf("consent page text %q: want client app, account e2e-user and scope openid", txt)
	}
	b.Screenshot("2-consent", "h1", "#scopes", "#allow")
}

// openStart opens tokend's start page in b and checks that it bound the
// authorization to b (an HttpOnly, SameSite=Lax binding cookie on the
// callback listener's host) and sent it to the provider.
func openStart(t *testing.T, b *Chromium, o *oidcop.Server, s *Setup, startURL string) {
	t.Helper()
	b.Navigate(startURL)
	b.WaitPage("the redirect from tokend's start page to the provider", atProvider(o, "/"), 20*time.Second)
	checkBindingCookie(t, b, s)
}

func checkBindingCookie(t *testing.T, b *Chromium, s *Setup) {
	t.Helper()
	var names []string
	for _, c := range b.Cookies("http://" + s.Callback + "/callback") {
		if strings.HasPrefix(c.Name, "tokend-auth-") {
			names = append(names, c.Name)
			if !c.HTTPOnly || c.SameSite != "Lax" || c.Path != "/" || c.Value == "" {
				t.Errorf("binding cookie %s: HttpOnly %v, SameSite %q, Path %q: want HttpOnly, Lax, /", c.Name, c.HTTPOnly, c.SameSite, c.Path)
			}
		}
	}
	if len(names) != 1 {
		t.Fatalf("the browser holds %d binding cookies for tokend's callback (%v), want 1", len(names), names)
	}
}

// TestBrowserAuthorizationCode: `tokend authorize web --wait`; Chromium
// opens the start URL, signs in and allows on the provider's pages, and
// lands on tokend's callback page, which says grant web was authorized
// (DOM and screenshot); the CLI reports it, the token is active. The same
// callback URL opened again in that browser is refused with a page saying
// the authorization was already used, and the token does not change; so is
// the start link.
func TestBrowserAuthorizationCode(t *testing.T) {
	t.Parallel()
	b, o, s, td, cli, startURL := startBrowserAuthorize(t)
	openStart(t, b, o, s, startURL)
	signIn(t, b, o)
	b.Click("allow")

	b.WaitPage("tokend's callback page", atCallback(s), 20*time.Second)
	if h1, txt := b.Text("h1"), b.Text("p"); h1 != "Authorized" || !strings.Contains(txt, "tokend now holds a token for grant web") {
		t.Errorf("callback page says %q / %q: want Authorized, grant web", h1, txt)
	}
	b.Screenshot("3-authorized", "h1", "p")
	cb, _ := url.Parse(b.Location())
	if cb.Query().Get("code") == "" || cb.Query().Get("state") == "" {
		t.Errorf("callback URL %s lacks the code or the state", cb.Redacted())
	}

	if code := cli.Wait(30 * time.Second); code != 0 || !strings.Contains(cli.Output(), "Authorized.") {
		t.Fatalf("tokend authorize --wait exited %d:\n%s%s", code, cli.Output(), cli.errb.String())
	}
	tok := td.MustToken("web")
	if in := o.Introspect(tok.AccessToken); !in.Active || in.ClientID != "app" || in.Sub != "e2e-user" {
		t.Fatalf("introspection = %+v, want active, app, e2e-user", in)
	}
	for _, ck := range b.Cookies("http://" + s.Callback + "/callback") {
		if strings.HasPrefix(ck.Name, "tokend-auth-") {
			t.Errorf("the binding cookie %s outlived the authorization", ck.Name)
		}
	}

	// Replayed: the same callback URL in the same browser.
	b.Navigate(cb.String())
	b.WaitPage("the replayed callback's page", atCallback(s), 10*time.Second)
	if h1, txt := b.Text("h1"), b.Text("p"); h1 != "Authorization failed" || !strings.Contains(txt, "unknown or was already used") {
		t.Errorf("replayed callback page says %q / %q: want Authorization failed, already used", h1, txt)
	}
	b.Screenshot("4-replayed", "h1", "p")
	// The start link works once.
	b.Navigate(startURL)
	b.WaitPage("the used start link's page", fmt.Sprintf(`location.href === %q && !!document.querySelector("h1")`, startURL), 10*time.Second)
	if h1, txt := b.Text("h1"), b.Text("p"); h1 != "Authorization failed" || !strings.Contains(txt, "start link is unknown or was already used") {
		t.Errorf("used start link page says %q / %q: want Authorization failed, start link already used", h1, txt)
	}
	b.Screenshot("5-start-reused", "h1", "p")
	if tok2 := td.MustToken("web"); tok2.AccessToken != tok.AccessToken {
		t.Error("the token changed after a replayed callback")
	}
	if st := o.Stats(); st.TokenSuccess["authorization_code"] != 1 || st.InvalidGrant != 0 {
		t.Errorf("provider stats = %+v, want one code exchange", st)
	}
}

// TestBrowserConsentDenied: the person signs in and clicks Deny; the
// provider sends access_denied to tokend's callback, whose page says grant
// web was not authorized and why (DOM and screenshot); `authorize --wait`
// fails saying so, and no token is served.
func TestBrowserConsentDenied(t *testing.T) {
	t.Parallel()
	b, o, s, td, cli, startURL := startBrowserAuthorize(t)
	openStart(t, b, o, s, startURL)
	signIn(t, b, o)
	b.Click("deny")

	b.WaitPage("tokend's callback page", atCallback(s), 20*time.Second)
	if q, _ := url.Parse(b.Location()); q.Query().Get("error") != "access_denied" {
		t.Errorf("the provider sent %s, want error=access_denied", q.Redacted())
	}
	h1, txt := b.Text("h1"), b.Text("p")
	if h1 != "Authorization failed" || !strings.Contains(txt, "Grant web was not authorized") || !strings.Contains(txt, "access_denied") {
		t.Errorf("callback page says %q / %q: want Authorization failed, grant web, access_denied", h1, txt)
	}
	b.Screenshot("3-denied", "h1", "p")

	if code := cli.Wait(30 * time.Second); code == 0 || !strings.Contains(cli.errb.String(), "authorization of web failed") || !strings.Contains(cli.errb.String(), "access_denied") {
		t.Errorf("tokend authorize --wait exited %d, want non-zero saying access_denied:\n%s%s", code, cli.Output(), cli.errb.String())
	}
	if _, status, _ := td.Token("web"); status == http.StatusOK {
		t.Error("a token is served after consent was denied")
	}
	if st := o.Stats(); st.TokenRequests["authorization_code"] != 0 {
		t.Errorf("provider stats = %+v, want no code exchange", st)
	}
}

// browserForwarder writes a $BROWSER for xdg-open: a script that hands its
// argument to the test (written to a file, renamed into place so the test
// never reads half of it) and exits 0, as a browser that opened it would.
// The test's Chromium then opens what it was given.
func browserForwarder(t *testing.T) (script, got string) {
	t.Helper()
	dir := t.TempDir()
	script, got = filepath.Join(dir, "browser"), filepath.Join(dir, "opened")
	body := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %q.tmp && mv %q.tmp %q\n", got, got, got)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, got
}

// TestBrowserAuthorizeOpen: `tokend authorize web --open --wait` with
// xdg-utils' real xdg-open, in a session without a desktop, whose $BROWSER
// hands the target to the test; Chromium opens it (a private redirect
// file, not the URL), follows it to the start page and the provider,
// signs in and allows, and the command completes with a valid token.
func TestBrowserAuthorizeOpen(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	xdgOpen, err := exec.LookPath("xdg-open")
	if err != nil {
		t.Fatal("e2e: xdg-open is not installed: run `make test` or scripts/test-deps (apt-get install --no-install-recommends xdg-utils) first")
	}
	b := StartChromium(t)
	o, c := interactiveCodeProvider(t)
	s := NewSetup(t)
	td := StartTokend(t, s, codeConfig(s, o.Issuer, c))
	td.NoLeak(c.secret)

	browser, got := browserForwarder(t)
	runtime := t.TempDir()
	if err := os.Chmod(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	// A session without a desktop (xdg-open's generic mode, which tries
	// $BROWSER), the real xdg-open first in PATH.
	env := []string{
		"PATH=" + filepath.Dir(xdgOpen) + ":/usr/bin:/bin",
		"HOME=" + t.TempDir(),
		"XDG_RUNTIME_DIR=" + runtime,
		"XDG_CONFIG_HOME=" + t.TempDir(),
		"XDG_DATA_HOME=" + t.TempDir(),
		"BROWSER=" + browser,
		"MAILCAPS=" + filepath.Join(runtime, "no-mailcap"),
	}
	cli := startCLIEnv(td, env, "authorize", "web", "--open", "--wait")
	startURL := cli.WaitOutput(regexp.MustCompile(regexp.QuoteMeta("http://"+s.Callback+"/start/")+`[A-Za-z0-9_-]+`), 20*time.Second)[0]

	var opened string
	eventually(t, 20*time.Second, 20*time.Millisecond, "xdg-open handing the target to $BROWSER", func() error {
		bs, err := os.ReadFile(got)
		if err != nil {
			return fmt.Errorf("%v; tokend authorize: %s%s", err, cli.Output(), cli.errb.String())
		}
		opened = strings.TrimSuffix(string(bs), "\n")
		return nil
	})
	if strings.Contains(opened, "\n") || strings.Contains(opened, strings.TrimPrefix(startURL, "http://"+s.Callback+"/start/")) {
		t.Fatalf("the browser was given %q: want one redirect file, not the start URL", opened)
	}
	file := strings.TrimPrefix(opened, "file://")
	if !strings.HasPrefix(file, runtime+"/tokend-open-") || !strings.HasSuffix(file, ".html") {
		t.Fatalf("the browser was given %q: want a file under $XDG_RUNTIME_DIR %s", opened, runtime)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("the redirect file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Errorf("redirect file mode %v, want 0600 and ours", fi.Mode())
	}

	b.Navigate((&url.URL{Scheme: "file", Path: file}).String())
	b.WaitPage("the redirect file leading to the start page and the provider", atProvider(o, "/"), 20*time.Second)
	checkBindingCookie(t, b, s)
	signIn(t, b, o)
	b.Click("allow")
	b.WaitPage("tokend's callback page", atCallback(s), 20*time.Second)
	if h1, txt := b.Text("h1"), b.Text("p"); h1 != "Authorized" || !strings.Contains(txt, "grant web") {
		t.Errorf("callback page says %q / %q: want Authorized, grant web", h1, txt)
	}
	b.Screenshot("3-authorized", "h1", "p")

	if code := cli.Wait(30 * time.Second); code != 0 || !strings.Contains(cli.Output(), "Authorized.") {
		t.Fatalf("tokend authorize --open --wait exited %d:\n%s%s", code, cli.Output(), cli.errb.String())
	}
	tok := td.MustToken("web")
	if in := o.Introspect(tok.AccessToken); !in.Active || in.ClientID != "app" || in.Sub != "e2e-user" {
		t.Fatalf("introspection = %+v, want active, app, e2e-user", in)
	}
	if _, err := os.Stat(filepath.Dir(file)); !os.IsNotExist(err) {
		t.Errorf("--wait ended and left the redirect directory %s (%v)", filepath.Dir(file), err)
	}
}

// TestBrowserCallbackWithoutBinding: a browser that did not open tokend's
// start page — here Chromium given the provider's authorization URL that
// another client's start page redirected to — signs in and allows, and
// reaches tokend's callback without the binding cookie: the page says the
// callback was refused and why (DOM and screenshot), no token is served,
// and `authorize --wait` warns and keeps waiting.
func TestBrowserCallbackWithoutBinding(t *testing.T) {
	t.Parallel()
	b, o, s, td, cli, startURL := startBrowserAuthorize(t)
	// Someone else opens the start page (and holds the binding cookie).
	jar, _ := cookiejar.New(nil)
	other := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	authURL := testutil.StartPageRedirect(t, other, startURL, o.Issuer+"/")

	b.Navigate(authURL)
	signIn(t, b, o)
	b.Click("allow")
	b.WaitPage("tokend's callback page", atCallback(s), 20*time.Second)
	h1, txt := b.Text("h1"), b.Text("p")
	if h1 != "Authorization refused" || !strings.Contains(txt, "does not come from the browser that opened tokend's start page") {
		t.Errorf("callback page says %q / %q: want Authorization refused, not the browser that opened the start page", h1, txt)
	}
	b.Screenshot("3-refused", "h1", "p")

	if _, status, _ := td.Token("web"); status == http.StatusOK {
		t.Error("a token is served from a callback without the binding")
	}
	if st := td.Status("web"); !strings.HasPrefix(st.Auth, "callback without the browser binding") || st.State == "valid" {
		t.Errorf("status %+v: want the unbound callback recorded, no token", st)
	}
	eventually(t, 10*time.Second, 100*time.Millisecond, "authorize --wait warning about the refused callback", func() error {
		if !strings.Contains(cli.errb.String(), "was refused") {
			return fmt.Errorf("stderr %q", cli.errb.String())
		}
		return nil
	})
	select {
	case <-cli.Done():
		t.Errorf("authorize --wait ended (%v) after an unbound callback; it must keep waiting for the operator's browser:\n%s", cli.Err(), cli.errb.String())
	default:
	}
	if st := o.Stats(); st.TokenRequests["authorization_code"] != 0 {
		t.Errorf("provider stats = %+v, want no code exchange", st)
	}
}

// startBrowserAuthorize starts Chromium, an interactive provider and tokend
// with grant web, runs `tokend authorize web --wait` and returns the start
// URL it printed.
func startBrowserAuthorize(t *testing.T) (*Chromium, *oidcop.Server, *Setup, *Tokend, *CLIProcess, string) {
	t.Helper()
	requireTokend(t)
	b := StartChromium(t)
	o, c := interactiveCodeProvider(t)
	s := NewSetup(t)
	td := StartTokend(t, s, codeConfig(s, o.Issuer, c))
	td.NoLeak(c.secret)
	cli := td.StartCLI("authorize", "web", "--wait")
	startURL := cli.WaitOutput(regexp.MustCompile(regexp.QuoteMeta("http://"+s.Callback+"/start/")+`[A-Za-z0-9_-]+`), 20*time.Second)[0]
	return b, o, s, td, cli, startURL
}
