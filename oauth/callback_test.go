package oauth

import (
	"errors"
	"net/url"
	"testing"
)

func TestParseCallback(t *testing.T) {
	const iss = "https://id.example.com"
	cases := []struct {
		name       string
		query      string
		requireIss bool
		code       string // want, on success
		class      Class
		errCode    string
		fail       bool
		noIssuer   bool // wantIssuer ""
	}{
		{name: "unknown issuer: iss not checked", query: "code=c1&state=s1&iss=https%3A%2F%2Fany.example.com", noIssuer: true, code: "c1"},
		{name: "unknown issuer but iss required", query: "code=c1&state=s1&iss=https%3A%2F%2Fany.example.com", noIssuer: true, requireIss: true, fail: true, class: Configuration},
		{name: "ok", query: "code=c1&state=s1", code: "c1"},
		{name: "ok with iss", query: "code=c1&state=s1&iss=https%3A%2F%2Fid.example.com", requireIss: true, code: "c1"},
		{name: "iss with trailing slash", query: "code=c1&state=s1&iss=https%3A%2F%2Fid.example.com%2F", code: "c1"},
		{name: "wrong iss", query: "code=c1&state=s1&iss=https%3A%2F%2Fevil.example.com", fail: true, class: Configuration},
		{name: "two iss", query: "code=c1&state=s1&iss=https%3A%2F%2Fid.example.com&iss=x", fail: true, class: Configuration},
		{name: "iss required but missing", query: "code=c1&state=s1", requireIss: true, fail: true, class: Configuration},
		{name: "wrong iss on error answer", query: "error=access_denied&state=s1&iss=https%3A%2F%2Fevil.example.com", fail: true, class: Configuration},
		{name: "access_denied", query: "error=access_denied&error_description=User+said+no&state=s1", fail: true, class: Denied, errCode: "access_denied"},
		{name: "invalid_scope", query: "error=invalid_scope&state=s1", fail: true, class: Configuration, errCode: "invalid_scope"},
		{name: "unauthorized_client", query: "error=unauthorized_client&state=s1", fail: true, class: Credentials, errCode: "unauthorized_client"},
		{name: "temporarily_unavailable", query: "error=temporarily_unavailable&state=s1", fail: true, class: Transient, errCode: "temporarily_unavailable"},
		{name: "empty error", query: "error=&state=s1", fail: true, class: Configuration},
		{name: "no code", query: "state=s1", fail: true, class: Configuration},
		{name: "empty code", query: "code=&state=s1", fail: true, class: Configuration},
		{name: "no state", query: "code=c1", fail: true, class: Configuration},
		{name: "two codes", query: "code=c1&code=c2&state=s1", fail: true, class: Configuration},
		{name: "two states", query: "code=c1&state=s1&state=s2", fail: true, class: Configuration},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := iss
			if c.noIssuer {
				want = ""
			}
			q, err := url.ParseQuery(c.query)
			if err != nil {
				t.Fatal(err)
			}
			code, state, err := ParseCallback(q, want, c.requireIss)
			if !c.fail {
				if err != nil || code != c.code || state != "s1" {
					t.Fatalf("= %q, %q, %v", code, state, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if e.Op != "callback" || e.Class != c.class || e.Code != c.errCode || code != "" || state != "" {
				t.Errorf("Op, Class, Code = %q, %v, %q (%v)", e.Op, e.Class, e.Code, err)
			}
		})
	}
}
