package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
)

// playedProvider is a token endpoint played by the test: the password,
// client_credentials and refresh grants, refresh tokens rotated on every
// refresh (and only the newest one accepted), and answers shaped as the
// test says. It does not check client authentication or DPoP proofs: what
// is under test is what tokend does with the answers.
type playedProvider struct {
	srv *httptest.Server

	mu        sync.Mutex
	tokenType string // token_type of the answers
	noAccess  bool   // answers without access_token
	issued    string // issued_token_type of token exchange answers (with token_type N_A)
	requests  int
	n         int
	current   string         // the refresh token the provider accepts
	sent      map[string]int // refresh token → times it was sent
	stale     int            // refresh requests with a retired or unknown refresh token
	issuedAT  []string
}

func newPlayedProvider(t *testing.T, tokenType string) *playedProvider {
	pp := &playedProvider{tokenType: tokenType, sent: map[string]int{}}
	pp.srv = httptest.NewServer(http.HandlerFunc(pp.serve))
	t.Cleanup(pp.srv.Close)
	return pp
}

func (pp *playedProvider) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/.well-known/oauth-authorization-server" {
		iss := "http://" + r.Host
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "token_endpoint": iss + "/token", "revocation_endpoint": iss + "/revoke",
			"introspection_endpoint": iss + "/introspect", "pushed_authorization_request_endpoint": iss + "/par",
			"device_authorization_endpoint": iss + "/device", "registration_endpoint": iss + "/register",
			"mtls_endpoint_aliases": map[string]string{"token_endpoint": iss + "/mtls/token", "introspection_endpoint": iss + "/mtls/introspect"},
		})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/token" || r.ParseForm() != nil {
		http.Error(w, "no", http.StatusNotFound)
		return
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.requests++
	w.Header().Set("Content-Type", "application/json")
	if r.PostForm.Get("grant_type") == "refresh_token" {
		rt := r.PostForm.Get("refresh_token")
		pp.sent[rt]++
		if rt != pp.current {
			pp.stale++
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"refresh token reused: family revoked"}`))
			return
		}
	}
	pp.n++
	pp.current = fmt.Sprintf("rt-%d", pp.n)
	at := fmt.Sprintf("at-%d", pp.n)
	pp.issuedAT = append(pp.issuedAT, at)
	ans := map[string]any{"token_type": pp.tokenType, "expires_in": 600, "refresh_token": pp.current}
	if !pp.noAccess {
		ans["access_token"] = at
	}
	if r.PostForm.Get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange" {
		ans["issued_token_type"], ans["token_type"] = pp.issued, "N_A"
	}
	_ = json.NewEncoder(w).Encode(ans)
}

func (pp *playedProvider) set(f func(pp *playedProvider)) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	f(pp)
}

func (pp *playedProvider) count() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.requests
}

// playedConfig points the harness's client at pp (explicit token endpoint,
// no discovery) and adds grant pw (password, dpop as given).
func playedConfig(pp *playedProvider, dpop bool) func(*config.Config) {
	return func(c *config.Config) {
		c.Providers["test"] = config.Provider{TokenEndpoint: pp.srv.URL + "/token"}
		delete(c.Grants, "cc")
		c.Grants["pw"] = config.Grant{Client: "app", Type: config.GrantPassword, Username: "alice",
			Password: oauth.NewSecret("alice-pw"), DPoP: dpop, Scopes: []string{"read"}}
	}
}

// An answer whose token cannot be served for the grant is a
// configuration_error in the provider's words; readers' fetches get that
// error and ask the provider nothing: 50 fetches, no token request.
func TestUnservableAnswerIsConfigurationError(t *testing.T) {
	for _, c := range []struct {
		name, tokenType string
		dpop, noAccess  bool
		words           string
	}{
		{"DPoP for a grant without dpop", "DPoP", false, false, `token_type "DPoP"`},
		{"Bearer for a dpop grant", "Bearer", true, false, `token_type "Bearer"`},
		{"no access_token", "Bearer", false, true, "without access_token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pp := newPlayedProvider(t, c.tokenType)
			pp.noAccess = c.noAccess
			h := newHarness(t, harnessOpts{config: playedConfig(pp, c.dpop)})
			st := h.status("pw")
			if st.State != api.StateConfigurationError || st.LastErrorCode != "configuration" || !strings.Contains(st.LastError, c.words) {
				t.Fatalf("status: state %s, code %s, error %q", st.State, st.LastErrorCode, st.LastError)
			}
			before := pp.count()
			for range 50 {
				code, body := h.get("/v1/tokens/pw")
				var e api.ErrorResponse
				_ = json.Unmarshal(body, &e)
				if code == http.StatusOK || e.Error != api.CodeConfigurationError || !strings.Contains(e.ErrorDescription, c.words) {
					t.Fatalf("fetch: %d %s", code, body)
				}
			}
			if n := pp.count() - before; n != 0 {
				t.Fatalf("50 fetches sent %d token requests", n)
			}
			// Backs off like any error: the schedule does not ask again
			// until a person acts.
			h.advance(5 * 60e9)
			if n := pp.count() - before; n != 0 {
				t.Fatalf("%d token requests while in configuration_error", n)
			}
		})
	}
}

// A DPoP password grant at a provider that rotates refresh tokens; one
// refresh answer says token_type Bearer. tokend refuses it but keeps the
// new refresh token it carried; after the provider is fixed, two more
// refreshes: every refresh token is sent exactly once, and the Bearer
// token is never served.
func TestRotatedRefreshTokenKeptFromRefusedAnswer(t *testing.T) {
	pp := newPlayedProvider(t, "DPoP")
	h := newHarness(t, harnessOpts{config: playedConfig(pp, true)})
	if st := h.status("pw"); st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
	first := h.token("pw")
	refresh := func() {
		t.Helper()
		if code, body := h.post("/v1/tokens/pw/refresh", ""); code != http.StatusOK && code != http.StatusAccepted && code != http.StatusNoContent {
			t.Fatalf("refresh: %d %s", code, body)
		}
	}
	pp.set(func(pp *playedProvider) { pp.tokenType = "Bearer" })
	refresh()
	st := h.status("pw")
	if st.State != api.StateConfigurationError || !strings.Contains(st.LastError, "not DPoP-bound") {
		t.Fatalf("status after the Bearer answer: %+v", st)
	}
	var bearer string
	pp.set(func(pp *playedProvider) { bearer = pp.issuedAT[len(pp.issuedAT)-1] })
	if got := h.stored("pw"); got.AccessToken == bearer || got.RefreshToken != "rt-2" {
		t.Fatalf("stored after the refused answer: access %s, refresh %s", got.AccessToken, got.RefreshToken)
	}
	if code, body := h.get("/v1/tokens/pw"); code == http.StatusOK && strings.Contains(string(body), bearer) {
		t.Fatal("the access token of the refused answer was served")
	}
	if code, body := h.post("/v1/tokens/pw/dpop", `{"method":"GET","url":"https://api.example/x"}`); code == http.StatusOK && strings.Contains(string(body), bearer) {
		t.Fatal("the access token of the refused answer was served with a proof")
	}
	pp.set(func(pp *playedProvider) { pp.tokenType = "DPoP" })
	refresh()
	refresh()
	if st := h.status("pw"); st.State != api.StateValid {
		t.Fatalf("status after the provider was fixed: %+v", st)
	}
	if tok := h.token("pw"); tok.AccessToken == first.AccessToken || tok.AccessToken == bearer {
		t.Fatalf("served %s", tok.AccessToken)
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.stale != 0 || len(pp.sent) != 3 {
		t.Fatalf("refresh tokens sent: %v (%d stale)", pp.sent, pp.stale)
	}
	for rt, n := range pp.sent {
		if n != 1 {
			t.Fatalf("refresh token %s sent %d times: %v", rt, n, pp.sent)
		}
	}
}

// A provider with an issuer and an explicit token_endpoint, a client with
// tls_client_auth, and discovery listing an mTLS alias on another
// endpoint: every token request goes to the configured endpoint, none to
// the alias.
func TestExplicitTokenEndpointWinsOverMTLSAlias(t *testing.T) {
	pp := newPlayedProvider(t, "Bearer")
	h := newHarness(t, harnessOpts{tls: true, noRun: true})
	h.tlsClient(devprovider.AuthMethodTLS, time.Now().Add(time.Hour))
	pv := h.cfg.Providers["test"]
	pv.TokenEndpoint = pp.srv.URL + "/token"
	h.cfg.Providers["test"] = pv
	h.cfg.Grants = map[string]config.Grant{"svc": {Client: "mc", Type: config.GrantClientCredentials, Scopes: []string{"read"}}}
	h.start()
	if st := h.status("svc"); st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
	if _, err := h.d.refresh(h.d.grant("svc"), "manual"); err != nil {
		t.Fatal(err)
	}
	if n := pp.count(); n != 2 {
		t.Fatalf("the configured token endpoint got %d requests, want 2", n)
	}
	if n := h.prov.Stats().TokenRequests; n != 0 {
		t.Fatalf("the discovered mTLS alias got %d token requests", n)
	}
	if got := h.status("svc").TokenEndpoint; got != pv.TokenEndpoint {
		t.Fatalf("status shows token endpoint %q, want %q", got, pv.TokenEndpoint)
	}
}

// A jwt_bearer grant whose service-account key file names a token_uri of
// another server than the provider's (discovered) token endpoint: the
// assertion would be addressed to one server and given to another. It is
// not signed, the grant is in configuration_error naming both, and the
// provider receives no assertion.
func TestAssertionNotSentToAnotherAudience(t *testing.T) {
	k := ecSigningKey(t)
	const tokenURI = "https://oauth2.googleapis.com/token"
	h := newHarness(t, harnessOpts{
		prov: devprovider.Options{AssertionIssuers: []devprovider.AssertionIssuer{{Issuer: "robot@example", JWKS: publicJWKS(t, k), Audiences: []string{tokenURI}}}},
		config: func(c *config.Config) {
			c.Grants = map[string]config.Grant{"sa": {Client: "app", Type: config.GrantJWTBearer, Scopes: []string{"read"},
				Assertion: &config.Assertion{Issuer: "robot@example", Audience: tokenURI, Key: k,
					ServiceAccount: &oauth.ServiceAccount{ClientEmail: "robot@example", TokenURI: tokenURI}}}}
		},
	})
	st := h.status("sa")
	if st.State != api.StateConfigurationError || !strings.Contains(st.LastError, tokenURI) || !strings.Contains(st.LastError, h.prov.URL()+"/token") {
		t.Fatalf("status: state %s, error %q", st.State, st.LastError)
	}
	if n := h.prov.Stats().ByGrant["urn:ietf:params:oauth:grant-type:jwt-bearer"]; n != 0 {
		t.Fatalf("the provider received %d assertions addressed to %s", n, tokenURI)
	}
}

// A reader of a dpop grant asks for proofs for the endpoints of the
// grant's authorization server (token, PAR, revocation, introspection,
// device authorization, registration, an mTLS alias), however it spells
// them: each is refused with 403 and a reason. A resource server's URL
// gets its proof.
func TestDPoPProofRefusedForAuthorizationServer(t *testing.T) {
	pp := newPlayedProvider(t, "DPoP")
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		c.Providers["test"] = config.Provider{Issuer: pp.srv.URL}
		c.Grants = map[string]config.Grant{"cc": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}, DPoP: true}}
	}})
	if st := h.status("cc"); st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
	host := strings.TrimPrefix(pp.srv.URL, "http://")
	for _, target := range []string{
		pp.srv.URL + "/token", pp.srv.URL + "/par", pp.srv.URL + "/revoke", pp.srv.URL + "/introspect",
		pp.srv.URL + "/device", pp.srv.URL + "/register", pp.srv.URL + "/mtls/token", pp.srv.URL + "/mtls/introspect",
		"HTTP://" + strings.ToUpper(host) + "/token", pp.srv.URL + "/token/", pp.srv.URL + "/token?x=1#f",
		pp.srv.URL + "/a/../token", pp.srv.URL + "/TOKEN", pp.srv.URL + "/%74oken",
	} {
		code, body := h.post("/v1/tokens/cc/dpop", `{"method":"POST","url":"`+target+`"}`)
		var e api.ErrorResponse
		_ = json.Unmarshal(body, &e)
		if code != http.StatusForbidden || e.Error != api.CodeForbidden || !strings.Contains(e.ErrorDescription, "authorization server") {
			t.Errorf("proof for %s: %d %s", target, code, body)
		}
	}
	if code, body := h.post("/v1/tokens/cc/dpop", `{"method":"GET","url":"https://api.example/x"}`); code != http.StatusOK {
		t.Fatalf("proof for a resource server: %d %s", code, body)
	}
	if code, body := h.post("/v1/tokens/cc/dpop", `{"method":"GET","url":"`+pp.srv.URL+`/api/things"}`); code != http.StatusOK {
		t.Fatalf("proof for another path of the same host: %d %s", code, body)
	}
}

// A token exchange asks for an access token; the server issues a refresh
// token (issued_token_type refresh_token, token_type N_A). The grant is in
// configuration_error naming the issued type, and nothing is served.
func TestTokenExchangeOfAnotherTypeNotServed(t *testing.T) {
	pp := newPlayedProvider(t, "Bearer")
	pp.issued = oauth.TokenTypeRefresh
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		c.Providers["test"] = config.Provider{TokenEndpoint: pp.srv.URL + "/token"}
		c.Grants = map[string]config.Grant{
			"base": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}},
			"down": {Client: "app", Type: config.GrantTokenExchange, SubjectGrant: "base", RequestedTokenType: oauth.TokenTypeAccess},
		}
	}})
	h.advance(15 * time.Second) // the exchange waited for its subject's first token
	st := h.status("down")
	if st.State != api.StateConfigurationError || !strings.Contains(st.LastError, oauth.TokenTypeRefresh) {
		t.Fatalf("status: state %s, error %q", st.State, st.LastError)
	}
	if code, body := h.get("/v1/tokens/down"); code == http.StatusOK {
		t.Fatalf("served: %s", body)
	}
}

// A provider answering garbage (or no access token) leaves the stored
// token untouched and says why in the status.
func TestMalformedProviderAnswers(t *testing.T) {
	for _, kind := range []devprovider.FaultKind{devprovider.FaultHTML, devprovider.FaultEmpty, devprovider.FaultHuge, devprovider.FaultNoAccessToken, devprovider.FaultErrorIn200} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			before := h.stored("cc")
			h.prov.SetFault(devprovider.Fault{Kind: kind})
			go func() { _, _ = h.d.refresh(h.d.grant("cc"), "manual") }()
			waitFor(t, "failure shown", func() bool { return h.status("cc").LastError != "" })
			st := h.status("cc")
			want := api.StateFailing
			if kind == devprovider.FaultNoAccessToken {
				want = api.StateConfigurationError // unservable, not garbage: asking again gets the same
			}
			if st.State != want || st.LastError == "" || st.Failures == 0 {
				t.Fatalf("status after %v: %+v", kind, st)
			}
			after := h.stored("cc")
			if after.AccessToken != before.AccessToken || after.Generation != before.Generation {
				t.Fatal("stored token changed")
			}
			if got := h.token("cc"); got.AccessToken != before.AccessToken {
				t.Fatal("the still-valid token is no longer served")
			}
			if len(st.LastError) > 300 {
				t.Fatalf("error too long (body leaked?): %q", st.LastError)
			}
		})
	}
}
