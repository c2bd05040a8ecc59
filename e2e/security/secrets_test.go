package security

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

const secretGrants = `  cc:
    client: app
    type: client_credentials
    scopes: [read]
  code:
    client: app
    type: authorization_code
    scopes: [openid, offline_access, read]
`

// output is something tokend said, named for the failure message.
type output struct {
	what, text string
}

// TestNoSecretsInOutput drives the daemon (log level debug) through a
// client_credentials fetch, refreshes, an authorization-code flow, a
// refresh the provider refuses and revocations, then looks for every
// secret in the daemon's whole output and in everything the command line
// printed (except `tokend token`, whose job is to print the access token),
// and in the callback pages. Secrets are those the provider issued
// (access, refresh and id tokens, codes), the client secret and the store
// key. The store file itself must hold none of them unsealed.
func TestNoSecretsInOutput(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov:   devprovider.Options{AccessTTL: time.Hour, Rotate: true, AutoApprove: true, RefreshForClientCredentials: true},
		grants: secretGrants,
	})
	e.start()
	var outs []output
	run := func(args ...string) result {
		t.Helper()
		r := e.run(0, args...)
		outs = append(outs, output{"tokend " + strings.Join(args, " "), r.stdout + r.stderr})
		return r
	}

	// A client_credentials fetch: the one output allowed to hold a token.
	tr := e.run(0, "token", "cc")
	tok := strings.TrimSpace(tr.stdout)
	if tr.code != exitOK || !e.prov.Valid(tok) {
		t.Fatalf("fetching cc: %v", tr)
	}
	outs = append(outs, output{"tokend token cc (stderr)", tr.stderr})
	if r := run("token", "cc", "--json"); r.code != exitOK {
		t.Fatalf("%v", r)
	} else {
		// --json prints the token too; keep only its stderr.
		outs[len(outs)-1].text = r.stderr
	}
	if r := run("refresh", "cc"); r.code != exitOK {
		t.Errorf("%v", r)
	}

	// The authorization-code flow: the CLI prints the start URL, which
	// binds the browser (a cookie) and redirects to the provider; the
	// provider approves at once and redirects to tokend's callback.
	ar := run("authorize", "code")
	startURL := urlIn(ar.stdout)
	if ar.code != exitOK || startURL == "" {
		t.Fatalf("authorize code printed no URL: %v", ar)
	}
	noRedirect := noRedirectBrowser()
	authURL := testutil.StartPageRedirect(t, noRedirect, startURL, e.prov.URL()+"/")
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, "http://"+e.callback+"/callback?") {
		t.Fatalf("provider answered %d, Location %q; want a redirect to tokend's callback %s", resp.StatusCode, loc, e.callback)
	}
	resp, err = noRedirect.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	outs = append(outs, output{"callback page", string(page)})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d %s", resp.StatusCode, page)
	}
	// A replay of the same callback is refused and says nothing secret either.
	if resp, err := noRedirect.Get(loc); err == nil {
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		outs = append(outs, output{"replayed callback page", string(page)})
		if resp.StatusCode == http.StatusOK {
			t.Errorf("a replayed callback was accepted")
		}
	}
	var st api.GrantStatus
	if r := run("status", "code", "--json"); r.code != exitOK || json.Unmarshal([]byte(r.stdout), &st) != nil || st.State != "valid" || !st.HasRefreshToken {
		t.Fatalf("after the callback, code is not valid with a refresh token: %v", r)
	}

	// A refresh that works, then one the provider refuses (invalid_client).
	if r := run("refresh", "code"); r.code != exitOK {
		t.Errorf("%v", r)
	}
	e.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidClient, Times: 1, GrantTypes: []string{"refresh_token"}})
	if r := run("refresh", "code"); r.code == exitOK {
		t.Errorf("a refresh answered invalid_client succeeded: %v", r)
	}
	if r := run("status", "code", "--json"); json.Unmarshal([]byte(r.stdout), &st) != nil || st.LastError == "" {
		t.Errorf("the refused refresh left no last_error: %v", r)
	}
	run("status", "code")
	run("status")
	run("status", "--json")

	if r := run("revoke", "code"); r.code != exitOK {
		t.Errorf("%v", r)
	}
	if r := run("revoke", "cc"); r.code != exitOK {
		t.Errorf("%v", r)
	}
	run("status", "--json")
	run("status", "cc")
	e.stop()
	outs = append(outs, output{"daemon output (stderr)", e.stderr.String()})

	issued := e.prov.Issued()
	// The scan must be able to fail: the provider issued access, refresh
	// and id tokens and a code, and the one output allowed to show a token
	// does show one.
	if len(issued) < 6 {
		t.Fatalf("the provider issued only %d secrets; the flows above did not run", len(issued))
	}
	if !strings.Contains(e.stderr.String(), "level=DEBUG") {
		t.Fatalf("the daemon did not log at debug level; the scan would prove little")
	}
	if leaked(tr.stdout, issued) == "" {
		t.Fatalf("the scan does not find the token `tokend token cc` printed")
	}

	secrets := append([]string{e.secret, e.keyText, hex.EncodeToString(e.key),
		base64.RawStdEncoding.EncodeToString(e.key), base64.URLEncoding.EncodeToString(e.key)}, issued...)
	for _, o := range outs {
		if s := leaked(o.text, secrets); s != "" {
			t.Errorf("%s holds a secret (%.6s…):\n%s", o.what, s, o.text)
		}
	}

	// At rest, every token is sealed with the key.
	db, err := os.ReadFile(e.store)
	if err != nil {
		t.Fatal(err)
	}
	if s := leaked(string(db), secrets); s != "" {
		t.Errorf("the store file holds a secret (%.6s…) unsealed", s)
	}
}

// leaked returns the first secret that text contains, whole or as a run of
// 16 characters of its random part (so a token cut short in a message is
// found too), or "".
func leaked(text string, secrets []string) string {
	const window = 16
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(text, s) {
			return s
		}
		core := s
		if i := strings.LastIndexAny(core, "._-"); i >= 0 && len(core)-i-1 >= window {
			core = core[i+1:]
		}
		for i := 0; i+window <= len(core); i++ {
			if strings.Contains(text, core[i:i+window]) {
				return s
			}
		}
	}
	return ""
}
