package daemon

// Providers (providers.go): dynamic registration, and discovery served
// from the store's cache.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

func TestDynamicRegistrationOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AllowRegistration: true}, config: func(c *config.Config) {
		c.Clients["dyn"] = config.Client{Provider: "test"}
		c.Grants = map[string]config.Grant{"dyn": {Client: "dyn", Type: config.GrantClientCredentials}}
	}})
	if got := h.token("dyn"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("token of a registered client invalid")
	}
	if n := h.prov.Stats().Registrations; n != 1 {
		t.Fatalf("%d registrations", n)
	}
	h.stop()
	h2 := h.sameStore()
	h2.start()
	h2.do(http.MethodPost, "/v1/tokens/dyn/refresh")
	if n := h.prov.Stats().Registrations; n != 1 {
		t.Fatalf("registered again after restart: %d registrations", n)
	}
	if got := h2.token("dyn"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("token after restart invalid")
	}
}

// A provider whose discovery is down at start is used through the
// endpoints cached in the store.
func TestDiscoveryFallsBackToCache(t *testing.T) {
	dead := "http://127.0.0.1:1"
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Providers["test"] = config.Provider{Issuer: dead}
	}})
	st, err := store.Open(store.Options{Path: h.cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := json.Marshal(oauth.Endpoints{Issuer: dead, Token: h.prov.URL() + "/token"})
	if err := st.PutProvider("test", meta); err != nil {
		t.Fatal(err)
	}
	st.Close()
	h.start()
	if got := h.token("cc"); !h.prov.Valid(got.AccessToken) {
		t.Fatal("no token through cached endpoints")
	}
	if !strings.Contains(h.logs.String(), "using cached endpoints") {
		t.Fatal("fallback not logged")
	}
}
