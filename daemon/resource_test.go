package daemon

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
)

// protectedResource is a resource server for the tests: POST /mcp without
// a token answers 401 with a Bearer challenge naming its metadata (RFC
// 9728) and a scope; the metadata lists the in-process provider as its
// authorization server.
type protectedResource struct {
	srv *httptest.Server
	// resource is what the metadata names as the resource; "" the URL of
	// /mcp.
	resource string
	mu       sync.Mutex
	probes   int
	down     bool // answer 503 to everything
}

func newProtectedResource(t *testing.T, as string) *protectedResource {
	t.Helper()
	pr := &protectedResource{}
	mux := http.NewServeMux()
	outage := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			pr.mu.Lock()
			down := pr.down
			pr.mu.Unlock()
			if down {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		pr.mu.Lock()
		pr.probes++
		pr.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", scope="notes:read", resource_metadata="`+pr.srv.URL+`/.well-known/oauth-protected-resource/mcp"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("GET /.well-known/oauth-protected-resource/mcp", func(w http.ResponseWriter, r *http.Request) {
		res := pr.resource
		if res == "" {
			res = pr.url()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"resource": res, "authorization_servers": []string{as}, "scopes_supported": []string{"notes:read", "notes:write"}})
	})
	pr.srv = httptest.NewServer(outage(mux.ServeHTTP))
	t.Cleanup(pr.srv.Close)
	return pr
}

func (pr *protectedResource) url() string { return pr.srv.URL + "/mcp" }

// resourceHarness runs a daemon whose grant notes names only the protected
// resource (plus what more sets), with the provider as its authorization
// server.
func resourceHarness(t *testing.T, po devprovider.Options, more func(c *config.Config, pr *protectedResource)) (*harness, *protectedResource) {
	t.Helper()
	po.AutoApprove = true
	var pr *protectedResource
	h := newHarness(t, harnessOpts{prov: po, noRun: true, config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{}
	}})
	pr = newProtectedResource(t, h.prov.URL())
	h.cfg.Grants["notes"] = config.Grant{ProtectedResource: pr.url()}
	if more != nil {
		more(h.cfg, pr)
	}
	h.cfg.ApplyDefaults()
	if err := h.cfg.Validate(); err != nil {
		t.Fatalf("configuration: %v", err)
	}
	h.start()
	return h, pr
}

// authorizePasted runs a whole paste-back authorization of name.
func (h *harness) authorizePasted(name string) api.AuthorizeResponse {
	h.t.Helper()
	ar := h.authorizePaste(name)
	if code, body := h.complete(name, ar.PasteID, h.approve(ar.URL)); code != 200 {
		h.t.Fatalf("paste: %d %s", code, body)
	}
	return ar
}

// From the resource's URL alone: the probe's challenge names the
// metadata, which names the provider; tokend registers (the provider
// lists client_secret_basic first among what it takes), asks for the
// challenge's scope and offline_access (which the provider lists), and
// names the resource on the authorization request, the exchange and every
// refresh.
func TestResourceDiscoveryRegistersAndAuthorizes(t *testing.T) {
	h, pr := resourceHarness(t, devprovider.Options{AllowRegistration: true}, nil)
	ar := h.authorizePasted("notes")
	u, _ := url.Parse(ar.URL)
	q := u.Query()
	if q.Get("resource") != pr.url() {
		t.Errorf("authorization request resource = %q, want %q", q.Get("resource"), pr.url())
	}
	scopes := strings.Fields(q.Get("scope"))
	if !slices.Contains(scopes, "notes:read") || !slices.Contains(scopes, "offline_access") {
		t.Errorf("authorization request scope = %q, want the challenge's notes:read and offline_access", scopes)
	}
	if s := h.prov.Stats(); s.Registrations != 1 {
		t.Fatalf("%d registrations, want 1", s.Registrations)
	}
	if !h.prov.Valid(h.token("notes").AccessToken) {
		t.Fatal("token not valid")
	}
	if code, body := h.post("/v1/tokens/notes/refresh", ""); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	got := h.prov.Stats().Resources
	want := []string{"authorize " + pr.url(), "authorization_code " + pr.url(), "refresh_token " + pr.url()}
	if !slices.Equal(got, want) {
		t.Fatalf("resources sent: %q, want %q", got, want)
	}
	st := h.status("notes")
	if st.Provider != config.DerivedName("notes") || st.ProtectedResource != pr.url() || st.TokenEndpoint != h.prov.URL()+"/token" {
		t.Errorf("status: provider %q resource %q token endpoint %q", st.Provider, st.ProtectedResource, st.TokenEndpoint)
	}
	// A restart registers nothing again and discovers once more.
	h.stop()
	h.start()
	h.authorizePasted("notes")
	if s := h.prov.Stats(); s.Registrations != 1 {
		t.Fatalf("%d registrations after a restart, want 1", s.Registrations)
	}
	// With the resource down at the next start, the cached discovery
	// serves, checked again.
	pr.mu.Lock()
	pr.down = true
	pr.mu.Unlock()
	h.stop()
	h.start()
	h.authorizePasted("notes")
	if !strings.Contains(h.logs.String(), "discovery failed; using cached resource metadata") {
		t.Fatal("the cached discovery was not used")
	}
}

// A cached discovery for another resource is not used.
func TestCachedResourceForAnotherResourceRefused(t *testing.T) {
	h, pr := resourceHarness(t, devprovider.Options{AllowRegistration: true}, nil)
	h.authorizePasted("notes")
	h.stop()
	pr.mu.Lock()
	pr.down = true
	pr.mu.Unlock()
	g := h.cfg.Grants["notes"]
	g.ProtectedResource = pr.srv.URL + "/other"
	h.cfg.Grants["notes"] = g
	h.cfg.Providers[config.DerivedName("notes")] = config.Provider{}
	h.cfg.ApplyDefaults()
	h.start()
	code, body := h.post("/v1/tokens/notes/authorize", `{"paste":true}`)
	if code == http.StatusOK {
		t.Fatalf("authorize with a cache for another resource: %d %s", code, body)
	}
	if !strings.Contains(h.logs.String(), "is for another resource") {
		t.Fatalf("the refusal of the cache is not logged (%d %s)", code, body)
	}
}

// A server that takes client metadata documents gets the document's URL
// as client_id, and nothing is registered.
func TestResourceMetadataDocumentClient(t *testing.T) {
	const doc = "https://app.example.com/tokend.json"
	h, _ := resourceHarness(t, devprovider.Options{AllowRegistration: true, MetadataDocuments: true,
		Clients: []devprovider.Client{{ID: doc, AuthMethod: "none"}}}, func(c *config.Config, _ *protectedResource) {
		g := c.Grants["notes"]
		g.ClientIDMetadataDocument = doc
		c.Grants["notes"] = g
	})
	ar := h.authorizePasted("notes")
	if u, _ := url.Parse(ar.URL); u.Query().Get("client_id") != doc {
		t.Fatalf("client_id = %q, want the document's URL", u.Query().Get("client_id"))
	}
	if s := h.prov.Stats(); s.Registrations != 0 {
		t.Fatalf("%d registrations with a metadata document", s.Registrations)
	}
	h.token("notes")
}

// A pre-registered client wins, even without a provider of its own.
func TestResourcePreRegisteredClient(t *testing.T) {
	h, _ := resourceHarness(t, devprovider.Options{AllowRegistration: true, MetadataDocuments: true}, func(c *config.Config, _ *protectedResource) {
		c.Clients["pre"] = config.Client{ClientID: "app", Secret: oauth.NewSecret(testSecret)}
		g := c.Grants["notes"]
		g.Client = "pre"
		c.Grants["notes"] = g
	})
	ar := h.authorizePasted("notes")
	if u, _ := url.Parse(ar.URL); u.Query().Get("client_id") != "app" {
		t.Fatalf("client_id = %q, want the pre-registered one", u.Query().Get("client_id"))
	}
	if s := h.prov.Stats(); s.Registrations != 0 {
		t.Fatalf("%d registrations with a pre-registered client", s.Registrations)
	}
}

// Neither registration nor metadata documents: a clear error naming what
// is missing, and nothing sent to the provider's token endpoint.
func TestResourceWithoutRegistrationRefused(t *testing.T) {
	h, _ := resourceHarness(t, devprovider.Options{}, nil)
	code, body := h.post("/v1/tokens/notes/authorize", `{"paste":true}`)
	if code != http.StatusBadGateway || !strings.Contains(string(body), "offers no dynamic client registration") || !strings.Contains(string(body), "pre-registered client") {
		t.Fatalf("authorize: %d %s", code, body)
	}
	if s := h.prov.Stats(); s.TokenRequests != 0 {
		t.Fatal("a token request was sent")
	}
}

// Metadata naming another resource is refused: nothing registered,
// nothing authorized.
func TestResourceMetadataForAnotherResourceRefused(t *testing.T) {
	h, _ := resourceHarness(t, devprovider.Options{AllowRegistration: true}, func(_ *config.Config, pr *protectedResource) {
		pr.resource = "https://elsewhere.example.com/mcp"
	})
	code, body := h.post("/v1/tokens/notes/authorize", `{"paste":true}`)
	if code == http.StatusOK || !strings.Contains(string(body), "elsewhere.example.com") {
		t.Fatalf("authorize: %d %s", code, body)
	}
	if s := h.prov.Stats(); s.Registrations != 0 || s.TokenRequests != 0 {
		t.Fatalf("sent to the provider after a refused discovery: %+v", s)
	}
}
