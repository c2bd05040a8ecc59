package devprovider

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a manual clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logBuffer collects the server's log lines.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) Logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// mustServer starts a server for the test. At cleanup it closes it and
// checks that no secret it issued, and none of extraSecrets, appears in its
// log.
func mustServer(t testing.TB, o Options, extraSecrets ...string) *Server {
	t.Helper()
	logs := &logBuffer{}
	o.Logf = logs.Logf
	s := New(o)
	t.Cleanup(func() {
		s.Close()
		out := logs.String()
		if out == "" {
			t.Errorf("server logged nothing")
		}
		for _, sec := range append(s.Issued(), extraSecrets...) {
			if sec != "" && strings.Contains(out, sec) {
				t.Errorf("secret %.6s... appears in the server log", sec)
			}
		}
	})
	return s
}

// response is a decoded JSON answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r response) str(key string) string {
	v, _ := r.body[key].(string)
	return v
}

func (r response) num(key string) float64 {
	v, _ := r.body[key].(float64)
	return v
}

// auth says how post sends client credentials.
type auth struct {
	method, id, secret string
}

// post sends a form to the server with the client credentials per a.
func post(t testing.TB, s *Server, path string, a auth, form url.Values) response {
	t.Helper()
	r, err := tryPost(s, path, a, form)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryPost is post for other goroutines than the test's.
func tryPost(s *Server, path string, a auth, form url.Values) (response, error) {
	req, err := formRequest(s, path, a, form)
	if err != nil {
		return response{}, err
	}
	return tryDo(req)
}

// formRequest is the POST of form to path with the client credentials per
// a: in the form (a copy; form is left as it is) or in a Basic header.
func formRequest(s *Server, path string, a auth, form url.Values) (*http.Request, error) {
	form = cloneValues(form)
	switch a.method {
	case AuthMethodPost:
		form.Set("client_id", a.id)
		form.Set("client_secret", a.secret)
	case AuthMethodNone:
		form.Set("client_id", a.id)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a.method == AuthMethodBasic {
		req.SetBasicAuth(url.QueryEscape(a.id), url.QueryEscape(a.secret))
	}
	return req, nil
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	r, err := tryDo(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func tryDo(req *http.Request) (response, error) { return tryDoWith(http.DefaultClient, req) }

func tryDoWith(c *http.Client, req *http.Request) (response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			return r, fmt.Errorf("%s %s: bad JSON %q: %w", req.Method, req.URL.Path, b, err)
		}
	}
	return r, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// wantOK fails unless r is a 200 token response with no-store.
func wantOK(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("status %d body %s, want a 200 token response", r.status, r.raw)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
}

// wantError fails unless r is an RFC 6749 §5.2 error with this status and
// code.
func wantError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("status %d body %s, want %d %s", r.status, r.raw, status, code)
	}
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t testing.TB, rawURL string) *http.Response {
	t.Helper()
	resp, err := noRedirect.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func location(t testing.TB, resp *http.Response) url.Values {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
