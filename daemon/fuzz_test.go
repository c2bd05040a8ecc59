package daemon

// Fuzz targets for the daemon's untrusted inputs: requests on the socket
// API and queries on the callback listener. (The configuration file's is
// in package config.)
// Seeds are added here and kept in testdata/fuzz/<FuzzName>/.

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// fuzzEnv is one running daemon shared by every input of a fuzz target:
// grant "cc" readable by uid 1000, "other" by uid 2000, "code" (an
// authorization-code grant) by nobody but operators.
type fuzzEnv struct {
	d     *Daemon
	prov  *devprovider.Server
	clock *fakeClock
}

const (
	fuzzReader = 1000
	fuzzOther  = 2000
	// fuzzState is a pending authorization of grant "code", put back in
	// the store before each input that names it.
	fuzzState = "fuzz-pending-state-0123456789abcdef"
)

func newFuzzEnv(f *testing.F) *fuzzEnv {
	clock := newFakeClock(t0)
	prov := devprovider.New(devprovider.Options{
		Now: clock.Now, AccessTTL: time.Hour, RefreshForClientCredentials: true, AutoApprove: true,
		Clients: []devprovider.Client{{ID: "app", Secret: testSecret, AuthMethod: "client_secret_basic"}},
	})
	f.Cleanup(prov.Close)
	dir := f.TempDir()
	cfg := &config.Config{
		Store:     config.Store{Path: filepath.Join(dir, "tokend.db")},
		Listen:    config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"},
		Refresh:   config.Refresh{Schedule: config.MustParseSchedule("@every 15s"), MinRemaining: 10 * time.Second},
		Providers: map[string]config.Provider{"test": {Issuer: prov.URL()}},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret), RedirectURI: "http://127.0.0.1:1/callback"},
		},
		Grants: map[string]config.Grant{
			"cc":    {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}, Readers: config.Readers{UIDs: []int{fuzzReader}}},
			"other": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"write"}, Readers: config.Readers{UIDs: []int{fuzzOther}}},
			"code":  {Client: "app", Type: config.GrantAuthorizationCode, Scopes: []string{"openid"}},
		},
	}
	cfg.ApplyDefaults()
	d, err := New(cfg, Options{Clock: clock, FetchWait: 2 * time.Second})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, serversOf(d)) }()
	f.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.Errorf("Run: %v", err)
		}
	})
	select {
	case <-d.Started():
	case err := <-done:
		f.Fatalf("daemon did not start: %v", err)
	}
	waitFor(f, "first tokens", func() bool {
		return d.grant("cc").cur.Load().AccessToken != "" && d.grant("other").cur.Load().AccessToken != ""
	})
	return &fuzzEnv{d: d, prov: prov, clock: clock}
}

// peers the fuzzer chooses from.
var fuzzPeers = []peer{
	{},                         // not identified (no SO_PEERCRED)
	{ok: true, uid: 0, gid: 0}, // root: an operator
	{ok: true, uid: fuzzReader, gid: fuzzReader},
	{ok: true, uid: fuzzOther, gid: fuzzOther},
	{ok: true, uid: 3000, gid: 3000}, // reads nothing
}

// readRequest parses a request as the server would from the wire; ok is
// false for one the server would refuse before any handler runs.
func readRequest(method, target string) (*http.Request, bool) {
	if strings.ContainsAny(method+target, " \r\n") {
		return nil, false
	}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: tokend\r\n\r\n")))
	if err != nil {
		return nil, false
	}
	return r, true
}

func FuzzAPIPath(f *testing.F) {
	for _, s := range []struct {
		method, path, query string
		who                 uint8
	}{
		{"GET", "/v1/tokens/cc", "", 2},
		{"GET", "/v1/tokens/cc", "format=raw", 2},
		{"GET", "/v1/tokens/cc", "", 3},
		{"GET", "/v1/tokens/cc", "", 0},
		{"GET", "/v1/tokens/c%63", "", 2},
		{"GET", "/v1/tokens/cc/", "", 2},
		{"GET", "/v1/tokens/../tokens/cc", "", 3},
		{"GET", "//v1/tokens/cc", "", 3},
		{"GET", "/v1/tokens/cc%2Fstatus", "", 2},
		{"GET", "/v1/tokens/cc/status", "", 4},
		{"GET", "/v1/tokens/other", "format=raw&format=json", 2},
		{"HEAD", "/v1/tokens/other", "", 3},
		{"GET", "/v1/tokens", "", 4},
		{"GET", "/v1/tokens/nosuch", "", 1},
		{"POST", "/v1/tokens/cc/refresh", "", 2},
		{"POST", "/v1/tokens/cc/refresh", "", 1},
		{"POST", "/v1/tokens/code/authorize", "", 1},
		{"POST", "/v1/tokens/other/revoke", "", 3},
		{"DELETE", "/v1/tokens/cc", "", 1},
		{"GET", "/v1/tokens/%00", "", 1},
		{"OPTIONS", "*", "", 1},
		{"GET", "http://evil/v1/tokens/cc", "", 3},
	} {
		f.Add(s.method, s.path, s.query, s.who)
	}
	e := newFuzzEnv(f)
	handler := e.d.apiServer().Handler
	// The checks below can fail: a reader does get a token from this
	// handler, and someone else does not.
	for _, c := range []struct {
		p    peer
		code int
	}{{fuzzPeers[2], http.StatusOK}, {fuzzPeers[3], http.StatusForbidden}, {fuzzPeers[0], http.StatusForbidden}} {
		r, _ := readRequest("GET", "/v1/tokens/cc")
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r.WithContext(withPeer(r.Context(), c.p)))
		if w.Code != c.code || (c.code == http.StatusOK) != strings.Contains(w.Body.String(), "at_") {
			f.Fatalf("GET /v1/tokens/cc as %+v: %d %s, want %d", c.p, w.Code, w.Body, c.code)
		}
	}
	f.Fuzz(func(t *testing.T, method, path, query string, who uint8) {
		target := path
		if query != "" {
			target += "?" + query
		}
		r, ok := readRequest(method, target)
		if !ok {
			return
		}
		p := fuzzPeers[int(who)%len(fuzzPeers)]
		r = r.WithContext(withPeer(r.Context(), p))
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		code, body := w.Code, w.Body.String()

		name, isTokenPath := strings.CutPrefix(r.URL.Path, "/v1/tokens/")
		if code >= 500 && !(strings.HasPrefix(r.URL.Path, "/v1/tokens/") && (code == 503 || code == 504)) {
			t.Fatalf("%s %s as %+v: %d %s", method, target, p, code, body)
		}
		// Secrets in the answer: only an access token, only on the token
		// route, only to a reader of that grant.
		g := e.d.grant(name)
		mayHaveToken := isTokenPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			g != nil && e.d.mayRead(p, g) && code == http.StatusOK
		for _, s := range e.prov.Issued() {
			if !strings.Contains(body, s) {
				continue
			}
			if !mayHaveToken || !strings.HasPrefix(s, "at_") {
				t.Fatalf("%s %s as %+v answered %d with a secret (%.6s…):\n%s", method, target, p, code, s[:6], body)
			}
		}
		if code == http.StatusOK && isTokenPath && !mayHaveToken && strings.Contains(body, "access_token") {
			t.Fatalf("%s %s as %+v answered a token response", method, target, p)
		}
	})
}

// fuzzBinding is the binding cookie of the fuzzed pending authorization.
const fuzzBinding = "fuzz-binding-cookie-0123456789abcdefghijklmnopq"

func FuzzCallback(f *testing.F) {
	for _, q := range []string{
		"",
		"state=" + fuzzState + "&code=ac_forged",
		"state=" + fuzzState + "&error=access_denied&error_description=no",
		"state=" + fuzzState + "&code=x&iss=http://evil",
		"state=" + fuzzState + "&state=other&code=x",
		"state=other&code=x",
		"code=x",
		"state=&code=",
		"state=" + strings.Repeat("s", 600),
		"state=%zz",
		"error=server_error&state=nope",
		"state=" + fuzzState + "%00&code=x",
	} {
		f.Add(q)
	}
	e := newFuzzEnv(f)
	handler := e.d.callbackServer().Handler
	st := e.d.st.(*store.Store)
	pend := store.Pending{
		State: fuzzState, Grant: "code", Kind: config.GrantAuthorizationCode,
		Verifier: "fuzz-verifier-0123456789abcdefghijklmnopqrstuvwxyz", RedirectURI: "http://127.0.0.1:1/callback",
		Created: t0, Deadline: t0.Add(time.Hour),
		BindingHash: hashHex(fuzzBinding),
	}
	f.Fuzz(func(t *testing.T, query string) {
		r, ok := readRequest("GET", "/callback?"+query)
		if !ok {
			return
		}
		// As the browser that opened the start page sends it: the
		// redirect_uri's host and the binding cookie.
		r.Host = "127.0.0.1:1"
		r.AddCookie(&http.Cookie{Name: bindingCookieName(fuzzState, false), Value: fuzzBinding})
		real := r.URL.Query().Get("state") == fuzzState
		if real {
			if err := st.PutPending(pend); err != nil {
				t.Fatal(err)
			}
		}
		before, err := st.Tokens()
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code == http.StatusOK && !real {
			t.Fatalf("GET /callback?%s: 200 without a pending authorization:\n%s", query, w.Body)
		}
		after, err := st.Tokens()
		if err != nil {
			t.Fatal(err)
		}
		// Only the grant of the real pending authorization may change (its
		// status notes the failed attempt); nothing else, ever.
		if !real {
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("GET /callback?%s changed the store", query)
			}
			return
		}
		strip := func(ts []store.Token) []store.Token {
			return slices.DeleteFunc(slices.Clone(ts), func(t store.Token) bool { return t.Grant == "code" })
		}
		if !reflect.DeepEqual(strip(before), strip(after)) {
			t.Fatalf("GET /callback?%s changed another grant's token", query)
		}
		for _, tok := range after {
			if tok.Grant == "code" && tok.AccessToken != "" {
				t.Fatalf("GET /callback?%s stored a token for a forged code", query)
			}
		}
	})
}
