package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestRevoke(t *testing.T) {
	for _, m := range authMethods {
		t.Run(string(m), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkForm(t, r, "/revoke", m, url.Values{"token": {"rt-1"}, "token_type_hint": {"refresh_token"}})
				w.WriteHeader(200)
			}))
			defer srv.Close()
			if err := newTestProvider(srv, m, newClock()).Revoke(context.Background(), NewSecret("rt-1"), "refresh_token"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRevokeErrors(t *testing.T) {
	cases := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		class      Class
		code       string
		retryAfter time.Duration
	}{
		{"503 with Retry-After", 503, map[string]string{"Retry-After": "30"}, "", Transient, "", 30 * time.Second},
		{"unsupported_token_type", 400, nil, `{"error":"unsupported_token_type"}`, Configuration, "unsupported_token_type", 0},
		{"invalid_client", 401, nil, `{"error":"invalid_client"}`, Credentials, "invalid_client", 0},
		{"HTML 500", 500, map[string]string{"Content-Type": "text/html"}, "<html>x</html>", Transient, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			err := newTestProvider(srv, AuthBasic, newClock()).Revoke(context.Background(), NewSecret("rt-1"), "")
			var e *Error
			if !errors.As(err, &e) || e.Op != "revoke" || e.Class != c.class || e.Code != c.code || e.Status != c.status || e.RetryAfter != c.retryAfter {
				t.Errorf("err = %#v", err)
			}
		})
	}
}

func TestRevokeWithoutHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checkForm(t, r, "/revoke", AuthPost, url.Values{"token": {"at-1"}})
	}))
	defer srv.Close()
	if err := newTestProvider(srv, AuthPost, newClock()).Revoke(context.Background(), NewSecret("at-1"), ""); err != nil {
		t.Fatal(err)
	}
}
