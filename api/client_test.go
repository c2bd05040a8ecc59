package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// seen is what the fake daemon received.
type seen struct {
	method, path, query, accept string
}

func fakeAPI(t testing.TB, status int, body string, got *seen) string {
	return testutil.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*got = seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Accept")}
		if r.Host != "tokend" {
			t.Errorf("Host = %q", r.Host)
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
}

func TestClientRequests(t *testing.T) {
	exp := time.Date(2026, 11, 23, 11, 0, 0, 0, time.UTC)
	status := `{"name":"a/b c","type":"authorization_code","state":"valid","expires_at":"2026-11-23T11:00:00Z","expires_in":3600,"generation":4,"history":[{"at":"2026-11-23T10:00:00Z","result":"success","latency_ms":12}]}`
	tests := []struct {
		name                      string
		call                      func(c *Client) (any, error)
		body                      string
		method, path, query, acpt string
		check                     func(t *testing.T, v any)
	}{
		{"token", func(c *Client) (any, error) { return c.Token(context.Background(), "a/b c") },
			`{"access_token":"at-1","token_type":"Bearer","expires_in":3599,"expires_at":"2026-11-23T11:00:00Z","scope":"x y"}`,
			"GET", "/v1/tokens/a%2Fb%20c", "", "application/json",
			func(t *testing.T, v any) {
				tr := v.(*TokenResponse)
				if tr.AccessToken != "at-1" || tr.TokenType != "Bearer" || tr.ExpiresIn != 3599 || !tr.ExpiresAt.Equal(exp) || tr.Scope != "x y" {
					t.Errorf("got %+v", tr)
				}
			}},
		{"raw", func(c *Client) (any, error) { return c.RawToken(context.Background(), "demo") },
			"at-raw\n", "GET", "/v1/tokens/demo", "format=raw", "text/plain",
			func(t *testing.T, v any) {
				if v.(string) != "at-raw" {
					t.Errorf("got %q", v)
				}
			}},
		{"list", func(c *Client) (any, error) { return c.List(context.Background()) },
			`{"grants":[{"name":"a","state":"valid"},{"name":"b","state":"failing","consecutive_failures":3}]}`,
			"GET", "/v1/tokens", "", "application/json",
			func(t *testing.T, v any) {
				l := v.(*TokenList)
				if len(l.Grants) != 2 || l.Grants[1].Name != "b" || l.Grants[1].Failures != 3 {
					t.Errorf("got %+v", l)
				}
			}},
		{"status", func(c *Client) (any, error) { return c.Status(context.Background(), "a/b c") },
			status, "GET", "/v1/tokens/a%2Fb%20c/status", "", "application/json",
			func(t *testing.T, v any) {
				s := v.(*GrantStatus)
				if s.State != "valid" || s.Generation != 4 || len(s.History) != 1 || s.History[0].LatencyMS != 12 {
					t.Errorf("got %+v", s)
				}
			}},
		{"authorize", func(c *Client) (any, error) { return c.Authorize(context.Background(), "dev") },
			`{"grant":"dev","kind":"device_code","user_code":"ABCD-EFGH","verification_uri":"https://id.example.com/device"}`,
			"POST", "/v1/tokens/dev/authorize", "", "application/json",
			func(t *testing.T, v any) {
				a := v.(*AuthorizeResponse)
				if a.Kind != "device_code" || a.UserCode != "ABCD-EFGH" || a.VerificationURI != "https://id.example.com/device" {
					t.Errorf("got %+v", a)
				}
			}},
		{"refresh", func(c *Client) (any, error) { return c.Refresh(context.Background(), "g") },
			status, "POST", "/v1/tokens/g/refresh", "", "application/json",
			func(t *testing.T, v any) {
				if v.(*GrantStatus).State != "valid" {
					t.Errorf("got %+v", v)
				}
			}},
		{"revoke", func(c *Client) (any, error) { return c.Revoke(context.Background(), "g") },
			`{"name":"g","state":"reauthorization_required"}`, "POST", "/v1/tokens/g/revoke", "", "application/json",
			func(t *testing.T, v any) {
				if v.(*GrantStatus).State != "reauthorization_required" {
					t.Errorf("got %+v", v)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			c := NewClient(fakeAPI(t, 200, tt.body, &got))
			v, err := tt.call(c)
			if err != nil {
				t.Fatal(err)
			}
			want := seen{tt.method, tt.path, tt.query, tt.acpt}
			if got != want {
				t.Errorf("request %+v, want %+v", got, want)
			}
			tt.check(t, v)
		})
	}
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   *Error
		msg    string
	}{
		{"reauthorization", 409, `{"error":"reauthorization_required","error_description":"the provider rejected the refresh token; run tokend authorize g"}`,
			&Error{409, "reauthorization_required", "the provider rejected the refresh token; run tokend authorize g"},
			"tokend: the provider rejected the refresh token; run tokend authorize g (reauthorization_required)"},
		{"forbidden", 403, `{"error":"forbidden"}`, &Error{403, "forbidden", ""}, "tokend: forbidden (HTTP 403)"},
		{"not json", 502, "Bad Gateway\nmore", &Error{502, "", "Bad Gateway"}, "tokend: Bad Gateway (HTTP 502)"},
		{"empty", 500, "", &Error{500, "", ""}, "tokend: HTTP 500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got seen
			_, err := NewClient(fakeAPI(t, tt.status, tt.body, &got)).Token(context.Background(), "g")
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if *ae != *tt.want {
				t.Errorf("Error = %+v, want %+v", *ae, *tt.want)
			}
			if err.Error() != tt.msg {
				t.Errorf("message %q, want %q", err.Error(), tt.msg)
			}
		})
	}
}

func TestClientMalformedAndLarge(t *testing.T) {
	var got seen
	_, err := NewClient(fakeAPI(t, 200, `{"access_token":`, &got)).Token(context.Background(), "g")
	if err == nil || !strings.Contains(err.Error(), "tokend: malformed answer") {
		t.Errorf("malformed: %v", err)
	}
	big := `{"access_token":"` + strings.Repeat("x", maxResponse) + `"}`
	_, err = NewClient(fakeAPI(t, 200, big, &got)).Token(context.Background(), "g")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("large: %v", err)
	}
	if _, err := NewClient(fakeAPI(t, 200, "{}", &got)).Token(context.Background(), ""); err == nil {
		t.Error("empty name accepted")
	}
}

func TestClientNotRunning(t *testing.T) {
	dir := testutil.ShortDir(t)

	missing := filepath.Join(dir, "none.sock")
	_, err := NewClient(missing).Token(context.Background(), "g")
	if err == nil || err.Error() != "tokend: cannot connect to "+missing+": is tokend running?" || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("missing socket: %v", err)
	}

	// A socket file nobody listens on (a daemon that died).
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	_, err = NewClient(stale).List(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is tokend running?") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("stale socket: %v", err)
	}
}

func TestClientPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores socket permissions")
	}
	var got seen
	path := fakeAPI(t, 200, "{}", &got)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o000); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Dir(path), 0o700) })
	_, err := NewClient(path).Token(context.Background(), "g")
	if err == nil || !strings.Contains(err.Error(), "permission denied on "+path) {
		t.Errorf("err = %v", err)
	}
}

func TestClientContext(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	path := testutil.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := NewClient(path).Token(ctx, "g")
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

// The shapes decode what the server side encodes (a guard against a tag
// typo in either direction).
func TestClientStatusRoundTrip(t *testing.T) {
	in := GrantStatus{Name: "g", State: "failing", Failures: 2, LastError: "oauth: refresh: temporarily_unavailable", ExpiresAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := json.Marshal(TokenList{Grants: []GrantStatus{in}})
	if err != nil {
		t.Fatal(err)
	}
	var got seen
	l, err := NewClient(fakeAPI(t, 200, string(b), &got)).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Grants) != 1 || l.Grants[0].Name != in.Name || l.Grants[0].Failures != 2 || l.Grants[0].LastError != in.LastError || !l.Grants[0].ExpiresAt.Equal(in.ExpiresAt) {
		t.Errorf("got %+v", l.Grants)
	}
}
