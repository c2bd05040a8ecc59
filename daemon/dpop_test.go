package daemon

// Issue 14 against the in-process provider: client authentication beyond
// secrets, the jwt_bearer and token_exchange grants, DPoP-bound tokens and
// the proof endpoint. Each test also scans the log for every secret the
// provider issued or received (assertions, proofs, tokens) and for the
// DPoP keys.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/oauth/oauthtest"
	"github.com/tokend/tokend/store"
)

func ecSigningKey(t *testing.T) oauth.SigningKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return oauth.SigningKey{Signer: k, KeyID: "k1"}
}

// privateParts are the encodings a private key's scalar would show in a
// log: base64url (a JWK's d), base64 and hex.
func privateParts(t *testing.T, k oauth.SigningKey) []string {
	t.Helper()
	b, err := k.Signer.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return []string{base64.RawURLEncoding.EncodeToString(b), base64.StdEncoding.EncodeToString(b)[:40], hex.EncodeToString(b)}
}

func publicJWKS(t *testing.T, k oauth.SigningKey) json.RawMessage {
	t.Helper()
	b, err := k.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (h *harness) post(path, body string) (int, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://tokend"+path, strings.NewReader(body))
	resp, err := h.http.Do(req)
	if err != nil {
		h.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// dpopKeyD is the private part of a stored DPoP key (the JWK's d).
func dpopKeyD(t *testing.T, stored string) string {
	t.Helper()
	var jwk map[string]any
	if err := json.Unmarshal([]byte(stored), &jwk); err != nil {
		t.Fatalf("stored DPoP key is not a JWK: %v", err)
	}
	d, _ := jwk["d"].(string)
	if len(d) < 20 {
		t.Fatalf("stored DPoP key has no private part")
	}
	return d
}

func thumbprint(t *testing.T, stored string) string {
	t.Helper()
	k, err := oauth.ParseDPoPKey([]byte(stored))
	if err != nil {
		t.Fatal(err)
	}
	return k.Thumbprint()
}

// reobtained runs a client_credentials-like grant through two token
// lifetimes and checks each brought a new token.
func reobtained(t *testing.T, h *harness, name string) {
	t.Helper()
	first := h.token(name)
	h.advance(10 * time.Minute)
	second := h.token(name)
	if first.AccessToken == second.AccessToken {
		t.Fatalf("%s was not re-obtained", name)
	}
	if !h.prov.Valid(second.AccessToken) {
		t.Fatalf("%s: the provider does not know the new token", name)
	}
	if st := h.status(name); st.State != api.StateValid || st.Generation < 2 {
		t.Fatalf("status: %+v", st)
	}
}

func TestClientAssertionAuthRefreshes(t *testing.T) {
	for _, m := range []string{oauthtest.AuthMethodPrivateKeyJWT, oauthtest.AuthMethodSecretJWT} {
		t.Run(m, func(t *testing.T) {
			k := ecSigningKey(t)
			secret := "a-client-secret-long-enough-for-HS256!!"
			oc := oauthtest.Client{ID: "kc", AuthMethod: m}
			cc := config.Client{Provider: "test", ClientID: "kc", AuthMethod: m}
			if m == oauthtest.AuthMethodPrivateKeyJWT {
				oc.JWKS, cc.Key = publicJWKS(t, k), &k
			} else {
				oc.Secret, cc.Secret = secret, oauth.NewSecret(secret)
			}
			h := newHarness(t, harnessOpts{prov: oauthtest.Options{Clients: []oauthtest.Client{oc}}, config: func(c *config.Config) {
				c.Clients["kc"] = cc
				c.Grants = map[string]config.Grant{"svc": {Client: "kc", Type: config.GrantClientCredentials, Scopes: []string{"read"}}}
			}})
			reobtained(t, h, "svc")
			s := h.prov.Stats()
			if s.ClientAuthFailures != 0 || s.AssertionFailures != 0 || s.ByGrant["client_credentials"] < 2 {
				t.Fatalf("provider stats: %+v", s)
			}
			h.logMustNotContain(h.prov.Issued()...)
			h.logMustNotContain(secret)
			h.logMustNotContain(privateParts(t, k)...)
		})
	}
}

func TestTLSClientAuthRefreshes(t *testing.T) {
	for _, m := range []string{oauthtest.AuthMethodTLS, oauthtest.AuthMethodSelfSignedTLS} {
		t.Run(m, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true, noRun: true})
			oc := oauthtest.Client{ID: "mc", AuthMethod: m}
			var cert, err = h.prov.IssueClientCert(pkix.Name{CommonName: "mtls-app"}, time.Now().Add(time.Hour))
			if m == oauthtest.AuthMethodSelfSignedTLS {
				cert, err = h.prov.SelfSignedClientCert("mtls-app", time.Now().Add(time.Hour))
				oc.JWKS = oauthtest.CertJWKS(cert)
			} else {
				oc.TLSSubjectDN = "CN=mtls-app"
			}
			if err != nil {
				t.Fatal(err)
			}
			h.prov.AddClient(oc)
			h.cfg.Clients["mc"] = config.Client{Provider: "test", ClientID: "mc", AuthMethod: m, TLSCert: &cert}
			h.cfg.Grants = map[string]config.Grant{"svc": {Client: "mc", Type: config.GrantClientCredentials, Scopes: []string{"read"}}}
			h.start()
			reobtained(t, h, "svc")
			if s := h.prov.Stats(); s.ClientAuthFailures != 0 || s.ByGrant["client_credentials"] < 2 {
				t.Fatalf("provider stats: %+v", s)
			}
			h.logMustNotContain(h.prov.Issued()...)
		})
	}
}

func TestJWTBearerReobtainsWithFreshAssertion(t *testing.T) {
	k := ecSigningKey(t)
	h := newHarness(t, harnessOpts{
		prov: oauthtest.Options{AssertionIssuers: []oauthtest.AssertionIssuer{{Issuer: "svc@example", JWKS: publicJWKS(t, k)}}},
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
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{Rotate: true, AutoApprove: true}, config: exchangeGrants})
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
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{AutoApprove: true}, config: exchangeGrants})
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

func dpopUserGrant(c *config.Config) {
	userGrant(c)
	g := c.Grants["user"]
	g.DPoP = true
	c.Grants["user"] = g
	c.Store.Key = bytes.Repeat([]byte{7}, 32)
}

func TestDPoPKeyFollowsAuthorizations(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{Rotate: true, AutoApprove: true}, config: dpopUserGrant})
	h.authorizeViaCallback("user")
	s1 := h.stored("user")
	if s1.TokenType != "DPoP" || s1.DPoPKey == "" {
		t.Fatalf("stored: type %q, key set %v", s1.TokenType, s1.DPoPKey != "")
	}
	jkt1 := thumbprint(t, s1.DPoPKey)
	if info, _ := h.prov.TokenInfo(s1.AccessToken); info.JKT != jkt1 {
		t.Fatalf("token bound to %q, the grant's key is %q", info.JKT, jkt1)
	}
	if st := h.status("user"); !st.DPoP {
		t.Fatalf("status does not show dpop: %+v", st)
	}

	// A refresh keeps the key.
	if code, body := h.do(http.MethodPost, "/v1/tokens/user/refresh"); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	s2 := h.stored("user")
	if s2.AccessToken == s1.AccessToken || s2.DPoPKey != s1.DPoPKey {
		t.Fatal("refresh did not keep the key (or brought no new token)")
	}
	if info, _ := h.prov.TokenInfo(s2.AccessToken); info.JKT != jkt1 {
		t.Fatalf("refreshed token bound to %q, want %q", info.JKT, jkt1)
	}

	// A new authorization makes a new key.
	h.authorizeViaCallback("user")
	s3 := h.stored("user")
	jkt3 := thumbprint(t, s3.DPoPKey)
	if s3.DPoPKey == s1.DPoPKey || jkt3 == jkt1 {
		t.Fatal("the DPoP key was not rotated on reauthorization")
	}
	if info, _ := h.prov.TokenInfo(s3.AccessToken); info.JKT != jkt3 {
		t.Fatalf("new token bound to %q, want %q", info.JKT, jkt3)
	}
	if s := h.prov.Stats(); s.ProofFailures != 0 {
		t.Fatalf("provider refused proofs: %+v", s)
	}

	// The key is sealed on disk, and in no log.
	d1, d3 := dpopKeyD(t, s1.DPoPKey), dpopKeyD(t, s3.DPoPKey)
	h.logMustNotContain(append(h.prov.Issued(), d1, d3)...)
	h.stop()
	raw, err := os.ReadFile(h.cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(d3)) || bytes.Contains(raw, []byte(d1)) {
		t.Fatal("the DPoP private key is in the store file in the clear")
	}
}

func TestDPoPDeviceFlowNewKey(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{"dev": {Client: "app", Type: config.GrantDeviceCode, Scopes: []string{"read"}, DPoP: true}}
	}})
	authorize := func() store.Token {
		code, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
		if code != 200 {
			t.Fatalf("authorize: %d %s", code, body)
		}
		var ar api.AuthorizeResponse
		_ = json.Unmarshal(body, &ar)
		gen := h.status("dev").Generation
		if err := h.prov.ApproveDevice(ar.UserCode); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "device token", func() bool { return h.status("dev").Generation > gen })
		return h.stored("dev")
	}
	a, b := authorize(), authorize()
	if a.TokenType != "DPoP" || a.DPoPKey == "" || a.DPoPKey == b.DPoPKey {
		t.Fatal("device authorizations did not each bind a new key")
	}
	if info, _ := h.prov.TokenInfo(b.AccessToken); info.JKT != thumbprint(t, b.DPoPKey) {
		t.Fatalf("device token bound to %q", info.JKT)
	}
}

func dpopCC(c *config.Config) {
	g := c.Grants["cc"]
	g.DPoP = true
	c.Grants["cc"] = g
}

// A provider that ignores DPoP gets its Bearer token refused, and status
// says why; nothing is served.
func TestDPoPDowngradeRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: dpopCC})
	h.prov.SetFault(oauthtest.Fault{Kind: oauthtest.FaultDPoPDowngrade})
	h.start()
	st := h.status("cc")
	if st.State != api.StateConfigurationError || !strings.Contains(st.LastError, "not DPoP-bound") {
		t.Fatalf("status: %+v", st)
	}
	if code, body := h.get("/v1/tokens/cc"); code == 200 {
		t.Fatalf("a Bearer token was served for a dpop grant: %s", body)
	}
	if code, _ := h.post("/v1/tokens/cc/dpop", `{"method":"GET","url":"https://api.example/x"}`); code == 200 {
		t.Fatal("a proof was made for a Bearer token")
	}
}

// The token endpoint's nonce (use_dpop_nonce) is answered, also after the
// server moves to a new one.
func TestDPoPNonce(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{DPoPNonce: true}, config: dpopCC})
	key := h.stored("cc").DPoPKey
	if h.prov.Stats().NonceChallenges == 0 {
		t.Fatal("the provider never asked for a nonce")
	}
	h.prov.RotateDPoPNonce()
	h.prov.RotateDPoPNonce()
	reobtained(t, h, "cc")
	if h.stored("cc").DPoPKey != key {
		t.Fatal("re-obtaining changed the key")
	}
	if s := h.prov.Stats(); s.ProofFailures != 0 {
		t.Fatalf("provider refused proofs: %+v", s)
	}
}

func TestDPoPProofEndpoint(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{ResourceNonce: true}, noRun: true, config: func(c *config.Config) {
		dpopCC(c)
		g := c.Grants["cc"]
		g.Readers = config.Readers{UIDs: []int{1000}}
		c.Grants["cc"] = g
		c.Grants["plain"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}})
	h.start()
	handler := h.d.apiServer().Handler
	as := func(p peer, name, body string) (int, []byte) {
		r := httptest.NewRequest(http.MethodPost, "http://tokend/v1/tokens/"+name+"/dpop", strings.NewReader(body))
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r.WithContext(context.WithValue(context.Background(), peerKey{}, p)))
		return w.Code, w.Body.Bytes()
	}
	reader, stranger := peer{ok: true, uid: 1000, gid: 1000}, peer{ok: true, uid: 3000, gid: 3000}
	rs := h.prov.URL() + "/resource/x"
	proof := func(method, target, nonce string) api.DPoPResponse {
		t.Helper()
		b, _ := json.Marshal(api.DPoPRequest{Method: method, URL: target, Nonce: nonce})
		code, body := as(reader, "cc", string(b))
		if code != 200 {
			t.Fatalf("proof: %d %s", code, body)
		}
		var r api.DPoPResponse
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var proofs []string
	call := func(method, target string, r api.DPoPResponse) *http.Response {
		t.Helper()
		proofs = append(proofs, r.DPoP)
		req, _ := http.NewRequest(method, target, nil)
		req.Header.Set("Authorization", "DPoP "+r.AccessToken)
		req.Header.Set("DPoP", r.DPoP)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// The resource server asks for its nonce first.
	first := proof(http.MethodGet, rs, "")
	if first.TokenType != "DPoP" || first.AccessToken != h.stored("cc").AccessToken || first.ExpiresIn <= 0 {
		t.Fatalf("answer: type %q expires_in %d", first.TokenType, first.ExpiresIn)
	}
	resp := call(http.MethodGet, rs, first)
	nonce := resp.Header.Get("DPoP-Nonce")
	if resp.StatusCode != http.StatusUnauthorized || nonce == "" {
		t.Fatalf("resource without nonce: %d, nonce %q", resp.StatusCode, nonce)
	}
	ok := proof(http.MethodGet, rs+"?q=1#f", nonce)
	if resp := call(http.MethodGet, rs+"?q=1", ok); resp.StatusCode != 200 {
		t.Fatalf("resource with a fresh proof: %d", resp.StatusCode)
	}
	if resp := call(http.MethodGet, rs, ok); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("replayed proof accepted: %d", resp.StatusCode)
	}
	other := proof(http.MethodGet, rs, nonce)
	if resp := call(http.MethodGet, h.prov.URL()+"/resource/y", other); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("re-targeted proof accepted: %d", resp.StatusCode)
	}
	post := proof(http.MethodGet, rs, nonce)
	if resp := call(http.MethodPost, rs, post); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("proof for GET accepted for POST: %d", resp.StatusCode)
	}

	// Who may ask, and for what.
	good := `{"method":"GET","url":"` + rs + `"}`
	if code, _ := as(stranger, "cc", good); code != http.StatusForbidden {
		t.Fatalf("non-reader: %d", code)
	}
	if code, body := h.post("/v1/tokens/plain/dpop", good); code != http.StatusBadRequest || !strings.Contains(string(body), api.CodeDPoPNotEnabled) {
		t.Fatalf("grant without dpop: %d %s", code, body)
	}
	for _, bad := range []string{
		``, `{`, `[]`, `{"method":"GET"}`, `{"url":"` + rs + `"}`,
		`{"method":"GE T","url":"` + rs + `"}`, `{"method":"GET\r\n","url":"` + rs + `"}`,
		`{"method":"GET","url":"/relative"}`, `{"method":"GET","url":"ftp://h/x"}`, `{"method":"GET","url":"https:///x"}`,
		`{"method":"GET","url":"https://h/` + strings.Repeat("a", 9000) + `"}`,
		`{"method":"GET","url":"` + rs + `","nonce":"a\u0007b"}`, `{"method":"GET","url":"` + rs + `","nonce":"a b"}`,
		`{"method":"GET","url":"` + rs + `","extra":1}`, good + ` {}`,
	} {
		if code, body := h.post("/v1/tokens/cc/dpop", bad); code != http.StatusBadRequest || !strings.Contains(string(body), api.CodeInvalidRequest) {
			t.Errorf("body %.60q: %d %s", bad, code, body)
		}
	}
	st := h.stored("cc")
	h.logMustNotContain(append(append(h.prov.Issued(), proofs...), dpopKeyD(t, st.DPoPKey))...)
}

// A proof of a token that is no longer valid waits for its refresh, as a
// fetch does.
func TestDPoPProofOfExpiredTokenRefreshesFirst(t *testing.T) {
	h := newHarness(t, harnessOpts{config: dpopCC})
	before := h.stored("cc")
	h.prov.SetLatency(0)
	h.clock.Advance(11 * time.Minute) // no tick: the token just expired
	code, body := h.post("/v1/tokens/cc/dpop", `{"method":"GET","url":"https://api.example/x"}`)
	if code != 200 {
		t.Fatalf("proof: %d %s", code, body)
	}
	var r api.DPoPResponse
	_ = json.Unmarshal(body, &r)
	if r.AccessToken == before.AccessToken || !h.prov.Valid(r.AccessToken) {
		t.Fatal("the proof came with the expired token")
	}
}

// A private_key_jwt client registers its public key and then
// authenticates with assertions; a client with a dpop grant asks for
// DPoP-bound tokens; the new grant types are registered.
func TestRegistrationOfKeyAndDPoPClients(t *testing.T) {
	k := ecSigningKey(t)
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{AllowRegistration: true, AssertionIssuers: []oauthtest.AssertionIssuer{{Issuer: "svc@example", JWKS: publicJWKS(t, k)}}},
		config: func(c *config.Config) {
			c.Clients["dyn"] = config.Client{Provider: "test", AuthMethod: oauthtest.AuthMethodPrivateKeyJWT, Key: &k}
			c.Grants = map[string]config.Grant{
				"dyn": {Client: "dyn", Type: config.GrantClientCredentials, DPoP: true},
				"sa": {Client: "dyn", Type: config.GrantJWTBearer,
					Assertion: &config.Assertion{Issuer: "svc@example", Key: k}},
			}
		}})
	got := h.token("dyn")
	if info, _ := h.prov.TokenInfo(got.AccessToken); got.TokenType != "DPoP" || info.JKT == "" || info.ClientID == "" {
		t.Fatalf("token of the registered client: %+v %+v", got, info)
	}
	if s := h.prov.Stats(); s.Registrations != 1 || s.ClientAuthFailures != 0 {
		t.Fatalf("provider stats: %+v", s)
	}
	h.d.mu.RLock()
	c := h.d.clients["dyn"]
	h.d.mu.RUnlock()
	prov, err := h.d.providerFor(context.Background(), h.d.grant("dyn"))
	if err != nil {
		t.Fatal(err)
	}
	req := h.d.registrationRequest(c)
	if err := registrationKey(c, prov.Endpoints, &req); err != nil {
		t.Fatal(err)
	}
	if !req.DPoPBound || len(req.JWKS) == 0 || req.SigningAlg != "ES256" || req.AuthMethod != oauth.AuthPrivateKeyJWT {
		t.Fatalf("registration request: %+v", req)
	}
	if !slices.Contains(req.GrantTypes, "urn:ietf:params:oauth:grant-type:jwt-bearer") || slices.Contains(req.GrantTypes, "refresh_token") {
		t.Fatalf("grant types: %v", req.GrantTypes)
	}
	if bytes.Contains(req.JWKS, []byte(`"d"`)) {
		t.Fatal("the registration carries the private key")
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// The subject's id token and an actor grant's access token.
func TestTokenExchangeIDTokenAndActor(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{AutoApprove: true}, config: func(c *config.Config) {
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

// A server that asks for a new nonce on every try: each try sends the
// request once more with the nonce given, no more, and the grant shows
// why it has no token while the backoff spaces the tries.
func TestDPoPNonceLoopIsBounded(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: dpopCC})
	h.prov.SetFault(oauthtest.Fault{Kind: oauthtest.FaultDPoPNonceLoop})
	h.start()
	h.advance(2 * time.Minute)
	st := h.status("cc")
	if st.State == api.StateValid || !strings.Contains(st.LastError, "nonce loop") {
		t.Fatalf("status: %+v", st)
	}
	tries, requests := st.Failures, h.prov.Stats().TokenRequests
	if tries == 0 || requests != 2*tries {
		t.Fatalf("%d token requests for %d tries; want two per try", requests, tries)
	}
	if code, _ := h.get("/v1/tokens/cc"); code == 200 {
		t.Fatal("a token was served")
	}
}

// A private_key_jwt client whose key the provider does not know is a
// credentials error, not retried.
func TestWrongClientKeyIsCredentialsError(t *testing.T) {
	known, wrong := ecSigningKey(t), ecSigningKey(t)
	h := newHarness(t, harnessOpts{prov: oauthtest.Options{Clients: []oauthtest.Client{{ID: "kc", AuthMethod: oauthtest.AuthMethodPrivateKeyJWT, JWKS: publicJWKS(t, known)}}},
		config: func(c *config.Config) {
			c.Clients["kc"] = config.Client{Provider: "test", ClientID: "kc", AuthMethod: oauthtest.AuthMethodPrivateKeyJWT, Key: &wrong}
			c.Grants = map[string]config.Grant{"svc": {Client: "kc", Type: config.GrantClientCredentials}}
		}})
	// The first obtain runs at start; on a loaded machine it may still be
	// on its way when the harness hands over.
	waitFor(t, "credentials error", func() bool { return h.status("svc").State == api.StateCredentialsError })
	h.advance(time.Minute)
	if n := h.prov.Stats().ClientAuthFailures; n != 1 {
		t.Fatalf("%d client authentication failures, want 1", n)
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// A client certificate that expired (config refuses one at load; this one
// expired while tokend ran: before t0, the provider's clock) is the
// client's credentials failing.
func TestExpiredClientCertificate(t *testing.T) {
	for _, m := range []string{oauthtest.AuthMethodTLS, oauthtest.AuthMethodSelfSignedTLS} {
		t.Run(m, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true, noRun: true})
			oc := oauthtest.Client{ID: "mc", AuthMethod: m}
			var cert, err = h.prov.IssueClientCert(pkix.Name{CommonName: "mtls-app"}, t0.Add(-time.Minute))
			if m == oauthtest.AuthMethodSelfSignedTLS {
				cert, err = h.prov.SelfSignedClientCert("mtls-app", t0.Add(-time.Minute))
				oc.JWKS = oauthtest.CertJWKS(cert)
			} else {
				oc.TLSSubjectDN = "CN=mtls-app"
			}
			if err != nil {
				t.Fatal(err)
			}
			h.prov.AddClient(oc)
			h.cfg.Clients["mc"] = config.Client{Provider: "test", ClientID: "mc", AuthMethod: m, TLSCert: &cert}
			h.cfg.Grants = map[string]config.Grant{"svc": {Client: "mc", Type: config.GrantClientCredentials}}
			h.start()
			if st := h.status("svc"); st.State != api.StateCredentialsError {
				t.Fatalf("status: %+v", st)
			}
		})
	}
}

// A subject grant whose client credentials fail hands that state on.
func TestTokenExchangeTakesSubjectsPermanentState(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{
			"robot": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}},
			"down":  {Client: "app", Type: config.GrantTokenExchange, SubjectGrant: "robot", Scopes: []string{"read"}},
		}
	}})
	h.prov.SetFault(oauthtest.Fault{Kind: oauthtest.FaultInvalidClient, GrantTypes: []string{"client_credentials"}})
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

// dpop turned on by a reload: the Bearer token is no longer handed out;
// the next one is DPoP-bound.
func TestReloadTurningDPoPOn(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	bearer := h.token("cc")
	if bearer.TokenType != "Bearer" {
		t.Fatalf("token type %q", bearer.TokenType)
	}
	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{"cc": h.cfg.Grants["cc"]}
	dpopCC(&cfg)
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	got := h.token("cc")
	if got.TokenType != "DPoP" || got.AccessToken == bearer.AccessToken {
		t.Fatalf("after dpop was turned on: %+v", got)
	}
	if info, _ := h.prov.TokenInfo(got.AccessToken); info.JKT == "" || info.JKT != thumbprint(t, h.stored("cc").DPoPKey) {
		t.Fatalf("token info: %+v", info)
	}
}
