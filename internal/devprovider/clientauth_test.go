package devprovider

import (
	"crypto"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
)

func TestPrivateKeyJWT(t *testing.T) {
	clk := newClock()
	ec, ec384, ed, rk := testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P384()), testutil.Ed25519Key(t), testutil.RSAKey(t)
	other := testutil.ECKey(t, elliptic.P256())
	const id = "pkjwt-app"
	s := mustServer(t, Options{Now: clk.Now, Clients: []Client{
		{ID: id, AuthMethod: AuthMethodPrivateKeyJWT, JWKS: jwksOf(t, ec, ec384, ed, rk)},
		{ID: "es256-only", AuthMethod: AuthMethodPrivateKeyJWT, JWKS: jwksOf(t, ec, ec384), SigningAlg: "ES256"},
	}})
	tokenURL := s.URL() + "/token"
	good := jwtClaims(id, id, tokenURL, clk.Now())
	sign := func(key crypto.Signer, alg jose.SignatureAlgorithm, kid string, c map[string]any) string {
		return testutil.SignJWT(t, key, alg, kid, false, nil, c)
	}

	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  jose.SignatureAlgorithm
		kid  string
	}{
		{"ES256 with kid", ec, jose.ES256, "k0"},
		{"ES256 without kid", ec, jose.ES256, ""},
		{"ES384", ec384, jose.ES384, "k1"},
		{"EdDSA", ed, jose.EdDSA, "k2"},
		{"RS256", rk, jose.RS256, "k3"},
		{"PS256", rk, jose.PS256, ""},
	} {
		r := post(t, s, "/token", auth{}, assertionForm(sign(tc.key, tc.alg, tc.kid, with(good, "jti", tc.name))))
		if r.status != http.StatusOK {
			t.Errorf("%s: status %d %s, want 200", tc.name, r.status, r.raw)
		}
	}
	// aud may be the issuer; client_id may be sent too.
	form := assertionForm(sign(ec, jose.ES256, "", with(good, "jti", "issuer-aud", "aud", s.URL())))
	form.Set("client_id", id)
	wantOK(t, post(t, s, "/token", auth{}, form))

	replayed := sign(ec, jose.ES256, "", with(good, "jti", "once"))
	wantOK(t, post(t, s, "/token", auth{}, assertionForm(replayed)))
	before := s.Stats()
	wantError(t, post(t, s, "/token", auth{}, assertionForm(replayed)), http.StatusUnauthorized, "invalid_client")
	if st := s.Stats(); st.AssertionReplays != before.AssertionReplays+1 || st.AssertionFailures != before.AssertionFailures+1 {
		t.Errorf("replay: stats %+v then %+v", before, st)
	}

	hdr := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT"} }
	bad := []struct{ name, assertion string }{
		{"wrong key", sign(other, jose.ES256, "", good)},
		{"wrong key named by a kid", sign(other, jose.ES256, "k0", good)},
		{"alg none", rawJWT(t, nil, hdr("none"), good)},
		{"alg none with signature", rawJWT(t, ec, hdr("none"), good)},
		{"HS256 keyed with the public key", testutil.SignJWT(t, publicPEM(t, ec), jose.HS256, "", false, nil, good)},
		{"alg header lies", rawJWT(t, ec, hdr("ES384"), good)},
		{"wrong aud", sign(ec, jose.ES256, "", with(good, "aud", "https://elsewhere.example/token"))},
		{"no aud", sign(ec, jose.ES256, "", with(good, "aud", nil))},
		{"expired", sign(ec, jose.ES256, "", with(good, "exp", clk.Now().Add(-time.Second).Unix()))},
		{"no exp", sign(ec, jose.ES256, "", with(good, "exp", nil))},
		{"iat in the future", sign(ec, jose.ES256, "", with(good, "iat", clk.Now().Add(time.Hour).Unix()))},
		{"nbf in the future", sign(ec, jose.ES256, "", with(good, "nbf", clk.Now().Add(time.Hour).Unix()))},
		{"no jti", sign(ec, jose.ES256, "", with(good, "jti", nil))},
		{"sub is not the client", sign(ec, jose.ES256, "", with(good, "sub", "someone"))},
		{"alg not the client's signing alg", sign(ec384, jose.ES384, "k1", with(good, "iss", "es256-only", "sub", "es256-only"))},
		{"not a JWT", "not.a.jwt"},
	}
	for _, tc := range bad {
		r := post(t, s, "/token", auth{}, assertionForm(tc.assertion))
		if r.status != http.StatusUnauthorized || r.str("error") != "invalid_client" {
			t.Errorf("%s: status %d %s, want 401 invalid_client", tc.name, r.status, r.raw)
		} else if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: no WWW-Authenticate", tc.name)
		}
	}
	// The same assertion is good for the client whose signing alg it uses.
	wantOK(t, post(t, s, "/token", auth{}, assertionForm(sign(ec, jose.ES256, "", with(good, "iss", "es256-only", "sub", "es256-only")))))

	form = assertionForm(sign(ec, jose.ES256, "", with(good, "jti", "wrong-type")))
	form.Set("client_assertion_type", "urn:example:other")
	wantError(t, post(t, s, "/token", auth{}, form), http.StatusUnauthorized, "invalid_client")
	form = assertionForm(sign(ec, jose.ES256, "", with(good, "jti", "two-methods")))
	form.Set("client_secret", "x")
	wantError(t, post(t, s, "/token", auth{}, form), http.StatusBadRequest, "invalid_request")
	// A private_key_jwt client cannot use a secret or nothing at all.
	wantError(t, post(t, s, "/token", auth{AuthMethodNone, id, ""}, url.Values{"grant_type": {"client_credentials"}}), http.StatusUnauthorized, "invalid_client")

	// Revocation authenticates the same way.
	tok := post(t, s, "/token", auth{}, assertionForm(sign(ec, jose.ES256, "", with(good, "jti", "r1")))).str("access_token")
	rev := assertionForm(sign(ec, jose.ES256, "", with(good, "jti", "r2")))
	rev.Del("grant_type")
	rev.Set("token", tok)
	if r := post(t, s, "/revoke", auth{}, rev); r.status != http.StatusOK || s.Valid(tok) {
		t.Fatalf("revoke: %d %s, valid %v", r.status, r.raw, s.Valid(tok))
	}

	// The replay window ends with exp, as does the assertion.
	if st := s.Stats(); st.AssertionFailures < len(bad) || st.ClientAuthFailures < len(bad) {
		t.Errorf("stats %+v", st)
	}
	if !slices.Contains(s.Issued(), replayed) {
		t.Errorf("received assertions are not in Issued")
	}
}

func TestClientSecretJWT(t *testing.T) {
	clk := newClock()
	const id, secret = "hmac-app", "a-secret-long-enough-for-HS512-which-wants-at-least-sixty-four-bytes-of-key"
	s := mustServer(t, Options{Now: clk.Now, Clients: []Client{{ID: id, Secret: secret, AuthMethod: AuthMethodSecretJWT}}}, secret)
	good := jwtClaims(id, id, s.URL()+"/token", clk.Now())
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512} {
		wantOK(t, post(t, s, "/token", auth{}, assertionForm(testutil.SignJWT(t, []byte(secret), alg, "", false, nil, with(good, "jti", string(alg))))))
	}
	for _, tc := range []struct{ name, assertion string }{
		{"wrong secret", testutil.SignJWT(t, []byte(secret+"x"), jose.HS256, "", false, nil, good)},
		{"asymmetric alg", testutil.SignJWT(t, testutil.ECKey(t, elliptic.P256()), jose.ES256, "", false, nil, good)},
		{"alg none", rawJWT(t, nil, map[string]any{"alg": "none"}, good)},
		{"expired", testutil.SignJWT(t, []byte(secret), jose.HS256, "", false, nil, with(good, "exp", clk.Now().Unix()))},
	} {
		wantErrorNamed(t, tc.name, post(t, s, "/token", auth{}, assertionForm(tc.assertion)), http.StatusUnauthorized, "invalid_client")
	}
	// The secret itself is not accepted for a client_secret_jwt client.
	wantError(t, post(t, s, "/token", auth{AuthMethodBasic, id, secret}, url.Values{"grant_type": {"client_credentials"}}), http.StatusUnauthorized, "invalid_client")
}

func wantErrorNamed(t testing.TB, name string, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Errorf("%s: status %d body %s, want %d %s", name, r.status, r.raw, status, code)
	}
}

func TestClientSecretJWTKeySizeAndRegistration(t *testing.T) {
	clk := newClock()
	s := mustServer(t, Options{Now: clk.Now, AllowRegistration: true, Clients: []Client{{ID: "short", Secret: "only-20-bytes-secret", AuthMethod: AuthMethodSecretJWT}}})
	// go-jose will not even sign with it: build the HMAC by hand.
	c := jwtClaims("short", "short", s.URL()+"/token", clk.Now())
	h, _ := json.Marshal(map[string]any{"alg": "HS256"})
	p, _ := json.Marshal(c)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	mac := hmac.New(sha256.New, []byte("only-20-bytes-secret"))
	mac.Write([]byte(input))
	r := post(t, s, "/token", auth{}, assertionForm(input+"."+b64.EncodeToString(mac.Sum(nil))))
	wantError(t, r, http.StatusUnauthorized, "invalid_client")
	if !strings.Contains(r.str("error_description"), "shorter") {
		t.Errorf("description %q does not say why", r.str("error_description"))
	}

	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/register", strings.NewReader(`{"token_endpoint_auth_method":"client_secret_jwt","grant_types":["client_credentials"]}`))
	req.Header.Set("Content-Type", "application/json")
	reg := do(t, req)
	id, secret := reg.str("client_id"), reg.str("client_secret")
	wantOK(t, post(t, s, "/token", auth{}, assertionForm(testutil.SignJWT(t, []byte(secret), jose.HS512, "", false, nil, jwtClaims(id, id, s.URL()+"/token", clk.Now())))))
}

func TestJWKSHelperMatchesAnyKid(t *testing.T) {
	clk := newClock()
	key := testutil.ECKey(t, elliptic.P256())
	s := mustServer(t, Options{Now: clk.Now, Clients: []Client{{ID: "app", AuthMethod: AuthMethodPrivateKeyJWT, JWKS: JWKS(key.Public(), testutil.RSAKey(t).Public())}}})
	wantOK(t, post(t, s, "/token", auth{}, assertionForm(testutil.SignJWT(t, key, jose.ES256, "whatever-kid", false, nil, jwtClaims("app", "app", s.URL()+"/token", clk.Now())))))
	defer func() {
		if recover() == nil {
			t.Errorf("JWKS of a private key did not panic")
		}
	}()
	JWKS(key)
}
