package daemon

// The jwt_bearer and token_exchange grants against the in-process
// provider: a fresh assertion for each token, an exchanged grant that
// follows its subject grant (its tokens, its removal, its permanent
// failure) and sends an id token or an actor token when configured.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

func TestJWTBearerReobtainsWithFreshAssertion(t *testing.T) {
	k := ecSigningKey(t)
	h := newHarness(t, harnessOpts{
		prov: devprovider.Options{AssertionIssuers: []devprovider.AssertionIssuer{{Issuer: "svc@example", JWKS: publicJWKS(t, k)}}},
		config: func(c *config.Config) {
			c.Grants = map[string]config.Grant{"sa": {Client: "app", Type: config.GrantJWTBearer, Scopes: []string{"read"},
				Assertion: &config.Assertion{Issuer: "svc@example", Subject: "robot", Key: k}}}
		},
	})
	reobtained(t, h, "sa")
	s := h.prov.Stats()
	if n := s.ByGrant["urn:ietf:params:oauth:grant-type:jwt-bearer"]; n < 2 || s.AssertionFailures != 0 || s.AssertionReplays != 0 {
		t.Fatalf("provider stats: %+v", s)
	}
	if info, _ := h.prov.TokenInfo(h.token("sa").AccessToken); info.Subject != "robot" {
		t.Fatalf("token info: %+v", info)
	}
	h.logMustNotContain(h.prov.Issued()...)
	h.logMustNotContain(privateParts(t, k)...)
}

func exchangeGrants(c *config.Config) {
	userGrant(c)
	c.Grants["down"] = config.Grant{Client: "app", Type: config.GrantTokenExchange, SubjectGrant: "user",
		Audience: []string{"https://api.example"}, Scopes: []string{"openid"}}
}

// authorizeSubject authorizes the subject grant and waits for the
// dependent to be exchanged (its kick reaches the scheduler
// asynchronously).
func (h *harness) authorizeSubject() {
	h.t.Helper()
	h.authorizeViaCallback("user")
	waitFor(h.t, "dependent exchanged", func() bool { return h.status("down").State == api.StateValid })
}

func TestTokenExchangeFollowsSubject(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true, AutoApprove: true}, config: exchangeGrants})
	// Before anyone authorized the subject, the dependent says so and asks
	// nothing of the provider.
	st := h.status("down")
	if st.State != api.StateReauthorizationRequired || !strings.Contains(st.LastError, "subject grant user needs reauthorization") || st.SubjectGrant != "user" {
		t.Fatalf("status before the subject is authorized: %+v", st)
	}
	if n := h.prov.Stats().ByGrant["urn:ietf:params:oauth:grant-type:token-exchange"]; n != 0 {
		t.Fatalf("%d exchanges without a subject token", n)
	}

	h.authorizeSubject()
	first := h.token("down")
	info, ok := h.prov.TokenInfo(first.AccessToken)
	if !ok || info.GrantType != "urn:ietf:params:oauth:grant-type:token-exchange" || len(info.Audience) != 1 {
		t.Fatalf("exchanged token: %+v", info)
	}
	gen := h.status("down").Generation

	// A new subject token is exchanged again at once.
	if code, body := h.do(http.MethodPost, "/v1/tokens/user/refresh"); code != 200 {
		t.Fatalf("refresh user: %d %s", code, body)
	}
	waitFor(t, "dependent re-exchanged", func() bool { return h.status("down").Generation > gen })
	if st := h.status("down"); st.Generation != gen+1 || st.State != api.StateValid || st.History[0].Reason != "subject_changed" {
		t.Fatalf("dependent did not follow the subject's new token: %+v", st)
	}
	exchanges := h.prov.Stats().Exchanges

	// The subject loses its authorization: so does the dependent, with
	// the subject named, and no exchange is tried.
	h.prov.RevokeFamilyOf(h.stored("user").RefreshToken)
	h.do(http.MethodPost, "/v1/tokens/user/refresh")
	if st := h.status("user"); st.State != api.StateReauthorizationRequired {
		t.Fatalf("user: %+v", st)
	}
	waitFor(t, "dependent follows its subject", func() bool { return h.status("down").State != api.StateValid })
	st = h.status("down")
	if st.State != api.StateReauthorizationRequired || !strings.Contains(st.LastError, "subject grant user needs reauthorization") {
		t.Fatalf("dependent of a dead subject: %+v", st)
	}
	if n := h.prov.Stats().Exchanges; n != exchanges {
		t.Fatalf("exchanged a dead subject's token: %d → %d", exchanges, n)
	}

	// Authorized again: the dependent follows.
	h.authorizeSubject()
	h.logMustNotContain(h.prov.Issued()...)
}

func TestTokenExchangeSubjectRemovedByReload(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: exchangeGrants})
	h.authorizeSubject()
	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{"down": h.cfg.Grants["down"]}
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dependent of a removed subject", func() bool { return h.status("down").State != api.StateValid })
	st := h.status("down")
	if st.State != api.StateConfigurationError || !strings.Contains(st.LastError, `subject grant "user" is not configured`) {
		t.Fatalf("status after the subject grant was removed: %+v", st)
	}
	// Past its expiry the token is not served.
	h.advance(11 * time.Minute)
	if code, body := h.get("/v1/tokens/down"); code != http.StatusServiceUnavailable {
		t.Fatalf("fetch: %d %s", code, body)
	}
}

// The subject's id token and an actor grant's access token.
func TestTokenExchangeIDTokenAndActor(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: func(c *config.Config) {
		exchangeGrants(c)
		c.Grants["robot"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
		g := c.Grants["down"]
		g.SubjectTokenType, g.ActorGrant = "id_token", "robot"
		c.Grants["down"] = g
	}})
	h.authorizeSubject()
	info, ok := h.prov.TokenInfo(h.token("down").AccessToken)
	if !ok || info.Actor == "" || info.Subject == "" {
		t.Fatalf("exchanged token: %+v", info)
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// A subject grant whose client credentials fail hands that state on.
func TestTokenExchangeTakesSubjectsPermanentState(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{
			"robot": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}},
			"down":  {Client: "app", Type: config.GrantTokenExchange, SubjectGrant: "robot", Scopes: []string{"read"}},
		}
	}})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidClient, GrantTypes: []string{"client_credentials"}})
	h.start()
	if st := h.status("robot"); st.State != api.StateCredentialsError {
		t.Fatalf("robot: %+v", st)
	}
	// The dependent, which tried first, retries after its backoff.
	h.advance(15 * time.Second)
	waitFor(t, "dependent takes the subject's state", func() bool { return h.status("down").State == api.StateCredentialsError })
	if st := h.status("down"); !strings.Contains(st.LastError, "subject grant robot has no valid token (credentials_error)") {
		t.Fatalf("down: %+v", st)
	}
	// Fixed (a reload): both recover.
	h.prov.ClearFault()
	if err := h.d.Reload(h.cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both recover", func() bool {
		h.advance(15 * time.Second)
		return h.status("robot").State == api.StateValid && h.status("down").State == api.StateValid
	})
}
