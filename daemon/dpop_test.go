package daemon

// DPoP-bound tokens (RFC 9449) against the in-process provider: the key
// that follows authorizations, nonces, a provider that ignores DPoP, the
// proof endpoint, and turning dpop on by reload. Each test also scans the
// log for every proof and token and for the DPoP keys.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

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

func dpopUserGrant(c *config.Config) {
	userGrant(c)
	g := c.Grants["user"]
	g.DPoP = true
	c.Grants["user"] = g
	c.Store.Key = bytes.Repeat([]byte{7}, 32)
}

func TestDPoPKeyFollowsAuthorizations(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true, AutoApprove: true}, config: dpopUserGrant})
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
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultDPoPDowngrade})
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
	h := newHarness(t, harnessOpts{prov: devprovider.Options{DPoPNonce: true}, config: dpopCC})
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
	h := newHarness(t, harnessOpts{prov: devprovider.Options{ResourceNonce: true}, noRun: true, config: func(c *config.Config) {
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
		handler.ServeHTTP(w, r.WithContext(withPeer(context.Background(), p)))
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

// A server that asks for a new nonce on every try: each try sends the
// request once more with the nonce given, no more, and the grant shows
// why it has no token while the backoff spaces the tries.
func TestDPoPNonceLoopIsBounded(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true, config: dpopCC})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultDPoPNonceLoop})
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
