package daemon

// Enterprise-managed authorization: a jwt_bearer grant whose assertion an
// identity provider issues. The in-process provider is the authorization
// server, trusting the identity provider's key for JWT-bearer assertions;
// the identity provider is a test server that exchanges the subject token
// for an ID-JAG.

import (
	"io"
	"maps"
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

// idjagIssuer is a test identity provider: POST /token exchanges a
// subject token for an ID-JAG signed with key, for the subject the
// subject token names (subjects: token → sub; with anyJWT, any JWT is
// alice's).
type idjagIssuer struct {
	t        *testing.T
	srv      *httptest.Server
	key      oauth.SigningKey
	clock    *fakeClock // the daemon's, set before it starts
	mu       sync.Mutex
	subjects map[string]string
	anyJWT   bool
	requests []url.Values
	issued   []string
}

func newIDJAGIssuer(t *testing.T) *idjagIssuer {
	i := &idjagIssuer{t: t, key: ecSigningKey(t), subjects: map[string]string{}}
	i.srv = httptest.NewServer(http.HandlerFunc(i.serve))
	t.Cleanup(i.srv.Close)
	return i
}

func (i *idjagIssuer) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(b))
	i.mu.Lock()
	defer i.mu.Unlock()
	i.requests = append(i.requests, form)
	w.Header().Set("Content-Type", "application/json")
	sub, ok := i.subjects[form.Get("subject_token")]
	if i.anyJWT && strings.Count(form.Get("subject_token"), ".") == 2 {
		sub, ok = "alice", true
	}
	if r.URL.Path != "/token" || form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" ||
		form.Get("requested_token_type") != oauth.TokenTypeIDJAG || form.Get("client_id") != "tokend-at-idp" || !ok {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
		return
	}
	jag, err := oauth.SignAssertion(oauth.Assertion{
		Issuer: i.srv.URL, Subject: sub, Audience: form.Get("audience"), Key: i.key,
		Claims: map[string]any{"client_id": "app", "resource": form.Get("resource")},
	}, i.clock.Now())
	if err != nil {
		i.t.Error(err)
		return
	}
	i.issued = append(i.issued, jag.Reveal())
	_, _ = io.WriteString(w, `{"access_token":"`+jag.Reveal()+`","issued_token_type":"`+oauth.TokenTypeIDJAG+`","token_type":"N_A","expires_in":300}`)
}

func (i *idjagIssuer) last() (url.Values, int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.requests) == 0 {
		return nil, 0
	}
	return i.requests[len(i.requests)-1], len(i.requests)
}

// idjagHarness runs a daemon with grant "ea" at the in-process provider,
// its assertion from the identity provider idp; ia completes its
// identity_assertion, more adds grants.
func idjagHarness(t *testing.T, idp *idjagIssuer, ia config.IdentityAssertion, more func(*config.Config)) *harness {
	h := newHarness(t, harnessOpts{noRun: true,
		prov: devprovider.Options{AutoApprove: true, AssertionIssuers: []devprovider.AssertionIssuer{{Issuer: idp.srv.URL, JWKS: publicJWKS(t, idp.key)}}},
		config: func(c *config.Config) {
			if more != nil {
				more(c)
			}
			c.Providers["idp"] = config.Provider{TokenEndpoint: idp.srv.URL + "/token"}
			c.Clients["at-idp"] = config.Client{Provider: "idp", ClientID: "tokend-at-idp", AuthMethod: oauth.AuthNone}
			ia.Client = "at-idp"
			if c.Grants == nil {
				c.Grants = map[string]config.Grant{}
			}
			c.Grants["ea"] = config.Grant{Client: "app", Type: config.GrantJWTBearer, Scopes: []string{"read"}, IdentityAssertion: &ia}
		},
	})
	idp.clock = h.clock
	h.start()
	return h
}

func TestIdentityAssertionFromSubjectToken(t *testing.T) {
	idp := newIDJAGIssuer(t)
	idp.subjects["the-id-token"] = "alice"
	h := idjagHarness(t, idp, config.IdentityAssertion{SubjectToken: oauth.NewSecret("the-id-token"), Resource: []string{"https://mcp.example.com/mcp"}}, nil)
	reobtained(t, h, "ea")

	form, n := idp.last()
	if n < 2 {
		t.Fatalf("%d ID-JAGs for two tokens", n)
	}
	want := url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "client_id": {"tokend-at-idp"},
		"subject_token": {"the-id-token"}, "subject_token_type": {oauth.TokenTypeID},
		"requested_token_type": {oauth.TokenTypeIDJAG},
		"audience":             {h.prov.URL()}, "resource": {"https://mcp.example.com/mcp"}, "scope": {"read"},
	}
	if form.Encode() != want.Encode() {
		t.Errorf("request for an ID-JAG =\n %v\nwant\n %v", form, want)
	}
	info, _ := h.prov.TokenInfo(h.token("ea").AccessToken)
	if info.Subject != "alice" || info.GrantType != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Errorf("token at the authorization server: %+v", info)
	}
	if s := h.prov.Stats(); s.AssertionFailures != 0 || s.AssertionReplays != 0 {
		t.Errorf("provider stats: %+v", s)
	}
	h.logMustNotContain(append(h.prov.Issued(), append(idp.issued, "the-id-token")...)...)
}

// The identity provider refuses the subject token: the grant says so, and
// nothing reaches the authorization server. A reload with a new subject
// token (its file rewritten) tries again at once; one with the same token
// does not.
func TestIdentityAssertionRefusedByIdentityProvider(t *testing.T) {
	idp := newIDJAGIssuer(t)
	h := idjagHarness(t, idp, config.IdentityAssertion{SubjectTokenFile: "/etc/tokend/alice.id_token", SubjectToken: oauth.NewSecret("an-expired-id-token")}, nil)
	waitFor(t, "refusal recorded", func() bool { return h.status("ea").LastError != "" })
	st := h.status("ea")
	if st.State == api.StateValid || !strings.Contains(st.LastError, "identity_assertion: invalid_grant: the identity provider refused the subject token: put a new subject token in /etc/tokend/alice.id_token and run tokend reload") {
		t.Fatalf("status: %+v", st)
	}
	if n := h.prov.Stats().ByGrant["urn:ietf:params:oauth:grant-type:jwt-bearer"]; n != 0 {
		t.Fatalf("%d JWT-bearer requests without an ID-JAG", n)
	}

	reload := func(token string) {
		t.Helper()
		cfg := *h.cfg
		cfg.Grants = maps.Clone(h.cfg.Grants)
		g := cfg.Grants["ea"]
		ia := *g.IdentityAssertion
		ia.SubjectToken = oauth.NewSecret(token)
		g.IdentityAssertion = &ia
		cfg.Grants["ea"] = g
		if err := h.d.Reload(&cfg); err != nil {
			t.Fatal(err)
		}
	}
	_, asked := idp.last()
	reload("an-expired-id-token")
	h.settle()
	if _, n := idp.last(); n != asked || h.status("ea").State != api.StateReauthorizationRequired {
		t.Fatalf("a reload with the same refused token asked again (%d → %d requests): %+v", asked, n, h.status("ea"))
	}
	idp.mu.Lock()
	idp.subjects["a-fresh-id-token"] = "alice"
	idp.mu.Unlock()
	reload("a-fresh-id-token")
	waitFor(t, "the new subject token exchanged", func() bool { return h.status("ea").State == api.StateValid })
	h.logMustNotContain("an-expired-id-token", "a-fresh-id-token")
}

// The subject token is another grant's id token: nothing is asked of the
// identity provider before that grant has one, and a new one is
// exchanged again at once.
func TestIdentityAssertionFollowsSubjectGrant(t *testing.T) {
	idp := newIDJAGIssuer(t)
	idp.anyJWT = true
	h := idjagHarness(t, idp, config.IdentityAssertion{SubjectGrant: "user", SubjectTokenType: config.TokenTypeIDToken}, userGrant)
	st := h.status("ea")
	if st.State != api.StateReauthorizationRequired || !strings.Contains(st.LastError, "subject grant user needs reauthorization") || st.SubjectGrant != "user" {
		t.Fatalf("status before the subject is authorized: %+v", st)
	}
	if _, n := idp.last(); n != 0 {
		t.Fatalf("%d requests to the identity provider without a subject token", n)
	}

	h.authorizeViaCallback("user")
	idToken := h.stored("user").IDToken
	if idToken == "" {
		t.Fatal("the subject grant holds no id token")
	}
	waitFor(t, "ea obtained", func() bool { return h.status("ea").State == api.StateValid })
	if form, _ := idp.last(); form.Get("subject_token") != idToken || form.Get("subject_token_type") != oauth.TokenTypeID {
		t.Fatalf("exchanged %v", form)
	}
	gen := h.status("ea").Generation

	// The subject's new id token: a new ID-JAG and a new token at once.
	if code, body := h.do(http.MethodPost, "/v1/tokens/user/refresh"); code != 200 {
		t.Fatalf("refresh user: %d %s", code, body)
	}
	newID := h.stored("user").IDToken
	waitFor(t, "ea follows its subject", func() bool { return h.status("ea").Generation > gen })
	if form, _ := idp.last(); form.Get("subject_token") != newID {
		t.Fatalf("exchanged %v, not the new id token", form)
	}
}

// The machine grants of a protected resource: everything but the client is
// discovered from the resource, whose URL every request names (RFC 8707).

// A client_credentials grant with a key (private_key_jwt, ES256), its
// assertions addressed to the issuer discovery found.
func TestResourceClientCredentialsWithKey(t *testing.T) {
	k := ecSigningKey(t)
	h, pr := resourceHarness(t, devprovider.Options{Clients: []devprovider.Client{{ID: "robot", AuthMethod: devprovider.AuthMethodPrivateKeyJWT, JWKS: publicJWKS(t, k)}}},
		func(c *config.Config, _ *protectedResource) {
			c.Clients["robot"] = config.Client{ClientID: "robot", Key: &k, SigningAlg: "ES256", AssertionAudience: "issuer"}
			g := c.Grants["notes"]
			g.Client, g.Type = "robot", config.GrantClientCredentials
			c.Grants["notes"] = g
		})
	reobtained(t, h, "notes")
	info, _ := h.prov.TokenInfo(h.token("notes").AccessToken)
	if info.ClientID != "robot" || info.GrantType != "client_credentials" || info.Scope != "notes:read" {
		t.Errorf("token: %+v", info)
	}
	for _, r := range h.prov.Stats().Resources {
		if r != "client_credentials "+pr.url() {
			t.Errorf("resource sent: %q, want client_credentials %s", r, pr.url())
		}
	}
	if s := h.prov.Stats(); s.Registrations != 0 || len(s.Resources) < 2 {
		t.Errorf("stats: %+v", s)
	}
	h.logMustNotContain(privateParts(t, k)...)
}

// Enterprise-managed authorization on a protected resource: the ID-JAG is
// asked for the discovered authorization server's issuer and the
// resource, and presented there with the pre-registered client.
func TestResourceIdentityAssertion(t *testing.T) {
	idp := newIDJAGIssuer(t)
	idp.subjects["the-id-token"] = "alice"
	// The daemon's fake clock starts at t0 and is not moved here.
	idp.clock = newFakeClock(t0)
	h, pr := resourceHarness(t, devprovider.Options{AssertionIssuers: []devprovider.AssertionIssuer{{Issuer: idp.srv.URL, JWKS: publicJWKS(t, idp.key)}}},
		func(c *config.Config, _ *protectedResource) {
			c.Providers["idp"] = config.Provider{TokenEndpoint: idp.srv.URL + "/token"}
			c.Clients["at-idp"] = config.Client{Provider: "idp", ClientID: "tokend-at-idp", AuthMethod: oauth.AuthNone}
			c.Clients["xaa"] = config.Client{ClientID: "app", Secret: oauth.NewSecret(testSecret)}
			g := c.Grants["notes"]
			g.Client, g.Type = "xaa", config.GrantJWTBearer
			g.IdentityAssertion = &config.IdentityAssertion{Client: "at-idp", SubjectToken: oauth.NewSecret("the-id-token")}
			c.Grants["notes"] = g
		})
	info, ok := h.prov.TokenInfo(h.token("notes").AccessToken)
	if !ok || info.Subject != "alice" || info.ClientID != "app" || info.GrantType != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		t.Fatalf("token: %+v", info)
	}
	form, _ := idp.last()
	if form.Get("audience") != h.prov.URL() || form.Get("resource") != pr.url() || form.Get("scope") != "notes:read" {
		t.Errorf("request for an ID-JAG: %v", form)
	}
	if got, want := h.prov.Stats().Resources, []string{"urn:ietf:params:oauth:grant-type:jwt-bearer " + pr.url()}; !slices.Equal(got, want) {
		t.Errorf("resources at the authorization server: %q, want %q", got, want)
	}
	if st := h.status("notes"); st.State != api.StateValid || st.Provider != config.DerivedName("notes") {
		t.Errorf("status: %+v", st)
	}
	h.logMustNotContain(append(idp.issued, "the-id-token")...)
}
