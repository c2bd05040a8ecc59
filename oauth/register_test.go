package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRegister(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/register" {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		body, _ := io.ReadAll(r.Body)
		want := `{"client_name":"tokend","redirect_uris":["http://127.0.0.1:8785/callback"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"client_secret_post","scope":"openid offline_access","application_type":"native"}`
		if string(body) != want {
			t.Errorf("body =\n  %s\nwant\n  %s", body, want)
		}
		writeJSON(w, 201, map[string]any{
			"client_id": "new-client", "client_secret": "new-secret",
			"registration_access_token": "rat", "registration_client_uri": "https://id.example.com/register/new-client",
			"client_secret_expires_at": 1999999999, "token_endpoint_auth_method": "client_secret_post",
			"client_name": "tokend",
		})
	}))
	defer srv.Close()
	reg, err := Register(context.Background(), srv.Client(), srv.URL+"/register", RegistrationRequest{
		ClientName: "tokend", RedirectURIs: []string{"http://127.0.0.1:8785/callback"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		AuthMethod: AuthPost, Scope: "openid offline_access", ApplicationType: "native",
	})
	if err != nil {
		t.Fatal(err)
	}
	if reg.ClientID != "new-client" || reg.ClientSecret.Reveal() != "new-secret" || reg.RegistrationAccessToken.Reveal() != "rat" ||
		reg.RegistrationClientURI != "https://id.example.com/register/new-client" || reg.AuthMethod != AuthPost ||
		!reg.ClientSecretExpiresAt.Equal(time.Unix(1999999999, 0)) {
		t.Errorf("Registration = %+v", reg)
	}
}

func TestRegisterAnswers(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		answer    any
		req       RegistrationRequest
		fail      bool
		class     Class
		code      string
		check     func(t *testing.T, r *Registration)
		malformed bool
	}{
		{name: "200, public client, no expiry", status: 200, answer: map[string]any{"client_id": "c", "client_secret_expires_at": 0},
			check: func(t *testing.T, r *Registration) {
				if r.AuthMethod != AuthNone || !r.ClientSecretExpiresAt.IsZero() || !r.ClientSecret.IsZero() {
					t.Errorf("%+v", r)
				}
			}},
		{name: "secret, no method", status: 201, answer: map[string]any{"client_id": "c", "client_secret": "s"},
			check: func(t *testing.T, r *Registration) {
				if r.AuthMethod != AuthBasic {
					t.Errorf("AuthMethod = %q", r.AuthMethod)
				}
			}},
		{name: "requested method kept", status: 201, answer: map[string]any{"client_id": "c"}, req: RegistrationRequest{AuthMethod: AuthNone},
			check: func(t *testing.T, r *Registration) {
				if r.AuthMethod != AuthNone {
					t.Errorf("AuthMethod = %q", r.AuthMethod)
				}
			}},
		{name: "invalid_redirect_uri", status: 400, answer: map[string]any{"error": "invalid_redirect_uri", "error_description": "no"}, fail: true, class: Configuration, code: "invalid_redirect_uri"},
		{name: "invalid_client_metadata", status: 400, answer: map[string]any{"error": "invalid_client_metadata"}, fail: true, class: Configuration, code: "invalid_client_metadata"},
		{name: "201 without client_id", status: 201, answer: map[string]any{"client_secret": "s"}, fail: true, class: Transient, malformed: true},
		{name: "200 with error", status: 200, answer: map[string]any{"error": "invalid_client_metadata"}, fail: true, class: Configuration, code: "invalid_client_metadata"},
		{name: "bad expiry", status: 201, answer: map[string]any{"client_id": "c", "client_secret_expires_at": "soon"}, fail: true, class: Transient, malformed: true},
		{name: "401 needs initial access token", status: 401, answer: map[string]any{}, fail: true, class: Credentials, malformed: true},
		{name: "503", status: 503, answer: "<html>", fail: true, class: Transient, malformed: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if s, ok := c.answer.(string); ok {
					w.WriteHeader(c.status)
					_, _ = io.WriteString(w, s)
					return
				}
				writeJSON(w, c.status, c.answer)
			}))
			defer srv.Close()
			reg, err := Register(context.Background(), srv.Client(), srv.URL, c.req)
			if !c.fail {
				if err != nil {
					t.Fatal(err)
				}
				c.check(t, reg)
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Op != "register" || e.Class != c.class || e.Code != c.code || errors.Is(err, ErrMalformed) != c.malformed {
				t.Errorf("err = %v (%#v)", err, err)
			}
		})
	}
}

func TestRegistrationRequestJSON(t *testing.T) {
	b, err := json.Marshal(metadataOf(RegistrationRequest{ClientName: "x"}))
	if err != nil || string(b) != `{"client_name":"x"}` {
		t.Errorf("%s %v", b, err)
	}
}

// A client for client_credentials only registers with "response_types": []:
// omitting it means ["code"], which servers refuse without redirect URIs.
func TestRegisterEmptyResponseTypes(t *testing.T) {
	for _, c := range []struct {
		types []string
		want  string
	}{
		{[]string{}, `{"grant_types":["client_credentials"],"response_types":[]}`},
		{nil, `{"grant_types":["client_credentials"]}`},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if string(body) != c.want {
				t.Errorf("body = %s, want %s", body, c.want)
			}
			writeJSON(w, 201, map[string]any{"client_id": "c", "client_secret": "s"})
		}))
		_, err := Register(context.Background(), srv.Client(), srv.URL, RegistrationRequest{GrantTypes: []string{"client_credentials"}, ResponseTypes: c.types})
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRegisterApplicationType(t *testing.T) {
	cases := []struct {
		name string
		req  RegistrationRequest
		want string // application_type sent, "" for none
	}{
		{"loopback redirect: native by default", RegistrationRequest{RedirectURIs: []string{"http://127.0.0.1:8785/callback", "http://localhost:9/cb", "http://[::1]:7/"}}, "native"},
		{"an https redirect: left to the server", RegistrationRequest{RedirectURIs: []string{"http://127.0.0.1:8785/callback", "https://app.example.com/cb"}}, ""},
		{"http to another host: left to the server", RegistrationRequest{RedirectURIs: []string{"http://app.example.com/cb"}}, ""},
		{"no redirect URI", RegistrationRequest{GrantTypes: []string{"client_credentials"}}, ""},
		{"set explicitly", RegistrationRequest{RedirectURIs: []string{"http://127.0.0.1:8785/callback"}, ApplicationType: "web"}, "web"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var m map[string]any
				_ = json.NewDecoder(r.Body).Decode(&m)
				got, has := m["application_type"]
				if (c.want == "" && has) || (c.want != "" && got != c.want) {
					t.Errorf("application_type = %v, want %q", got, c.want)
				}
				writeJSON(w, 201, map[string]any{"client_id": "c"})
			}))
			defer srv.Close()
			if _, err := Register(context.Background(), srv.Client(), srv.URL+"/register", c.req); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestChooseAuthMethod(t *testing.T) {
	cases := []struct {
		supported  []string
		haveSecret bool
		want       AuthMethod
		fails      bool
	}{
		{[]string{"none", "client_secret_post", "client_secret_basic"}, true, AuthBasic, false},
		{[]string{"private_key_jwt", "client_secret_post", "none"}, true, AuthPost, false},
		{[]string{"none"}, true, AuthNone, false},
		{[]string{"client_secret_basic"}, true, AuthBasic, false},
		{[]string{"client_secret_post"}, true, AuthPost, false},
		{nil, true, AuthBasic, false}, // RFC 8414's default
		{nil, false, AuthNone, false},
		{[]string{"client_secret_basic", "none"}, false, AuthNone, false},
		{[]string{"client_secret_basic"}, false, "", true},
		{[]string{"private_key_jwt", "tls_client_auth"}, true, "", true},
	}
	for _, c := range cases {
		got, err := ChooseAuthMethod(c.supported, c.haveSecret)
		if got != c.want || (err != nil) != c.fails {
			t.Errorf("ChooseAuthMethod(%q, %v) = %q, %v", c.supported, c.haveSecret, got, err)
		}
		if err != nil && (ClassOf(err) != Configuration || !strings.Contains(err.Error(), c.supported[0])) {
			t.Errorf("error %v does not name what the server supports", err)
		}
	}
}
