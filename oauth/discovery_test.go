package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// discoveryServer serves metadata documents by path; doc gets the server's
// URL. It records the paths asked for.
type discoveryServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
}

func newDiscoveryServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, base string)) *discoveryServer {
	ds := &discoveryServer{}
	ds.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("method %s", r.Method)
		}
		ds.mu.Lock()
		ds.paths = append(ds.paths, r.URL.Path)
		ds.mu.Unlock()
		handler(w, r, ds.URL)
	}))
	t.Cleanup(ds.Close)
	return ds
}

func (ds *discoveryServer) asked() string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return strings.Join(ds.paths, " ")
}

func metadata(issuer string) map[string]any {
	return map[string]any{
		"issuer":                        issuer,
		"authorization_endpoint":        issuer + "/authorize",
		"token_endpoint":                issuer + "/token",
		"revocation_endpoint":           issuer + "/revoke",
		"device_authorization_endpoint": issuer + "/device",
		"registration_endpoint":         issuer + "/register",
		"authorization_response_iss_parameter_supported": true,
		"response_types_supported":                       []string{"code"},
	}
}

func TestDiscoverRFC8414First(t *testing.T) {
	ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
		if r.URL.Path != "/.well-known/oauth-authorization-server/tenant/a" {
			t.Errorf("asked %s", r.URL.Path)
			w.WriteHeader(404)
			return
		}
		writeJSON(w, 200, metadata(base+"/tenant/a"))
	})
	issuer := ds.URL + "/tenant/a"
	ep, err := Discover(context.Background(), ds.Client(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	want := Endpoints{Issuer: issuer, Authorization: issuer + "/authorize", Token: issuer + "/token", Revocation: issuer + "/revoke",
		DeviceAuthorization: issuer + "/device", Registration: issuer + "/register", IssuerParameterSupported: true}
	if !reflect.DeepEqual(ep, want) {
		t.Errorf("Endpoints =\n  %+v\nwant\n  %+v", ep, want)
	}
	if got := ds.asked(); got != "/.well-known/oauth-authorization-server/tenant/a" {
		t.Errorf("asked %q", got)
	}
}

func TestDiscoverFallsBackToOIDC(t *testing.T) {
	for _, first := range []int{404, 500} {
		ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
			switch r.URL.Path {
			case "/realms/x/.well-known/openid-configuration":
				writeJSON(w, 200, metadata(base+"/realms/x"))
			default:
				w.WriteHeader(first)
			}
		})
		ep, err := Discover(context.Background(), ds.Client(), ds.URL+"/realms/x/")
		if err != nil {
			t.Fatal(err)
		}
		if ep.Token != ds.URL+"/realms/x/token" || ep.Issuer != ds.URL+"/realms/x/" {
			t.Errorf("Endpoints = %+v", ep)
		}
		if got := ds.asked(); got != "/.well-known/oauth-authorization-server/realms/x /realms/x/.well-known/openid-configuration" {
			t.Errorf("asked %q", got)
		}
	}
}

func TestDiscoverRejects(t *testing.T) {
	cases := []struct {
		name      string
		handler   func(w http.ResponseWriter, r *http.Request, base string)
		class     Class
		malformed bool
		asked     string
		contains  string
	}{
		{
			name: "issuer mismatch",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				writeJSON(w, 200, metadata("https://evil.example.com"))
			},
			class: Configuration, asked: "/.well-known/oauth-authorization-server", contains: "issuer mismatch",
		},
		{
			name: "issuer mismatch at OIDC location",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				if strings.HasSuffix(r.URL.Path, "openid-configuration") {
					writeJSON(w, 200, metadata(base+"/other"))
					return
				}
				http.NotFound(w, r)
			},
			class: Configuration, asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration", contains: "issuer mismatch",
		},
		{
			name: "oversized document",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				m := metadata(base)
				m["padding"] = strings.Repeat("x", 2<<20)
				writeJSON(w, 200, m)
			},
			class: Transient, malformed: true, contains: "over 1048576 bytes",
			asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration",
		},
		{
			name:    "neither document",
			handler: func(w http.ResponseWriter, r *http.Request, base string) { http.NotFound(w, r) },
			class:   Configuration, malformed: true, asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration", contains: "(HTTP 404)",
		},
		{
			name: "no token endpoint",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				m := metadata(base)
				delete(m, "token_endpoint")
				writeJSON(w, 200, m)
			},
			class: Transient, malformed: true, asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration",
		},
		{
			name: "endpoint not a URL",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				m := metadata(base)
				m["revocation_endpoint"] = "javascript:alert(1)"
				writeJSON(w, 200, m)
			},
			class: Transient, malformed: true, asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration",
		},
		{
			name: "HTML",
			handler: func(w http.ResponseWriter, r *http.Request, base string) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte("<html>SPA</html>"))
			},
			class: Transient, malformed: true, asked: "/.well-known/oauth-authorization-server /.well-known/openid-configuration", contains: "not JSON",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := newDiscoveryServer(t, c.handler)
			_, err := Discover(context.Background(), ds.Client(), ds.URL)
			var e *Error
			if !errors.As(err, &e) || e.Op != "discovery" || e.Class != c.class || errors.Is(err, ErrMalformed) != c.malformed {
				t.Fatalf("err = %v (%#v)", err, err)
			}
			if !strings.Contains(err.Error(), c.contains) || strings.Contains(err.Error(), "xxxx") || strings.Contains(err.Error(), "SPA") {
				t.Errorf("message %q", err)
			}
			if got := ds.asked(); got != c.asked {
				t.Errorf("asked %q, want %q", got, c.asked)
			}
		})
	}
}

func TestDiscoverBadIssuer(t *testing.T) {
	for _, iss := range []string{"", "id.example.com", "ftp://id.example.com", "https://id.example.com/?x=1", "https://id.example.com/#f"} {
		if _, err := Discover(context.Background(), nil, iss); ClassOf(err) != Configuration {
			t.Errorf("Discover(%q) = %v", iss, err)
		}
	}
}

func TestDiscoverUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, err := Discover(context.Background(), srv.Client(), srv.URL)
	var e *Error
	if !errors.As(err, &e) || e.Class != Transient || e.Status != 0 {
		t.Errorf("err = %v", err)
	}
}

func TestServerMetadataCapabilities(t *testing.T) {
	ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
		m := metadata(base)
		m["scopes_supported"] = []string{"openid", "", "a\u202eb"}
		m["token_endpoint_auth_methods_supported"] = "client_secret_basic" // not a list: read as absent
		m["grant_types_supported"] = []any{"authorization_code", 7}        // not strings: read as absent
		m["code_challenge_methods_supported"] = []string{"S256"}
		m["client_id_metadata_document_supported"] = "true" // not a boolean: false
		writeJSON(w, 200, m)
	})
	md, _, err := discoverServer(context.Background(), ds.Client(), ds.URL, []string{ds.URL + "/.well-known/oauth-authorization-server"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(md.ScopesSupported, []string{"openid", "ab"}) || md.TokenEndpointAuthMethods != nil || md.GrantTypesSupported != nil ||
		!reflect.DeepEqual(md.CodeChallengeMethods, []string{"S256"}) || md.ClientIDMetadataDocumentSupported || md.Token != ds.URL+"/token" {
		t.Errorf("%+v", md)
	}
	// Discover reads the same document.
	if _, err := Discover(context.Background(), ds.Client(), ds.URL); err != nil {
		t.Errorf("Discover: %v", err)
	}
}
