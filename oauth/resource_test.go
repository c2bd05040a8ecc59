package oauth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// fakeHost is a server whose routes are set after it started (documents
// name its URL); unknown paths are 404. It records "METHOD /path" of every
// request.
type fakeHost struct {
	*httptest.Server
	mu     sync.Mutex
	asked  []string
	routes map[string]http.HandlerFunc
}

func newFakeHost(t *testing.T) *fakeHost {
	h := &fakeHost{routes: map[string]http.HandlerFunc{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.asked = append(h.asked, r.Method+" "+r.URL.RequestURI())
		fn := h.routes[r.Method+" "+r.URL.Path]
		if fn == nil {
			fn = h.routes[r.URL.Path]
		}
		h.mu.Unlock()
		if fn == nil {
			http.NotFound(w, r)
			return
		}
		fn(w, r)
	}))
	t.Cleanup(h.Close)
	return h
}

// route serves path (any method) or "METHOD path".
func (h *fakeHost) route(path string, fn http.HandlerFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.routes[path] = fn
}

func (h *fakeHost) json(path string, v any) {
	h.route(path, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, v) })
}

func (h *fakeHost) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.asked, ", ")
}

// wantAsked checks the requests h received; who names h.
func (h *fakeHost) wantAsked(t *testing.T, who, want string) {
	t.Helper()
	if got := h.log(); got != want {
		t.Errorf("%s asked: %s\nwant %s", who, got, want)
	}
}

// discoverFrom starts a resource server and an authorization server, has
// setup route them and discovers the resource at path on the first.
func discoverFrom(t *testing.T, setup func(rs, as *fakeHost), path string, opts func(as *fakeHost) ResourceOptions) (rs, as *fakeHost, d *ResourceDiscovery, err error) {
	rs, as = newFakeHost(t), newFakeHost(t)
	setup(rs, as)
	var o ResourceOptions
	if opts != nil {
		o = opts(as)
	}
	d, err = DiscoverResource(context.Background(), rs.Client(), rs.URL+path, o)
	return rs, as, d, err
}

// challenge401 answers 401 with the given WWW-Authenticate headers.
func challenge401(headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for _, h := range headers {
			w.Header().Add("WWW-Authenticate", h)
		}
		writeJSON(w, 401, map[string]string{"error": "invalid_token"})
	}
}

// serverMetadata is an authorization server's document for issuer, with
// the capabilities the MCP conformance servers advertise.
func serverMetadata(issuer string) map[string]any {
	return map[string]any{
		"issuer":                                         issuer,
		"authorization_endpoint":                         issuer + "/authorize",
		"token_endpoint":                                 issuer + "/token",
		"registration_endpoint":                          issuer + "/register",
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none"},
		"scopes_supported":                               []string{"mcp:basic", "offline_access"},
		"client_id_metadata_document_supported":          true,
		"authorization_response_iss_parameter_supported": true,
	}
}

func TestDiscoverResourceFromChallenge(t *testing.T) {
	rs, as := newFakeHost(t), newFakeHost(t)
	issuer := as.URL + "/tenant1"
	rs.route("/mcp", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || string(body) != probeBody || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Authorization") != "" {
			t.Errorf("probe %s %q, headers %v", r.Method, body, r.Header)
		}
		challenge401(`Bearer error="invalid_token", resource_metadata="`+rs.URL+`/custom/metadata/location.json", scope="mcp:basic mcp:read"`)(w, r)
	})
	rs.json("/custom/metadata/location.json", map[string]any{
		"resource": rs.URL + "/mcp", "authorization_servers": []string{issuer}, "scopes_supported": []string{"mcp:basic", "mcp:read", "mcp:write"},
		"bearer_methods_supported": []string{"header"},
	})
	as.json("/tenant1/.well-known/openid-configuration", serverMetadata(issuer))

	d, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := &ResourceDiscovery{
		ResourceURL:          rs.URL + "/mcp",
		Resource:             rs.URL + "/mcp",
		ResourceMetadataURL:  rs.URL + "/custom/metadata/location.json",
		AuthorizationServers: []string{issuer},
		Issuer:               issuer,
		Endpoints: Endpoints{Issuer: issuer, Authorization: issuer + "/authorize", Token: issuer + "/token", Registration: issuer + "/register",
			IssuerParameterSupported: true},
		ChallengeScopes:                   []string{"mcp:basic", "mcp:read"},
		ResourceScopesSupported:           []string{"mcp:basic", "mcp:read", "mcp:write"},
		ServerScopesSupported:             []string{"mcp:basic", "offline_access"},
		ClientIDMetadataDocumentSupported: true,
		TokenEndpointAuthMethods:          []string{"none"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token"},
		CodeChallengeMethods:              []string{"S256"},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("discovery =\n  %+v\nwant\n  %+v", d, want)
	}
	if !d.IssParameterSupported() {
		t.Error("IssParameterSupported() = false")
	}
	if got := rs.log(); got != "POST /mcp, GET /custom/metadata/location.json" {
		t.Errorf("resource server asked: %s", got)
	}
	// An issuer with a path: RFC 8414 inserted, OpenID inserted, OpenID
	// appended.
	if got := as.log(); got != "GET /.well-known/oauth-authorization-server/tenant1, GET /.well-known/openid-configuration/tenant1, GET /tenant1/.well-known/openid-configuration" {
		t.Errorf("authorization server asked: %s", got)
	}
	if err := d.Check(); err != nil {
		t.Errorf("Check() = %v", err)
	}
}

func TestDiscoverResourceOrder(t *testing.T) {
	cases := []struct {
		name string
		// set up rs and as; resource is the URL discovered.
		setup    func(rs, as *fakeHost)
		resource string // path on rs
		opts     func(as *fakeHost) ResourceOptions
		rsAsked  string
		asAsked  string
		check    func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost)
	}{
		{
			name: "path-inserted metadata, not the root's",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}})
				rs.route("/.well-known/oauth-protected-resource", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			resource: "/mcp",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if d.ResourceMetadataURL != rs.URL+"/.well-known/oauth-protected-resource/mcp" || d.Resource != rs.URL+"/mcp" || d.Legacy != LegacyNone {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "root metadata naming the origin; issuer with a path via RFC 8414",
			setup: func(rs, as *fakeHost) {
				rs.route("/api/mcp", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }) // no challenge at all
				rs.json("/.well-known/oauth-protected-resource", map[string]any{"resource": rs.URL, "authorization_servers": []string{as.URL + "/tenant1"}})
				as.json("/.well-known/oauth-authorization-server/tenant1", serverMetadata(as.URL+"/tenant1"))
				as.route("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
			},
			resource: "/api/mcp",
			rsAsked:  "POST /api/mcp, GET /.well-known/oauth-protected-resource/api/mcp, GET /.well-known/oauth-protected-resource",
			asAsked:  "GET /.well-known/oauth-authorization-server/tenant1",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				// The resource is what the metadata names: the audience
				// the resource checks.
				if d.Resource != rs.URL || d.ResourceURL != rs.URL+"/api/mcp" || d.Issuer != as.URL+"/tenant1" {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "issuer without path: RFC 8414 absent, OpenID at the root",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="`+rs.URL+`/.well-known/oauth-protected-resource/mcp"`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL + "/"}})
				as.json("/.well-known/openid-configuration", serverMetadata(as.URL))
			},
			resource: "/mcp",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server, GET /.well-known/openid-configuration",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if d.Issuer != as.URL+"/" || d.Endpoints.Token != as.URL+"/token" {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "configured with a trailing slash and upper-case host; the metadata without",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp/", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}})
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			resource: "/mcp/",
			rsAsked:  "POST /mcp/, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if d.Resource != rs.URL+"/mcp" || d.ResourceURL != rs.URL+"/mcp/" {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "the chosen one of two authorization servers",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp",
					"authorization_servers": []string{"https://first.example.com", as.URL + "/second"}})
				as.json("/.well-known/oauth-authorization-server/second", serverMetadata(as.URL+"/second"))
			},
			// Scheme and host in another case, a trailing slash.
			opts: func(as *fakeHost) ResourceOptions {
				return ResourceOptions{AuthorizationServer: strings.ToUpper(as.URL) + "/second/"}
			},
			resource: "/mcp",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server/second",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if d.Issuer != as.URL+"/second" || len(d.AuthorizationServers) != 2 {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "a resource taking DPoP only names its metadata in its DPoP challenge",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`DPoP algs="ES256", resource_metadata="`+rs.URL+`/prm", scope="x"`))
				rs.json("/prm", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}})
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			resource: "/mcp",
			rsAsked:  "POST /mcp, GET /prm",
			asAsked:  "GET /.well-known/oauth-authorization-server",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if d.ResourceMetadataURL != rs.URL+"/prm" || !reflect.DeepEqual(d.ChallengeScopes, []string{"x"}) {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "GET probe",
			setup: func(rs, as *fakeHost) {
				rs.route("GET /api", challenge401(`Bearer scope="read"`))
				rs.json("/.well-known/oauth-protected-resource/api", map[string]any{"resource": rs.URL + "/api", "authorization_servers": []string{as.URL}})
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			opts:     func(*fakeHost) ResourceOptions { return ResourceOptions{ProbeMethod: "GET"} },
			resource: "/api",
			rsAsked:  "GET /api, GET /.well-known/oauth-protected-resource/api",
			asAsked:  "GET /.well-known/oauth-authorization-server",
			check: func(t *testing.T, d *ResourceDiscovery, rs, as *fakeHost) {
				if !reflect.DeepEqual(d.ChallengeScopes, []string{"read"}) {
					t.Errorf("%+v", d)
				}
			},
		},
		{
			name: "no probe",
			setup: func(rs, as *fakeHost) {
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}})
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			opts:     func(*fakeHost) ResourceOptions { return ResourceOptions{NoProbe: true} },
			resource: "/mcp",
			rsAsked:  "GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server",
		},
		{
			name: "an unprotected answer to the probe: well-known metadata all the same",
			setup: func(rs, as *fakeHost) {
				rs.json("/mcp", map[string]any{"jsonrpc": "2.0", "id": "tokend-discovery", "result": map[string]any{}})
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}})
				as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
			},
			resource: "/mcp",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, as, d, err := discoverFrom(t, c.setup, c.resource, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			rs.wantAsked(t, "resource server", c.rsAsked)
			as.wantAsked(t, "authorization server", c.asAsked)
			if c.check != nil {
				c.check(t, d, rs, as)
			}
			if err := d.Check(); err != nil {
				t.Errorf("Check() = %v", err)
			}
		})
	}
}

// refusedAll is an HTTP client that fails every request: what must not be
// sent at all.
func refusedAll(t *testing.T) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("request sent: %s %s", r.Method, r.URL)
		return nil, errors.New("refused by the test")
	})}
}

func TestDiscoverResourceRefuses(t *testing.T) {
	prm := func(rs, as *fakeHost) map[string]any {
		return map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL}}
	}
	withPRM := func(change func(m map[string]any, rs, as *fakeHost)) func(rs, as *fakeHost) {
		return func(rs, as *fakeHost) {
			rs.route("/mcp", challenge401(`Bearer`))
			m := prm(rs, as)
			change(m, rs, as)
			rs.json("/.well-known/oauth-protected-resource/mcp", m)
			as.json("/.well-known/oauth-authorization-server", serverMetadata(as.URL))
		}
	}
	cases := []struct {
		name      string
		setup     func(rs, as *fakeHost)
		opts      func(as *fakeHost) ResourceOptions
		class     Class
		malformed bool
		contains  string
		rsAsked   string
		asAsked   string
	}{
		{
			name:     "metadata naming another resource",
			setup:    withPRM(func(m map[string]any, rs, as *fakeHost) { m["resource"] = "https://evil.example.com/mcp" }),
			class:    Configuration,
			contains: `names resource "https://evil.example.com/mcp", which is neither`,
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name:     "metadata naming a sibling path",
			setup:    withPRM(func(m map[string]any, rs, as *fakeHost) { m["resource"] = rs.URL + "/other" }),
			class:    Configuration,
			contains: "resource mismatch",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name:     "metadata naming a prefix that is not a path segment",
			setup:    withPRM(func(m map[string]any, rs, as *fakeHost) { m["resource"] = rs.URL + "/mc" }),
			class:    Configuration,
			contains: "resource mismatch",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name: "metadata naming the resource on https",
			setup: withPRM(func(m map[string]any, rs, as *fakeHost) {
				m["resource"] = strings.Replace(rs.URL, "http:", "https:", 1) + "/mcp"
			}),
			class:    Configuration,
			contains: "resource mismatch",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name: "root metadata naming another resource: no 2025-03-26 fallback",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource", map[string]any{"resource": "https://evil.example.com/", "authorization_servers": []string{as.URL}})
				rs.json("/.well-known/oauth-authorization-server", serverMetadata(rs.URL))
			},
			class:    Configuration,
			contains: "resource mismatch",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name: "authorization server metadata for another issuer",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL + "/t"}})
				as.json("/.well-known/oauth-authorization-server/t", serverMetadata("https://evil.example.com/t"))
				as.json("/.well-known/openid-configuration/t", serverMetadata(as.URL+"/t"))
			},
			class:    Configuration,
			contains: `/.well-known/oauth-authorization-server/t names issuer "https://evil.example.com/t", want`,
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server/t",
		},
		{
			name: "authorization server metadata for the issuer's origin",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", map[string]any{"resource": rs.URL + "/mcp", "authorization_servers": []string{as.URL + "/t"}})
				as.json("/.well-known/oauth-authorization-server/t", serverMetadata(as.URL))
			},
			class:    Configuration,
			contains: "issuer mismatch",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server/t",
		},
		{
			name: "challenge pointing at http metadata on a non-loopback host",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="http://mcp.example.com/.well-known/oauth-protected-resource/mcp"`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
			},
			class:    Configuration,
			contains: `resource_metadata "http://mcp.example.com/.well-known/oauth-protected-resource/mcp" uses http to a non-loopback host: use https`,
			rsAsked:  "POST /mcp",
		},
		{
			name: "challenge pointing at something not a URL",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="javascript:alert(1)"`))
			},
			class:    Configuration,
			contains: "is not an http(s) URL",
			rsAsked:  "POST /mcp",
		},
		{
			name: "64 KiB challenge",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="`+rs.URL+`/.well-known/oauth-protected-resource/mcp", scope="`+strings.Repeat("s ", 32<<10)+`"`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
			},
			class: Transient, malformed: true,
			contains: "over the 8192-byte limit",
			rsAsked:  "POST /mcp",
		},
		{
			name: "malformed challenge",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="`+rs.URL+`/.well-known/oauth-protected-resource/mcp`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
			},
			class: Transient, malformed: true,
			contains: "without its closing quote",
			rsAsked:  "POST /mcp",
		},
		{
			name: "the challenge's metadata absent: no other location",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer resource_metadata="`+rs.URL+`/prm"`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
			},
			class: Configuration, malformed: true,
			contains: "/prm: malformed response",
			rsAsked:  "POST /mcp, GET /prm",
		},
		{
			name: "metadata not JSON",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.route("/.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/html")
					_, _ = io.WriteString(w, "<html>SPA</html>")
				})
			},
			class: Transient, malformed: true,
			contains: "not JSON",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name: "metadata over 1 MiB",
			setup: withPRM(func(m map[string]any, rs, as *fakeHost) {
				m["resource_documentation"] = strings.Repeat("x", 1<<20)
			}),
			class: Transient, malformed: true,
			contains: "document over 1048576 bytes",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name: "authorization server metadata over 1 MiB",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
				m := serverMetadata(as.URL)
				m["op_policy_uri"] = strings.Repeat("x", 1<<20)
				as.json("/.well-known/oauth-authorization-server", m)
			},
			class: Transient, malformed: true,
			contains: "document over 1048576 bytes",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server, GET /.well-known/openid-configuration",
		},
		{
			name:      "metadata without authorization servers",
			setup:     withPRM(func(m map[string]any, rs, as *fakeHost) { delete(m, "authorization_servers") }),
			class:     Transient,
			malformed: true,
			contains:  "no authorization_servers",
			rsAsked:   "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name:      "metadata with a repeated key",
			setup:     withPRM(func(m map[string]any, rs, as *fakeHost) { m["Resource"] = "https://evil.example.com/mcp" }),
			class:     Transient,
			malformed: true,
			contains:  "occurs more than once",
			rsAsked:   "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name: "authorization server on http to a non-loopback host",
			setup: withPRM(func(m map[string]any, rs, as *fakeHost) {
				m["authorization_servers"] = []string{as.URL, "http://as.example.com"}
			}),
			class:    Configuration,
			contains: `authorization server "http://as.example.com" uses http to a non-loopback host`,
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name:  "an authorization server the metadata does not list",
			setup: withPRM(func(m map[string]any, rs, as *fakeHost) {}),
			opts: func(*fakeHost) ResourceOptions {
				return ResourceOptions{AuthorizationServer: "https://other.example.com"}
			},
			class:    Configuration,
			contains: `authorization server "https://other.example.com" is not among those`,
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
		},
		{
			name: "a server error at the metadata's location: no 2025-03-26 fallback",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.route("/.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
				rs.json("/.well-known/oauth-authorization-server", serverMetadata(rs.URL))
			},
			class: Transient, malformed: true,
			contains: "(HTTP 503)",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource",
		},
		{
			name: "a redirect of the probe",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "/mcp/", http.StatusTemporaryRedirect)
				})
			},
			class:    Configuration,
			contains: "does not follow redirects",
			rsAsked:  "POST /mcp",
		},
		{
			name: "no authorization server metadata behind the resource metadata",
			setup: func(rs, as *fakeHost) {
				rs.route("/mcp", challenge401(`Bearer`))
				rs.json("/.well-known/oauth-protected-resource/mcp", prm(rs, as))
			},
			class: Configuration, malformed: true,
			contains: "(HTTP 404)",
			rsAsked:  "POST /mcp, GET /.well-known/oauth-protected-resource/mcp",
			asAsked:  "GET /.well-known/oauth-authorization-server, GET /.well-known/openid-configuration",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, as, d, err := discoverFrom(t, c.setup, "/mcp", c.opts)
			var e *Error
			if !errors.As(err, &e) || e.Op != "discovery" || e.Class != c.class || errors.Is(err, ErrMalformed) != c.malformed || d != nil {
				t.Fatalf("err = %v (%#v), discovery %+v", err, err, d)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Errorf("message %q\nwant it to say %q", err, c.contains)
			}
			if len(err.Error()) > 600 || strings.Contains(err.Error(), "xxxx") || strings.Contains(err.Error(), "s s s") || strings.Contains(err.Error(), "SPA") {
				t.Errorf("message quotes the answer: %.300q", err)
			}
			rs.wantAsked(t, "resource server", c.rsAsked)
			as.wantAsked(t, "authorization server", c.asAsked)
		})
	}
}

func TestDiscoverResourceRefusesResourceURL(t *testing.T) {
	for _, raw := range []string{
		"http://mcp.example.com/mcp", // tokens would go there in clear text
		"https://mcp.example.com/mcp#frag",
		"https://user:pass@mcp.example.com/mcp",
		"mcp.example.com/mcp",
		"ftp://mcp.example.com/mcp",
		"",
	} {
		_, err := DiscoverResource(context.Background(), refusedAll(t), raw, ResourceOptions{})
		if ClassOf(err) != Configuration || strings.Contains(err.Error(), "pass") {
			t.Errorf("DiscoverResource(%q) = %v", raw, err)
		}
	}
}

func TestDiscoverResourceUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	_, err := DiscoverResource(context.Background(), srv.Client(), srv.URL+"/mcp", ResourceOptions{})
	var e *Error
	if !errors.As(err, &e) || e.Class != Transient || e.Status != 0 {
		t.Errorf("err = %v", err)
	}
}

func TestDiscoverResourceLegacy(t *testing.T) {
	t.Run("metadata at the origin, issuer with a path", func(t *testing.T) {
		rs := newFakeHost(t)
		rs.route("/mcp", challenge401(`Bearer realm="old"`))
		rs.json("/.well-known/oauth-authorization-server", serverMetadata(rs.URL+"/oauth"))
		d, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Legacy != LegacyServerMetadata || d.Issuer != rs.URL+"/oauth" || d.Endpoints.Token != rs.URL+"/oauth/token" ||
			d.Resource != rs.URL+"/mcp" || d.ResourceMetadataURL != "" || d.AuthorizationServers != nil || !d.ClientIDMetadataDocumentSupported {
			t.Errorf("%+v", d)
		}
		if got, want := rs.log(), "POST /mcp, GET /.well-known/oauth-protected-resource/mcp, GET /.well-known/oauth-protected-resource, GET /.well-known/oauth-authorization-server"; got != want {
			t.Errorf("asked %s\nwant  %s", got, want)
		}
		if err := d.Check(); err != nil {
			t.Errorf("Check() = %v", err)
		}
	})
	t.Run("no metadata at all", func(t *testing.T) {
		rs := newFakeHost(t)
		rs.route("/mcp", challenge401(`Bearer`))
		d, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := &ResourceDiscovery{
			ResourceURL: rs.URL + "/mcp", Resource: rs.URL + "/mcp", Issuer: rs.URL,
			Endpoints: Endpoints{Issuer: rs.URL, Authorization: rs.URL + "/authorize", Token: rs.URL + "/token", Registration: rs.URL + "/register"},
			Legacy:    LegacyDefaultEndpoints,
		}
		if !reflect.DeepEqual(d, want) {
			t.Errorf("discovery =\n  %+v\nwant\n  %+v", d, want)
		}
		if err := d.Check(); err != nil {
			t.Errorf("Check() = %v", err)
		}
	})
	t.Run("metadata at the origin naming another origin", func(t *testing.T) {
		rs := newFakeHost(t)
		rs.route("/mcp", challenge401(`Bearer`))
		rs.json("/.well-known/oauth-authorization-server", serverMetadata("https://evil.example.com"))
		_, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
		if ClassOf(err) != Configuration || !strings.Contains(err.Error(), `names issuer "https://evil.example.com", not a URL on `+rs.URL) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a server error at the origin's metadata: no default endpoints", func(t *testing.T) {
		rs := newFakeHost(t)
		rs.route("/mcp", challenge401(`Bearer`))
		rs.route("/.well-known/oauth-authorization-server", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) })
		_, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
		if ClassOf(err) != Transient || !strings.Contains(err.Error(), "(HTTP 502)") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a server error at the resource metadata's location: no fallback", func(t *testing.T) {
		rs := newFakeHost(t)
		rs.route("/mcp", challenge401(`Bearer`))
		rs.route("/.well-known/oauth-protected-resource", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
		_, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{})
		if ClassOf(err) != Transient || !strings.Contains(err.Error(), "(HTTP 500)") || strings.Contains(rs.log(), "oauth-authorization-server") {
			t.Errorf("err = %v, asked %s", err, rs.log())
		}
	})
	t.Run("an authorization server asked for that no metadata lists", func(t *testing.T) {
		rs := newFakeHost(t)
		_, err := DiscoverResource(context.Background(), rs.Client(), rs.URL+"/mcp", ResourceOptions{AuthorizationServer: "https://as.example.com"})
		if ClassOf(err) != Configuration || !strings.Contains(err.Error(), "publishes no protected-resource metadata") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestResourceDiscoveryCheck(t *testing.T) {
	good := func() *ResourceDiscovery {
		return &ResourceDiscovery{
			ResourceURL: "https://mcp.example.com/mcp", Resource: "https://mcp.example.com/mcp",
			ResourceMetadataURL:  "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
			AuthorizationServers: []string{"https://as.example.com/t"}, Issuer: "https://as.example.com/t",
			Endpoints: Endpoints{Issuer: "https://as.example.com/t", Authorization: "https://as.example.com/t/authorize", Token: "https://as.example.com/t/token"},
		}
	}
	if err := good().Check(); err != nil {
		t.Fatalf("Check() = %v", err)
	}
	cases := map[string]func(d *ResourceDiscovery){
		"resource on another origin": func(d *ResourceDiscovery) { d.Resource = "https://evil.example.com/mcp" },
		"resource URL in clear text": func(d *ResourceDiscovery) {
			d.ResourceURL, d.Resource = "http://mcp.example.com/mcp", "http://mcp.example.com/mcp"
		},
		"metadata URL in clear text":      func(d *ResourceDiscovery) { d.ResourceMetadataURL = "http://mcp.example.com/prm" },
		"token endpoint in clear text":    func(d *ResourceDiscovery) { d.Endpoints.Token = "http://as.example.com/t/token" },
		"registration endpoint not a URL": func(d *ResourceDiscovery) { d.Endpoints.Registration = "javascript:alert(1)" },
		"mTLS alias in clear text": func(d *ResourceDiscovery) {
			d.Endpoints.MTLS = &MTLSAliases{Token: "http://mtls.example.com/token"}
		},
		"issuer not listed": func(d *ResourceDiscovery) { d.AuthorizationServers = []string{"https://other.example.com"} },
		"no token endpoint": func(d *ResourceDiscovery) { d.Endpoints.Token = "" },
		"no issuer":         func(d *ResourceDiscovery) { d.Issuer = "" },
		"resource fragment": func(d *ResourceDiscovery) { d.Resource = "https://mcp.example.com/mcp#x" },
		"listed in cleartext": func(d *ResourceDiscovery) {
			d.AuthorizationServers = append(d.AuthorizationServers, "http://as.example.com")
		},
		"issuer not the endpoints'": func(d *ResourceDiscovery) {
			d.Issuer, d.AuthorizationServers = "https://other.example.com", []string{"https://other.example.com"}
		},
		"no metadata URL without legacy":  func(d *ResourceDiscovery) { d.ResourceMetadataURL = "" },
		"legacy issuer on another origin": func(d *ResourceDiscovery) { d.Legacy = LegacyServerMetadata },
		"unknown legacy":                  func(d *ResourceDiscovery) { d.Legacy = "2024" },
	}
	for name, change := range cases {
		d := good()
		change(d)
		if err := d.Check(); ClassOf(err) != Configuration || !strings.Contains(err.Error(), "cached discovery") {
			t.Errorf("%s: Check() = %v", name, err)
		}
	}
}

func TestResourceMatches(t *testing.T) {
	cases := []struct {
		configured, named string
		want              bool
	}{
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp", true},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp/", true},
		{"https://mcp.example.com/mcp/", "https://mcp.example.com/mcp", true},
		{"https://MCP.example.com:443/mcp", "HTTPS://mcp.EXAMPLE.com/mcp", true},
		{"https://mcp.example.com/a/b/mcp", "https://mcp.example.com/a", true},
		{"https://mcp.example.com/mcp", "https://mcp.example.com", true},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/", true},
		{"https://mcp.example.com", "https://mcp.example.com/", true},
		{"https://mcp.example.com/mcp?x=1", "https://mcp.example.com/mcp?x=1", true},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp/sub", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mc", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/MCP", false},
		{"https://mcp.example.com/mcp", "https://evil.example.com/mcp", false},
		{"https://mcp.example.com/mcp", "http://mcp.example.com/mcp", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com:8443/mcp", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp?x=1", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com.evil.example/mcp", false},
	}
	for _, c := range cases {
		cu, _ := url.Parse(c.configured)
		nu, _ := url.Parse(c.named)
		if got := resourceMatches(cu, nu); got != c.want {
			t.Errorf("resourceMatches(%s, %s) = %v", c.configured, c.named, got)
		}
	}
}
