package e2e

// Self-tests of the oidc-provider harness (op_test.go): its private_key_jwt,
// client_secret_jwt, mTLS and DPoP options and the resource server, driven
// by hand-made assertions and proofs, no tokend. A failing TestClientAuth* or
// TestDPoP* then points at tokend.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// tokenCall posts form to endpoint with the DPoP proof (when not empty) and
// returns the status, the decoded answer and the DPoP-Nonce header.
func tokenCall(t testing.TB, c *http.Client, endpoint string, form url.Values, proof string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(b, &m)
	return resp.StatusCode, m, resp.Header.Get("DPoP-Nonce")
}

func TestOPAcceptsPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key := newKey(t, "EC")
	wrong := newKey(t, "EC")
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{{
		"client_id": "pk", "grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
		"token_endpoint_auth_method": "private_key_jwt", "jwks": publicJWKS(t, key.Public(), "k1", "ES256"),
	}, {
		"client_id": "hs", "client_secret": "hs-secret-0123456789abcdef0123456789abcdef", "grant_types": []string{"client_credentials"},
		"response_types": []string{}, "redirect_uris": []string{}, "token_endpoint_auth_method": "client_secret_jwt",
	}}})
	assertion := func(k any, alg jose.SignatureAlgorithm, id, aud string) string {
		now := time.Now().Unix()
		return testutil.SignJWT(t, k, alg, "", false, map[jose.HeaderKey]any{"typ": "JWT"}, map[string]any{"iss": id, "sub": id, "aud": aud, "jti": randomID(), "iat": now, "exp": now + 60})
	}
	form := func(id, a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "scope": {"api:read"}, "client_id": {id},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	}
	for _, aud := range []string{op.Issuer + "/token", op.Issuer} {
		if code, m, _ := tokenCall(t, op.Client(), op.Issuer+"/token", form("pk", assertion(key, jose.ES256, "pk", aud)), ""); code != 200 || m["token_type"] != "Bearer" {
			t.Errorf("private_key_jwt with aud %s: %d %v", aud, code, m)
		}
	}
	if code, m, _ := tokenCall(t, op.Client(), op.Issuer+"/token", form("pk", assertion(wrong, jose.ES256, "pk", op.Issuer)), ""); code != 401 || m["error"] != "invalid_client" {
		t.Errorf("assertion by a wrong key: %d %v, want 401 invalid_client", code, m)
	}
	if code, m, _ := tokenCall(t, op.Client(), op.Issuer+"/token", form("hs", assertion([]byte("hs-secret-0123456789abcdef0123456789abcdef"), jose.HS256, "hs", op.Issuer+"/token")), ""); code != 200 {
		t.Errorf("client_secret_jwt: %d %v", code, m)
	}
	s := op.Stats()
	if s.TokenSuccess["client_credentials"] != 3 || len(s.ClientAuthErrors) != 1 {
		t.Errorf("stats = %+v, want 3 successes and one client authentication error", s)
	}
	if seen := op.Seen(); len(seen.ClientAssertions) != 4 {
		t.Errorf("seen %d client assertions, want 4", len(seen.ClientAssertions))
	}
	if d := op.Discovery(); !strings.Contains(strings.Join(anyStrings(d["token_endpoint_auth_methods_supported"]), " "), "private_key_jwt") {
		t.Errorf("discovery token_endpoint_auth_methods_supported = %v", d["token_endpoint_auth_methods_supported"])
	}
}

func anyStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestOPAcceptsClientCertificates: https with a test CA; the issuer's listener asks for no
// certificate and the advertised alias does; self_signed_tls_client_auth
// matches the registered certificate, tls_client_auth the CA and subject.
func TestOPAcceptsClientCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newPKI(t, dir, "server-ca")
	srvCert, srvKey := ca.serverCert(t, "op")
	clientCA := newPKI(t, dir, "client-ca")
	ssCertFile, ssKeyFile, ssCert := selfSigned(dir).clientCert(t, "ss", "self-signed-e2e", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	caCertFile, caKeyFile, _ := clientCA.clientCert(t, "pki", "tokend-e2e", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	op := oidcop.Start(t, oidcop.Config{
		Clients: []map[string]any{{
			"client_id": "ss", "grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
			"token_endpoint_auth_method": "self_signed_tls_client_auth", "jwks": publicJWKS(t, ssCert.PublicKey, "", "", ssCert),
		}, {
			"client_id": "pki", "grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
			"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "CN=tokend-e2e",
		}},
		TLS:     &oidcop.TLS{Cert: srvCert, Key: srvKey, ClientCA: clientCA.CAFile},
		MTLS:    &oidcop.MTLS{TLSClientAuth: true, SelfSignedTLSClientAuth: true, Alias: true},
		RootCAs: ca.Pool,
	})
	if !strings.HasPrefix(op.Issuer, "https://127.0.0.1:") || !strings.HasPrefix(op.MTLSAlias, "https://127.0.0.1:") {
		t.Fatalf("issuer %s, alias %s", op.Issuer, op.MTLSAlias)
	}
	aliases, _ := op.Discovery()["mtls_endpoint_aliases"].(map[string]any)
	if aliases["token_endpoint"] != op.MTLSAlias+"/token" {
		t.Fatalf("mtls_endpoint_aliases = %v", aliases)
	}
	withCert := func(certFile, keyFile string) *http.Client {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{c}}}}
	}
	cc := func(id string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}
	}
	for _, tc := range []struct {
		id, certFile, keyFile string
	}{{"ss", ssCertFile, ssKeyFile}, {"pki", caCertFile, caKeyFile}} {
		c := withCert(tc.certFile, tc.keyFile)
		if code, m, _ := tokenCall(t, c, op.MTLSAlias+"/token", cc(tc.id), ""); code != 200 {
			t.Errorf("%s at the alias: %d %v", tc.id, code, m)
		}
		// The issuer's own token endpoint asks no certificate: refused.
		if code, m, _ := tokenCall(t, c, op.Issuer+"/token", cc(tc.id), ""); code != 401 {
			t.Errorf("%s at the issuer's endpoint: %d %v, want 401", tc.id, code, m)
		}
	}
	// The other client's certificate: refused for each.
	if code, _, _ := tokenCall(t, withCert(caCertFile, caKeyFile), op.MTLSAlias+"/token", cc("ss"), ""); code != 401 {
		t.Errorf("ss with pki's certificate: %d, want 401", code)
	}
	if code, _, _ := tokenCall(t, withCert(ssCertFile, ssKeyFile), op.MTLSAlias+"/token", cc("pki"), ""); code != 401 {
		t.Errorf("pki with a self-signed certificate: %d, want 401", code)
	}
	if s := op.Stats(); s.AliasRequests < 4 || s.TokenSuccess["client_credentials"] != 2 {
		t.Errorf("stats = %+v", s)
	}
}

// TestOPAndResourceServerCheckDPoP: a proof gets a DPoP-bound token (introspection shows
// cnf.jkt); with dpopNonce the first proof is answered use_dpop_nonce with a
// nonce; the resource server accepts a proof once and refuses a replay, a
// re-targeted proof and another key; with dpop off a Bearer token comes back.
func TestOPAndResourceServerCheckDPoP(t *testing.T) {
	t.Parallel()
	client := map[string]any{"client_id": "d", "client_secret": "d-secret-0123456789", "grant_types": []string{"client_credentials"},
		"response_types": []string{}, "redirect_uris": []string{}, "token_endpoint_auth_method": "client_secret_post"}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	proof := func(k *ecdsa.PrivateKey, htm, htu, nonce, token string) string {
		c := map[string]any{"htm": htm, "htu": htu, "iat": time.Now().Unix(), "jti": randomID()}
		if nonce != "" {
			c["nonce"] = nonce
		}
		if token != "" {
			sum := sha256.Sum256([]byte(token))
			c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		return testutil.SignJWT(t, k, jose.ES256, "", true, map[jose.HeaderKey]any{"typ": "dpop+jwt"}, c)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"d"}, "client_secret": {"d-secret-0123456789"}}
	for _, nonce := range []bool{false, true} {
		op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{client}, DPoPNonce: nonce})
		code, m, n := tokenCall(t, op.Client(), op.Issuer+"/token", form, proof(key, "POST", op.Issuer+"/token", "", ""))
		if nonce {
			if code != 400 || m["error"] != "use_dpop_nonce" || n == "" {
				t.Fatalf("nonce required: first answer %d %v nonce %q", code, m, n)
			}
			code, m, _ = tokenCall(t, op.Client(), op.Issuer+"/token", form, proof(key, "POST", op.Issuer+"/token", n, ""))
		}
		if code != 200 || m["token_type"] != "DPoP" {
			t.Fatalf("nonce %t: %d %v, want a DPoP token", nonce, code, m)
		}
		tok, _ := m["access_token"].(string)
		jwk := jose.JSONWebKey{Key: key.Public()}
		tp, _ := jwk.Thumbprint(crypto.SHA256)
		if in := op.Introspect(tok); !in.Active || in.TokenType != "DPoP" || in.Cnf.JKT != base64.RawURLEncoding.EncodeToString(tp) {
			t.Errorf("introspection = %+v, want DPoP bound to the key", in)
		}
		if s := op.Stats(); s.DPoPProofs < 1 || s.DPoPTokens != 1 || (nonce && s.UseDPoPNonce != 1) {
			t.Errorf("stats = %+v", s)
		}
		rs := newResourceServer(t, op)
		p := proof(key, "GET", rs.URL+"/x", "", tok)
		if code, body := rs.call(t, "GET", rs.URL+"/x?q=1", "DPoP "+tok, p); code != 200 {
			t.Errorf("a valid proof refused: %d %s", code, body)
		}
		if code, _ := rs.call(t, "GET", rs.URL+"/x", "DPoP "+tok, p); code != 401 {
			t.Errorf("a replayed proof accepted")
		}
		for _, tc := range []struct{ name, method, target, proof string }{
			{"other URL", "GET", rs.URL + "/y", proof(key, "GET", rs.URL+"/x", "", tok)},
			{"other method", "POST", rs.URL + "/x", proof(key, "GET", rs.URL+"/x", "", tok)},
			{"other key", "GET", rs.URL + "/x", proof(other, "GET", rs.URL+"/x", "", tok)},
			{"no ath", "GET", rs.URL + "/x", proof(key, "GET", rs.URL+"/x", "", "")},
		} {
			if code, _ := rs.call(t, tc.method, tc.target, "DPoP "+tok, tc.proof); code != 401 {
				t.Errorf("%s: proof accepted", tc.name)
			}
		}
	}
	off := false
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{client}, DPoP: &off})
	if code, m, _ := tokenCall(t, op.Client(), op.Issuer+"/token", form, proof(key, "POST", op.Issuer+"/token", "", "")); code != 200 || m["token_type"] != "Bearer" {
		t.Errorf("dpop off: %d %v, want a Bearer token", code, m)
	}
}
