package devprovider

import (
	"crypto/elliptic"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
)

func TestDPoPTokenEndpoint(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	o.RefreshForClientCredentials = true
	o.Rotate = true
	s := mustServer(t, o)
	key, other := testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P256())
	tokenURL := s.URL() + "/token"
	pf := func(extra ...any) string { return proof(t, key, "POST", tokenURL, clk.Now(), extra...) }

	// A public client: access and refresh tokens bound to the key.
	r := postDPoP(t, s, publicAuth, passwordForm, pf())
	wantOK(t, r)
	jkt := thumbprint(t, key)
	if r.str("token_type") != "DPoP" {
		t.Fatalf("token_type %q", r.str("token_type"))
	}
	if info, _ := s.TokenInfo(r.str("access_token")); info.JKT != jkt {
		t.Errorf("access token jkt %q, want %q", info.JKT, jkt)
	}
	if got, _ := s.RefreshJKT(r.str("refresh_token")); got != jkt {
		t.Errorf("refresh token jkt %q, want %q", got, jkt)
	}
	refresh := func(rt string, proofs ...string) response {
		return postDPoP(t, s, publicAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, proofs...)
	}
	wantErrorNamed(t, "refresh without proof", refresh(r.str("refresh_token")), http.StatusBadRequest, "invalid_dpop_proof")
	wantErrorNamed(t, "refresh by another key", refresh(r.str("refresh_token"), proof(t, other, "POST", tokenURL, clk.Now())), http.StatusBadRequest, "invalid_grant")
	r2 := refresh(r.str("refresh_token"), pf())
	wantOK(t, r2)
	if info, _ := s.TokenInfo(r2.str("access_token")); info.JKT != jkt || r2.str("token_type") != "DPoP" {
		t.Errorf("refreshed: %s %+v", r2.raw, info)
	}

	// A confidential client: the access token is bound, the refresh token
	// is not (RFC 9449 §5).
	cc := url.Values{"grant_type": {"client_credentials"}}
	r = postDPoP(t, s, basicAuth, cc, pf())
	wantOK(t, r)
	if got, _ := s.RefreshJKT(r.str("refresh_token")); got != "" || r.str("token_type") != "DPoP" {
		t.Errorf("confidential: refresh jkt %q, %s", got, r.raw)
	}
	// Without a proof: a Bearer token.
	r = postDPoP(t, s, basicAuth, cc)
	if wantOK(t, r); r.str("token_type") != "Bearer" {
		t.Errorf("no proof: %s", r.raw)
	}

	seen := pf()
	wantOK(t, postDPoP(t, s, basicAuth, cc, seen))
	before := s.Stats()
	wantErrorNamed(t, "replayed proof", postDPoP(t, s, basicAuth, cc, seen), http.StatusBadRequest, "invalid_dpop_proof")
	if st := s.Stats(); st.ProofReplays != before.ProofReplays+1 || st.ProofFailures != before.ProofFailures+1 {
		t.Errorf("replay stats %+v", st)
	}

	now := clk.Now()
	claims := map[string]any{"htm": "POST", "htu": tokenURL, "iat": now.Unix(), "jti": "x"}
	typ := map[jose.HeaderKey]any{jose.HeaderType: "dpop+jwt"}
	pub := jose.JSONWebKey{Key: key.Public()}
	priv := jose.JSONWebKey{Key: key}
	rk := testutil.RSAKey(t)
	for _, tc := range []struct{ name, proof string }{
		{"wrong htm", pf("htm", "GET")},
		{"wrong htu", pf("htu", s.URL()+"/revoke")},
		{"htu of another host", pf("htu", "https://evil.example/token")},
		{"iat too old", pf("iat", now.Add(-2*time.Minute).Unix())},
		{"iat in the future", pf("iat", now.Add(2*time.Minute).Unix())},
		{"no iat", pf("iat", nil)},
		{"no jti", pf("jti", nil)},
		{"wrong typ", testutil.SignJWT(t, key, jose.ES256, "", true, map[jose.HeaderKey]any{jose.HeaderType: "JWT"}, claims)},
		{"no typ", testutil.SignJWT(t, key, jose.ES256, "", true, nil, claims)},
		{"no jwk", testutil.SignJWT(t, key, jose.ES256, "", false, typ, claims)},
		{"alg none", rawJWT(t, nil, map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": pub}, claims)},
		{"HS256", testutil.SignJWT(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, "", false, map[jose.HeaderKey]any{jose.HeaderType: "dpop+jwt", "jwk": pub}, claims)},
		{"private jwk", rawJWT(t, key, map[string]any{"alg": "ES256", "typ": "dpop+jwt", "jwk": priv}, claims)},
		{"jwk of another key", rawJWT(t, key, map[string]any{"alg": "ES256", "typ": "dpop+jwt", "jwk": jose.JSONWebKey{Key: other.Public()}}, claims)},
		{"alg not allowed (RS512)", testutil.SignJWT(t, rk, jose.RS512, "", true, typ, claims)},
		{"garbage", "a.b.c"},
	} {
		wantErrorNamed(t, tc.name, postDPoP(t, s, basicAuth, cc, tc.proof), http.StatusBadRequest, "invalid_dpop_proof")
	}
	wantErrorNamed(t, "two proofs", postDPoP(t, s, basicAuth, cc, pf(), pf()), http.StatusBadRequest, "invalid_dpop_proof")
	// A query on htu is ignored (RFC 9449 §4.3), as is the case of the host.
	wantOK(t, postDPoP(t, s, basicAuth, cc, pf("htu", strings.Replace(tokenURL, "127.0.0.1", "127.0.0.1", 1)+"?x=1")))
	// An RSA proof, when allowed.
	wantOK(t, postDPoP(t, s, basicAuth, cc, testutil.SignJWT(t, rk, jose.PS256, "", true, typ, with(claims, "jti", "rsa"))))
}

func TestDPoPBoundClientAndDowngrade(t *testing.T) {
	clk := newClock()
	s := mustServer(t, Options{Now: clk.Now, Clients: []Client{{ID: "bound", Secret: "bound-secret", DPoPBound: true}}})
	key := testutil.ECKey(t, elliptic.P256())
	a := auth{AuthMethodBasic, "bound", "bound-secret"}
	cc := url.Values{"grant_type": {"client_credentials"}}
	wantError(t, postDPoP(t, s, a, cc), http.StatusBadRequest, "invalid_dpop_proof")
	wantOK(t, postDPoP(t, s, a, cc, proof(t, key, "POST", s.URL()+"/token", clk.Now())))

	// The downgrade fault: the proof is ignored, the token is Bearer.
	s.SetFault(Fault{Kind: FaultDPoPDowngrade})
	r := postDPoP(t, s, a, cc, proof(t, key, "POST", s.URL()+"/token", clk.Now()))
	wantOK(t, r)
	if info, _ := s.TokenInfo(r.str("access_token")); r.str("token_type") != "Bearer" || info.JKT != "" {
		t.Errorf("downgrade: %s %+v", r.raw, info)
	}
}

func TestDPoPNonce(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	o.DPoPNonce = true
	s := mustServer(t, o)
	key := testutil.ECKey(t, elliptic.P256())
	cc := url.Values{"grant_type": {"client_credentials"}}
	pf := func(extra ...any) string { return proof(t, key, "POST", s.URL()+"/token", clk.Now(), extra...) }

	r := postDPoP(t, s, basicAuth, cc, pf())
	wantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
	nonce := r.header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce")
	}
	r = postDPoP(t, s, basicAuth, cc, pf("nonce", nonce))
	wantOK(t, r)
	if r.header.Get("DPoP-Nonce") != nonce || r.str("token_type") != "DPoP" {
		t.Errorf("answer %v %s", r.header, r.raw)
	}
	wantErrorNamed(t, "wrong nonce", postDPoP(t, s, basicAuth, cc, pf("nonce", "n_made_up")), http.StatusBadRequest, "use_dpop_nonce")
	s.RotateDPoPNonce()
	wantOK(t, postDPoP(t, s, basicAuth, cc, pf("nonce", nonce))) // the previous one still works
	s.RotateDPoPNonce()
	r = postDPoP(t, s, basicAuth, cc, pf("nonce", nonce))
	wantErrorNamed(t, "stale nonce", r, http.StatusBadRequest, "use_dpop_nonce")
	if r.header.Get("DPoP-Nonce") == nonce {
		t.Errorf("the stale nonce was offered again")
	}
	if st := s.Stats(); st.NonceChallenges != 3 {
		t.Errorf("NonceChallenges = %d, want 3", st.NonceChallenges)
	}

	// A nonce loop: every answer asks for a new nonce.
	s.SetFault(Fault{Kind: FaultDPoPNonceLoop})
	nonce = r.header.Get("DPoP-Nonce")
	seen := map[string]bool{}
	for range 3 {
		r = postDPoP(t, s, basicAuth, cc, pf("nonce", nonce))
		wantError(t, r, http.StatusBadRequest, "use_dpop_nonce")
		nonce = r.header.Get("DPoP-Nonce")
		if nonce == "" || seen[nonce] {
			t.Fatalf("nonce loop: nonce %q again or missing", nonce)
		}
		seen[nonce] = true
	}
	s.ClearFault()
	wantOK(t, postDPoP(t, s, basicAuth, cc, pf("nonce", nonce)))
}

func TestDPoPResourceServer(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	s := mustServer(t, o)
	rs := httptest.NewServer(s.ResourceHandler())
	defer rs.Close()
	key, other := testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P256())
	cc := url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}}
	r := postDPoP(t, s, basicAuth, cc, proof(t, key, "POST", s.URL()+"/token", clk.Now()))
	wantOK(t, r)
	tok := r.str("access_token")
	bearer := post(t, s, "/token", basicAuth, cc).str("access_token")

	call := func(method, target, authz string, proofs ...string) response {
		t.Helper()
		req, _ := http.NewRequest(method, target, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		for _, p := range proofs {
			req.Header.Add("DPoP", p)
		}
		return do(t, req)
	}
	target := rs.URL + "/api/items"
	pf := func(method, htu string, extra ...any) string {
		return proof(t, key, method, htu, clk.Now(), append([]any{"ath", ath(tok)}, extra...)...)
	}

	good := pf("GET", target)
	r = call("GET", target+"?page=2", "DPoP "+tok, good)
	if r.status != http.StatusOK || r.str("token_type") != "DPoP" || r.str("sub") != basicClient.ID || r.str("scope") != "read" {
		t.Fatalf("good: %d %s", r.status, r.raw)
	}
	// On the server itself too.
	if r := call("POST", s.URL()+"/resource/x", "DPoP "+tok, pf("POST", s.URL()+"/resource/x")); r.status != http.StatusOK {
		t.Errorf("/resource/: %d %s", r.status, r.raw)
	}
	before := s.Stats()
	refused := func(name string, r response, code string) {
		t.Helper()
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: status %d %s, want 401", name, r.status, r.raw)
			return
		}
		if h := r.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="`+code+`"`) {
			t.Errorf("%s: WWW-Authenticate %q, want error %s", name, h, code)
		}
	}
	refused("replayed proof", call("GET", target, "DPoP "+tok, good), "invalid_dpop_proof")
	if st := s.Stats(); st.ProofReplays != before.ProofReplays+1 {
		t.Errorf("ProofReplays %d", st.ProofReplays)
	}
	if h := call("GET", target, "DPoP "+tok, good).header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "DPoP ") {
		t.Errorf("challenge scheme %q", h)
	}
	refused("re-targeted proof", call("GET", rs.URL+"/api/other", "DPoP "+tok, pf("GET", target)), "invalid_dpop_proof")
	refused("other method", call("DELETE", target, "DPoP "+tok, pf("GET", target)), "invalid_dpop_proof")
	refused("other host", call("GET", target, "DPoP "+tok, pf("GET", strings.Replace(target, "127.0.0.1", "localhost", 1))), "invalid_dpop_proof")
	refused("wrong ath", call("GET", target, "DPoP "+tok, pf("GET", target, "ath", ath(bearer))), "invalid_dpop_proof")
	refused("no ath", call("GET", target, "DPoP "+tok, pf("GET", target, "ath", nil)), "invalid_dpop_proof")
	refused("another key", call("GET", target, "DPoP "+tok, proof(t, other, "GET", target, clk.Now(), "ath", ath(tok))), "invalid_dpop_proof")
	refused("no proof", call("GET", target, "DPoP "+tok), "invalid_dpop_proof")
	refused("two proofs", call("GET", target, "DPoP "+tok, pf("GET", target), pf("GET", target)), "invalid_dpop_proof")
	refused("bound token as Bearer", call("GET", target, "Bearer "+tok), "invalid_token")
	refused("unbound token as DPoP", call("GET", target, "DPoP "+bearer, pf("GET", target, "ath", ath(bearer))), "invalid_token")
	refused("unknown token", call("GET", target, "DPoP at_nope", pf("GET", target, "ath", ath("at_nope"))), "invalid_token")
	if r := call("GET", target, ""); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "algs=") {
		t.Errorf("no credentials: %d %v", r.status, r.header)
	}
	if r := call("GET", target, "Bearer "+bearer); r.status != http.StatusOK || r.str("token_type") != "Bearer" {
		t.Errorf("Bearer: %d %s", r.status, r.raw)
	}
	clk.Advance(s.opts.AccessTTL)
	refused("expired token", call("GET", target, "DPoP "+tok, pf("GET", target)), "invalid_token")
	if st := s.Stats(); st.ResourceRefused < 12 || st.ResourceRequests < 15 {
		t.Errorf("stats %+v", st)
	}
	if !slices.Contains(s.Issued(), good) {
		t.Errorf("proofs are not in Issued")
	}
}

func TestDPoPResourceNonce(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	o.ResourceNonce = true
	s := mustServer(t, o)
	key := testutil.ECKey(t, elliptic.P256())
	r := postDPoP(t, s, basicAuth, url.Values{"grant_type": {"client_credentials"}}, proof(t, key, "POST", s.URL()+"/token", clk.Now()))
	wantOK(t, r)
	tok, target := r.str("access_token"), s.URL()+"/resource/a"
	call := func(p string) response {
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", p)
		return do(t, req)
	}
	r = call(proof(t, key, "GET", target, clk.Now(), "ath", ath(tok)))
	nonce := r.header.Get("DPoP-Nonce")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) || nonce == "" {
		t.Fatalf("no nonce: %d %v", r.status, r.header)
	}
	if r := call(proof(t, key, "GET", target, clk.Now(), "ath", ath(tok), "nonce", nonce)); r.status != http.StatusOK {
		t.Fatalf("with nonce: %d %s", r.status, r.raw)
	}
}

// TestReplayRace: the same proof and the same client assertion sent at
// once from many goroutines are each accepted exactly once.
func TestReplayRace(t *testing.T) {
	clk := newClock()
	key := testutil.ECKey(t, elliptic.P256())
	o := baseOptions()
	o.Now = clk.Now
	o.Clients = append(o.Clients, Client{ID: "pk", AuthMethod: AuthMethodPrivateKeyJWT, JWKS: JWKS(key.Public())})
	s := mustServer(t, o)
	p := proof(t, key, "POST", s.URL()+"/token", clk.Now())
	a := testutil.SignJWT(t, key, jose.ES256, "", false, nil, jwtClaims("pk", "pk", s.URL()+"/token", clk.Now()))
	for _, tc := range []struct {
		name string
		send func() (response, error)
	}{
		{"proof", func() (response, error) {
			req, _ := http.NewRequest(http.MethodPost, s.URL()+"/token", strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(basicClient.ID), url.QueryEscape(basicClient.Secret))
			req.Header.Set("DPoP", p)
			return tryDo(req)
		}},
		{"assertion", func() (response, error) { return tryPost(s, "/token", auth{}, assertionForm(a)) }},
	} {
		const n = 16
		oks := make(chan bool, n)
		for range n {
			go func() {
				r, err := tc.send()
				oks <- err == nil && r.status == http.StatusOK
			}()
		}
		got := 0
		for range n {
			if <-oks {
				got++
			}
		}
		if got != 1 {
			t.Errorf("%s sent %d times at once: %d accepted, want 1", tc.name, n, got)
		}
	}
}

// BenchmarkDPoPResource measures a proof's round through the resource
// handler (made by the client, verified, its jti remembered), without the
// network: what the test resource server adds to a benchmark of proofs.
func BenchmarkDPoPResource(b *testing.B) {
	s := New(baseOptions())
	defer s.Close()
	key := testutil.ECKey(b, elliptic.P256())
	r := postDPoP(b, s, basicAuth, url.Values{"grant_type": {"client_credentials"}}, proof(b, key, "POST", s.URL()+"/token", time.Now()))
	tok := r.str("access_token")
	h := s.ResourceHandler()
	target := "http://rs.example/items"
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "DPoP "+tok)
		req.Header.Set("DPoP", proof(b, key, "GET", target, time.Now(), "ath", ath(tok)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d %s", w.Code, w.Body)
		}
	}
}
