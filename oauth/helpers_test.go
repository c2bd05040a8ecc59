package oauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

const (
	testClientID = "client-1"
	// testClientSecret has characters that Basic auth must form-encode
	// first (RFC 6749 §2.3.1).
	testClientSecret = "s3cret:client/XYZ+="
)

var authMethods = []AuthMethod{AuthBasic, AuthPost, AuthNone}

// testClock is a settable clock for Provider.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// formServer answers every request with answer (200, as JSON; a test may
// change the map between requests) and keeps in *form the form body the
// last request sent. It closes when the test ends.
func formServer(t *testing.T, form *url.Values, answer map[string]any) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		*form, _ = url.ParseQuery(string(b))
		writeJSON(w, 200, answer)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newTestProvider returns a provider for srv (token endpoint /token,
// revocation /revoke, device authorization /device) authenticating with m.
func newTestProvider(srv *httptest.Server, m AuthMethod, clock *testClock) *Provider {
	return &Provider{
		Endpoints: Endpoints{
			Issuer:              srv.URL,
			Authorization:       srv.URL + "/authorize",
			Token:               srv.URL + "/token",
			Revocation:          srv.URL + "/revoke",
			DeviceAuthorization: srv.URL + "/device",
		},
		Client: Client{
			ID:          testClientID,
			Secret:      NewSecret(testClientSecret),
			AuthMethod:  m,
			RedirectURI: "http://127.0.0.1:8785/callback",
		},
		HTTP: srv.Client(),
		Now:  clock.Now,
	}
}

// checkForm checks that r is a form POST to path, authenticated with m, whose
// body is exactly want (plus the client's id and secret in the body for
// client_secret_post and none). It reports through t.Errorf, which is safe
// from the handler's goroutine.
func checkForm(t *testing.T, r *http.Request, path string, m AuthMethod, want url.Values) {
	t.Helper()
	if r.Method != http.MethodPost {
		t.Errorf("method = %s, want POST", r.Method)
	}
	if r.URL.Path != path {
		t.Errorf("path = %s, want %s", r.URL.Path, path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", ct)
	}
	w := url.Values{}
	for k, v := range want {
		w[k] = append([]string(nil), v...)
	}
	user, pass, basic := r.BasicAuth()
	switch m {
	case AuthBasic:
		if !basic {
			t.Errorf("no Basic authorization")
		}
		if user != url.QueryEscape(testClientID) || pass != url.QueryEscape(testClientSecret) {
			t.Errorf("Basic credentials = %q, %q", user, pass)
		}
	case AuthPost:
		w.Set("client_id", testClientID)
		w.Set("client_secret", testClientSecret)
	case AuthNone:
		w.Set("client_id", testClientID)
	}
	if m != AuthBasic && r.Header.Get("Authorization") != "" {
		t.Errorf("Authorization header sent with %s", m)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading body: %v", err)
	}
	if string(body) != w.Encode() {
		t.Errorf("body =\n  %s\nwant\n  %s", body, w.Encode())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
