package oauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestClassification(t *testing.T) {
	html := "<html><body>" + strings.Repeat("BODY-MARKER ", 100) + "</body></html>"
	cases := []struct {
		name        string
		op          string // "refresh" (default) or "client_credentials"
		status      int
		ct          string
		header      map[string]string
		body        string
		class       Class
		code        string
		malformed   bool
		retryAfter  time.Duration
		wantMessage string // exact, when set
	}{
		{name: "HTML 200", status: 200, ct: "text/html", body: html, class: Transient, malformed: true,
			wantMessage: fmt.Sprintf("oauth: refresh: malformed response: not JSON (text/html, %d bytes) (HTTP 200)", len(html))},
		{name: "HTML 502", status: 502, ct: "text/html; charset=utf-8", body: html, class: Transient, malformed: true,
			wantMessage: fmt.Sprintf("oauth: refresh: malformed response: not JSON (text/html, %d bytes) (HTTP 502)", len(html))},
		{name: "empty body 200", status: 200, ct: "application/json", body: "", class: Transient, malformed: true,
			wantMessage: "oauth: refresh: malformed response: empty body (HTTP 200)"},
		{name: "empty body 500", status: 500, body: "", class: Transient, malformed: true},
		{name: "10 MB body", status: 200, ct: "application/json", body: `{"access_token":"` + strings.Repeat("A", 10<<20) + `"}`, class: Transient, malformed: true,
			wantMessage: "oauth: refresh: malformed response: body over 1048576 bytes (application/json) (HTTP 200)"},
		{name: "JSON without access_token", status: 200, ct: "application/json", body: `{"token_type":"Bearer","expires_in":3600}`, class: Configuration, malformed: true,
			wantMessage: "oauth: refresh: the provider's answer holds no token that can be served for this grant: malformed response: JSON without access_token (application/json, 41 bytes) (HTTP 200)"},
		{name: "JSON array", status: 200, ct: "application/json", body: `[1,2]`, class: Transient, malformed: true},
		{name: "form without access_token", status: 200, ct: "application/x-www-form-urlencoded", body: `token_type=bearer`, class: Configuration, malformed: true},
		{name: "200 with invalid_grant", status: 200, ct: "application/json", body: `{"error":"invalid_grant","error_description":"expired"}`, class: Reauthorize, code: "invalid_grant",
			wantMessage: "oauth: refresh: invalid_grant: expired (HTTP 200)"},
		{name: "200 with slow_down", status: 200, ct: "application/json", body: `{"error":"slow_down"}`, class: Transient, code: "slow_down"},
		{name: "429 Retry-After seconds", status: 429, ct: "application/json", header: map[string]string{"Retry-After": "120"}, body: `{"error":"rate_limited"}`, class: Transient, code: "rate_limited", retryAfter: 2 * time.Minute},
		{name: "429 Retry-After date", status: 429, header: map[string]string{"Retry-After": "Tue, 06 May 2031 07:10:09 GMT"}, body: "", class: Transient, malformed: true, retryAfter: 2 * time.Minute},
		{name: "429 Retry-After in the past", status: 429, header: map[string]string{"Retry-After": "Tue, 06 May 2031 07:00:00 GMT"}, class: Transient, malformed: true},
		{name: "503 Retry-After", status: 503, ct: "application/json", header: map[string]string{"Retry-After": "7"}, body: `{"error":"temporarily_unavailable"}`, class: Transient, code: "temporarily_unavailable", retryAfter: 7 * time.Second},
		{name: "JSON error sent as text/plain", status: 400, ct: "text/plain", body: `{"error":"invalid_grant"}`, class: Reauthorize, code: "invalid_grant"},
		{name: "500 Retry-After ignored", status: 500, ct: "application/json", header: map[string]string{"Retry-After": "7"}, body: `{"error":"server_error"}`, class: Transient, code: "server_error"},
		{name: "invalid_grant", status: 400, ct: "application/json", body: `{"error":"invalid_grant","error_description":"Token is not active","error_uri":"https://id.example.com/e"}`, class: Reauthorize, code: "invalid_grant",
			wantMessage: "oauth: refresh: invalid_grant: Token is not active (HTTP 400)"},
		{name: "invalid_client 401", status: 401, ct: "application/json", header: map[string]string{"WWW-Authenticate": `Basic realm="x"`}, body: `{"error":"invalid_client"}`, class: Credentials, code: "invalid_client",
			wantMessage: "oauth: refresh: invalid_client (HTTP 401)"},
		{name: "bare 401", status: 401, body: "", class: Credentials, malformed: true},
		{name: "unauthorized_client", status: 400, ct: "application/json", body: `{"error":"unauthorized_client"}`, class: Credentials, code: "unauthorized_client"},
		{name: "Dex invalid_request about refresh token", status: 400, ct: "application/json", body: `{"error":"invalid_request","error_description":"Refresh token is invalid or has already been claimed by another client."}`, class: Reauthorize, code: "invalid_request"},
		{name: "invalid_request naming refresh_token", status: 400, ct: "application/json", body: `{"error":"invalid_request","error_description":"bad REFRESH_TOKEN"}`, class: Reauthorize, code: "invalid_request"},
		{name: "Dex answer outside refresh", op: "client_credentials", status: 400, ct: "application/json", body: `{"error":"invalid_request","error_description":"Refresh token is invalid or has already been claimed by another client."}`, class: Configuration, code: "invalid_request"},
		{name: "invalid_request", status: 400, ct: "application/json", body: `{"error":"invalid_request","error_description":"missing parameter"}`, class: Configuration, code: "invalid_request"},
		{name: "invalid_scope", status: 400, ct: "application/json", body: `{"error":"invalid_scope"}`, class: Configuration, code: "invalid_scope"},
		{name: "unsupported_grant_type", status: 400, ct: "application/json", body: `{"error":"unsupported_grant_type"}`, class: Configuration, code: "unsupported_grant_type"},
		{name: "invalid_target", status: 400, ct: "application/json", body: `{"error":"invalid_target"}`, class: Configuration, code: "invalid_target"},
		{name: "access_denied", status: 400, ct: "application/json", body: `{"error":"access_denied"}`, class: Denied, code: "access_denied"},
		{name: "unknown code 400", status: 400, ct: "application/json", body: `{"error":"weird"}`, class: Configuration, code: "weird"},
		{name: "unknown code 503", status: 503, ct: "application/json", body: `{"error":"weird"}`, class: Transient, code: "weird"},
		{name: "form-encoded error", status: 400, ct: "application/x-www-form-urlencoded", body: `error=invalid_grant&error_description=gone`, class: Reauthorize, code: "invalid_grant"},
		{name: "404 HTML", status: 404, ct: "text/html", body: html, class: Configuration, malformed: true},
		{name: "JSON 400 without error", status: 400, ct: "application/json", body: `{"message":"no"}`, class: Configuration, malformed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.ct != "" {
					w.Header().Set("Content-Type", c.ct)
				}
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			p := newTestProvider(srv, AuthBasic, newClock())
			var err error
			op := c.op
			if op == "" {
				op = "refresh"
				_, err = p.Refresh(context.Background(), NewSecret("rt-1"), nil, nil)
			} else {
				_, err = p.ClientCredentials(context.Background(), nil, nil)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if e.Op != op || e.Class != c.class || e.Code != c.code || e.Status != c.status {
				t.Errorf("Op, Class, Code, Status = %q, %v, %q, %d; want %q, %v, %q, %d", e.Op, e.Class, e.Code, e.Status, op, c.class, c.code, c.status)
			}
			if ClassOf(err) != c.class || ClassOf(fmt.Errorf("wrapped: %w", err)) != c.class {
				t.Errorf("ClassOf = %v", ClassOf(err))
			}
			if got := errors.Is(err, ErrMalformed); got != c.malformed {
				t.Errorf("errors.Is(err, ErrMalformed) = %v", got)
			}
			if e.RetryAfter != c.retryAfter || RetryAfter(err) != c.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, c.retryAfter)
			}
			msg := err.Error()
			if c.wantMessage != "" && msg != c.wantMessage {
				t.Errorf("message\n  %s\nwant\n  %s", msg, c.wantMessage)
			}
			if !strings.HasPrefix(msg, "oauth: "+op+": ") || !strings.HasSuffix(msg, fmt.Sprintf("(HTTP %d)", c.status)) {
				t.Errorf("message %q", msg)
			}
			if strings.Contains(msg, "BODY-MARKER") || strings.Contains(msg, "AAAA") || strings.Contains(msg, "<html") {
				t.Errorf("message holds body content: %q", msg)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	cases := []struct {
		e    *Error
		want string
	}{
		{&Error{Op: "refresh", Code: "invalid_grant", Description: "expired", Status: 400}, "oauth: refresh: invalid_grant: expired (HTTP 400)"},
		{&Error{Op: "refresh", Code: "invalid_grant"}, "oauth: refresh: invalid_grant"},
		{&Error{Op: "revoke", Err: errors.New("boom")}, "oauth: revoke: boom"},
		{&Error{Op: "x"}, "oauth: x: request failed"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
	}
}

func TestClassOf(t *testing.T) {
	if ClassOf(errors.New("x")) != Transient || ClassOf(context.Canceled) != Transient || ClassOf(context.DeadlineExceeded) != Transient {
		t.Error("non-*Error errors must be Transient")
	}
	err := fmt.Errorf("daemon: %w", &Error{Op: "refresh", Class: Credentials, RetryAfter: time.Second})
	if ClassOf(err) != Credentials || RetryAfter(err) != time.Second {
		t.Errorf("wrapped: %v %v", ClassOf(err), RetryAfter(err))
	}
	if RetryAfter(errors.New("x")) != 0 {
		t.Error("RetryAfter of a plain error")
	}
	for c, s := range map[Class]string{Transient: "transient", Reauthorize: "reauthorization", Credentials: "credentials", Configuration: "configuration", Denied: "denied", Class(99): "unknown"} {
		if c.String() != s {
			t.Errorf("%d.String() = %q", c, c.String())
		}
	}
}

func TestErrorLogValue(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Error("refresh failed", "err", &Error{Op: "refresh", Code: "invalid_grant", Description: "d", URI: "https://e", Status: 400, Class: Reauthorize, RetryAfter: 3 * time.Second})
	want := `"err":{"op":"refresh","code":"invalid_grant","description":"d","uri":"https://e","status":400,"class":"reauthorization","retry_after":3000000000}`
	if !strings.Contains(buf.String(), want) {
		t.Errorf("log = %s\nwant %s", buf.String(), want)
	}
}

// TestNoSecretsInErrors sends every kind of secret to a provider that
// echoes what it received (and a body marker) in every way it can, and
// checks that no message, formatted error or log line carries one.
func TestNoSecretsInErrors(t *testing.T) {
	secrets := []string{testClientSecret, "refresh-SECRET-1", "password-SECRET-2", "code-SECRET-3", "verifier-SECRET-4", "revoke-SECRET-5", "BODY-MARKER"}
	answers := []func(w http.ResponseWriter, echo string){
		func(w http.ResponseWriter, echo string) {
			writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "bad token " + echo, "error_uri": "https://e/?t=" + echo, "extra": "BODY-MARKER"})
		},
		func(w http.ResponseWriter, echo string) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("<p>BODY-MARKER " + echo + "</p>"))
		},
		func(w http.ResponseWriter, echo string) {
			writeJSON(w, 200, map[string]any{"token_type": "BODY-MARKER " + echo})
		},
		func(w http.ResponseWriter, echo string) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token": BODY-MARKER ` + echo))
		},
	}
	for i, answer := range answers {
		for _, m := range authMethods {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				var echo []string
				for _, v := range r.PostForm {
					echo = append(echo, v...)
				}
				if _, pass, ok := r.BasicAuth(); ok {
					echo = append(echo, pass, testClientSecret) // escaped and not
				}
				answer(w, strings.Join(echo, " "))
			}))
			p := newTestProvider(srv, m, newClock())
			ctx := context.Background()
			var errs []error
			_, err := p.Refresh(ctx, NewSecret("refresh-SECRET-1"), nil, nil)
			errs = append(errs, err)
			_, err = p.Password(ctx, "u", NewSecret("password-SECRET-2"), nil, nil)
			errs = append(errs, err)
			_, err = p.Exchange(ctx, "code-SECRET-3", NewSecret("verifier-SECRET-4"), nil)
			errs = append(errs, err)
			if i < 2 { // the others are 2xx: revocation succeeded
				errs = append(errs, p.Revoke(ctx, NewSecret("revoke-SECRET-5"), "refresh_token"))
			}
			_, err = p.ClientCredentials(ctx, nil, nil)
			errs = append(errs, err)
			srv.Close()
			for j, err := range errs {
				if err == nil {
					t.Fatalf("answer %d, %s, request %d: no error", i, m, j)
				}
				var buf bytes.Buffer
				slog.New(slog.NewJSONHandler(&buf, nil)).Error("x", "err", err)
				slog.New(slog.NewTextHandler(&buf, nil)).Error("x", "err", err)
				out := fmt.Sprintf("%v %+v %s %q", err, err, err, err) + buf.String()
				for _, s := range secrets {
					if strings.Contains(out, s) {
						t.Errorf("answer %d, %s, request %d: output holds %q:\n%s", i, m, j, s, out)
					}
				}
				if i == 0 && !(m == AuthNone && j == len(errs)-1) && !strings.Contains(out, "[REDACTED]") {
					t.Errorf("answer %d, %s, request %d: nothing redacted: %s", i, m, j, out)
				}
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	cases := map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"30":                            30 * time.Second,
		" 30 ":                          30 * time.Second,
		"soon":                          0,
		"Tue, 06 May 2031 07:09:09 GMT": time.Minute,
		"Tue, 06 May 2031 07:00:00 GMT": 0,
		"99999999999999":                365 * 24 * time.Hour,
	}
	for v, want := range cases {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := parseRetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
}
