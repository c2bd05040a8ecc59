package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/server"
)

// fakeXDGOpen puts an xdg-open first in PATH that records, in the returned
// directory, its argv (one argument a line), its environment, the file it
// was given and that file's and its directory's modes. argv is written
// last, so its presence means the rest is there.
func fakeXDGOpen(t *testing.T) string {
	t.Helper()
	bin, rec := t.TempDir(), t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
rec=%q
env > "$rec/env"
cp "$1" "$rec/page.html" 2>/dev/null || : > "$rec/page.html"
stat -c %%a "$1" "$(dirname "$1")" > "$rec/modes" 2>/dev/null
printf '%%s\n' "$0" "$@" > "$rec/argv.tmp"
mv "$rec/argv.tmp" "$rec/argv"
`, rec)
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return rec
}

// privateTempDir is a directory like $XDG_RUNTIME_DIR: ours, mode 0700.
func privateTempDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func waitFile(t *testing.T, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runCodeDaemon runs a daemon with an authorization_code grant "web"
// against an in-process provider and returns its socket.
func runCodeDaemon(t *testing.T) (sock string, prov *devprovider.Server) {
	t.Helper()
	prov = devprovider.New(devprovider.Options{Clients: []devprovider.Client{{ID: "app", Secret: serveTestSecret, AuthMethod: "client_secret_basic"}}})
	t.Cleanup(prov.Close)
	dir := testutil.ShortDir(t)
	cbAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := serveTestConfig(dir, prov.URL())
	cfg.Listen.Socket = filepath.Join(dir, "s")
	cfg.Listen.Callback, cfg.Listen.Metrics = cbAddr, "off"
	cl := cfg.Clients["app"]
	cl.RedirectURI = "http://" + cbAddr + "/callback"
	cfg.Clients["app"] = cl
	cfg.Grants["web"] = config.Grant{Client: "app", Type: config.GrantAuthorizationCode, Scopes: []string{"openid"}}
	d, err := daemon.New(cfg, daemon.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, server.New(server.Config{Engine: d})) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case <-d.Started():
	case err := <-done:
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not start")
	}
	return cfg.Listen.Socket, prov
}

var refreshRe = regexp.MustCompile(`<meta http-equiv="refresh" content="0; url=([^"]+)">`)

// What `ps` shows while `tokend authorize --open` runs. The
// browser opener gets only the path of a private redirect file; neither its
// command line nor its environment holds the start id, the state or the
// PKCE challenge, and the file leads to the start page, which leads to the
// provider.
func TestOpenKeepsURLOutOfArgv(t *testing.T) {
	rec := fakeXDGOpen(t)
	runtime := privateTempDir(t)
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	sock, prov := runCodeDaemon(t)

	tc := newTestCLI()
	tc.openURL = xdgOpen
	if code := tc.run("authorize", "web", "--open", "--socket", sock); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/start/[A-Za-z0-9_-]{43}`).FindString(tc.out.String())
	if m == "" {
		t.Fatalf("authorize printed no start URL:\n%s", tc.out.String())
	}
	start, _ := url.Parse(m)
	startID := strings.TrimPrefix(start.Path, "/start/")

	argv := strings.Split(strings.TrimSpace(string(waitFile(t, filepath.Join(rec, "argv")))), "\n")
	env := string(waitFile(t, filepath.Join(rec, "env")))
	page := string(waitFile(t, filepath.Join(rec, "page.html")))
	modes := strings.Fields(string(waitFile(t, filepath.Join(rec, "modes"))))

	// Follow the start page to learn what must not have leaked.
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := b.Get(start.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	auth, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(auth.String(), prov.URL()) {
		t.Fatalf("start page: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := auth.Query()
	secrets := map[string]string{"start id": startID, "state": q.Get("state"), "code_challenge": q.Get("code_challenge")}
	for what, s := range secrets {
		if len(s) < 20 {
			t.Fatalf("%s %q: too short to search for", what, s)
		}
		if strings.Contains(strings.Join(argv, "\n"), s) {
			t.Errorf("xdg-open's command line holds the %s", what)
		}
		if strings.Contains(env, s) {
			t.Errorf("xdg-open's environment holds the %s", what)
		}
	}
	if len(argv) != 2 || !strings.HasPrefix(argv[1], runtime+"/tokend-open-") || !strings.HasSuffix(argv[1], ".html") {
		t.Fatalf("xdg-open argv %q; want one argument, a file under $XDG_RUNTIME_DIR", argv)
	}
	if len(modes) != 2 || modes[0] != "600" || modes[1] != "700" {
		t.Errorf("redirect file and directory modes %v, want 600 700", modes)
	}
	if r := refreshRe.FindStringSubmatch(page); r == nil || r[1] != start.String() {
		t.Fatalf("the redirect file does not lead to the start page %s:\n%s", start, page)
	}
}

// --open hands the desktop only http(s) URLs (a provider's verification_uri
// of file:///etc/passwd is not opened), and what the provider sent is
// printed without control characters.
func TestOpenOnlyHTTP(t *testing.T) {
	for _, uri := range []string{"file:///etc/passwd", "javascript:alert(1)", "ssh://id.example.com/", "https:///nohost"} {
		f := newFakeDaemon(t, map[string][]reply{
			"POST /v1/tokens/tv/authorize": {{200, fmt.Sprintf(`{"grant":"tv","kind":"device_code","user_code":"AB\u001b]0;pwned\u0007CD","verification_uri":%q}`, uri)}},
		})
		tc := newTestCLI()
		if code := tc.run("authorize", "tv", "--open", "--socket", f.socket); code != 0 {
			t.Fatalf("exit %d: %s", code, tc.errOut.String())
		}
		if len(tc.opened) != 0 {
			t.Errorf("--open opened %q", tc.opened)
		}
		if !strings.Contains(tc.errOut.String(), "only http and https URLs are opened") {
			t.Errorf("stderr for %s: %q", uri, tc.errOut.String())
		}
		if out := tc.out.String() + tc.errOut.String(); strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "AB]0;pwnedCD") {
			t.Errorf("the user code reached the terminal with its control characters: %q", out)
		}
	}
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/tv/authorize": {{200, `{"grant":"tv","kind":"device_code","user_code":"ABCD","verification_uri":"HTTPS://id.example.com/device"}`}},
	})
	tc := newTestCLI()
	if code := tc.run("authorize", "tv", "--open", "--socket", f.socket); code != 0 || len(tc.opened) != 1 {
		t.Errorf("an https verification URI was not opened: exit %d, opened %q, stderr %q", code, tc.opened, tc.errOut.String())
	}
}

// The redirect file lives in a fresh private directory; a later --open
// removes those an earlier one left, once they are old, and --wait removes
// its own when it ends.
func TestRedirectFileLifetime(t *testing.T) {
	runtime := privateTempDir(t)
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	old := filepath.Join(runtime, openDirPrefix+"old")
	fresh := filepath.Join(runtime, openDirPrefix+"fresh")
	other := filepath.Join(runtime, "unrelated")
	for _, d := range []string{old, fresh, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-openFileLifetime - time.Minute)
	for _, d := range []string{old, other} {
		if err := os.Chtimes(d, long, long); err != nil {
			t.Fatal(err)
		}
	}
	file, remove, err := writeRedirectFile("http://127.0.0.1:8785/start/x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("an old redirect directory was kept")
	}
	for _, d := range []string{fresh, other, file} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
	remove()
	if _, err := os.Stat(filepath.Dir(file)); !os.IsNotExist(err) {
		t.Errorf("remove left %s", filepath.Dir(file))
	}

	// A runtime directory others may enter is not used.
	if err := os.Chmod(runtime, 0o755); err != nil {
		t.Fatal(err)
	}
	file, remove, err = writeRedirectFile("http://127.0.0.1:8785/start/x")
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	if strings.HasPrefix(file, runtime) {
		t.Errorf("redirect file %s in a runtime directory others may enter", file)
	}

	// --wait: removed when the wait ends.
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"http://127.0.0.1:8785/start/abc"}`}},
		"GET /v1/tokens/web/status": {
			{200, `{"name":"web","state":"pending_authorization","generation":0}`},
			{200, `{"name":"web","state":"valid","generation":1}`},
		},
	})
	tc := newTestCLI()
	removed := false
	tc.openURL = func(string) (func(), error) { return func() { removed = true }, nil }
	if code := tc.run("authorize", "web", "--open", "--wait", "--socket", f.socket); code != 0 || !removed {
		t.Errorf("exit %d, removed %v: %s", code, removed, tc.errOut.String())
	}
}

// A refused callback without the browser binding (someone else's injected
// code) does not end --wait: the operator's browser can still complete.
func TestAuthorizeWaitIgnoresUnboundCallback(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/web/authorize": {{200, `{"grant":"web","kind":"authorization_code","url":"http://127.0.0.1:8785/start/abc"}`}},
		"GET /v1/tokens/web/status": {
			{200, `{"name":"web","state":"pending_authorization","generation":0}`},
			{200, `{"name":"web","state":"pending_authorization","generation":0,"authorization":"` + api.AuthCallbackUnbound + ` (x): refused","authorization_at":"2026-11-23T10:00:10Z"}`},
			{200, `{"name":"web","state":"pending_authorization","generation":0,"authorization":"` + api.AuthCallbackUnbound + ` (x): refused","authorization_at":"2026-11-23T10:00:10Z"}`},
			{200, `{"name":"web","state":"valid","generation":1,"authorization":"authorized by authorization code","authorization_at":"2026-11-23T10:00:20Z"}`},
		},
	})
	tc := newTestCLI()
	if code := tc.run("authorize", "web", "--wait", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	if n := strings.Count(tc.errOut.String(), "was refused"); n != 1 {
		t.Errorf("warned %d times about the refused callback:\n%s", n, tc.errOut.String())
	}
}
