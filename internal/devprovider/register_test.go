package devprovider

import (
	"crypto/elliptic"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
)

func TestRegistrationOfKeysAndDPoP(t *testing.T) {
	clk := newClock()
	s := mustServer(t, Options{AllowRegistration: true, Now: clk.Now})
	register := func(body string) response {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return do(t, req)
	}
	key := testutil.ECKey(t, elliptic.P256())
	jwks := string(jwksOf(t, key))
	r := register(`{"token_endpoint_auth_method":"private_key_jwt","grant_types":["client_credentials"],"jwks":` + jwks +
		`,"token_endpoint_auth_signing_alg":"ES256","dpop_bound_access_tokens":true}`)
	if r.status != http.StatusCreated || r.str("client_secret") != "" || r.str("token_endpoint_auth_method") != AuthMethodPrivateKeyJWT ||
		r.str("token_endpoint_auth_signing_alg") != "ES256" || r.body["dpop_bound_access_tokens"] != true || r.body["jwks"] == nil {
		t.Fatalf("registration %d %s", r.status, r.raw)
	}
	id := r.str("client_id")
	form := assertionForm(testutil.SignJWT(t, key, jose.ES256, "k0", false, nil, jwtClaims(id, id, s.URL()+"/token", clk.Now())))
	wantError(t, post(t, s, "/token", auth{}, form), http.StatusBadRequest, "invalid_dpop_proof") // dpop_bound_access_tokens
	form = assertionForm(testutil.SignJWT(t, key, jose.ES256, "k0", false, nil, jwtClaims(id, id, s.URL()+"/token", clk.Now())))
	if r := postDPoP(t, s, auth{}, form, proof(t, key, "POST", s.URL()+"/token", clk.Now())); r.status != http.StatusOK || r.str("token_type") != "DPoP" {
		t.Fatalf("token: %d %s", r.status, r.raw)
	}

	r = register(`{"token_endpoint_auth_method":"client_secret_jwt","token_endpoint_auth_signing_alg":"HS256"}`)
	if r.status != http.StatusCreated || r.str("client_secret") == "" {
		t.Fatalf("client_secret_jwt registration %d %s", r.status, r.raw)
	}
	r = register(`{"token_endpoint_auth_method":"tls_client_auth","tls_client_auth_subject_dn":"CN=app"}`)
	if r.status != http.StatusCreated || r.str("client_secret") != "" || r.str("tls_client_auth_subject_dn") != "CN=app" {
		t.Fatalf("tls_client_auth registration %d %s", r.status, r.raw)
	}

	privJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key}}})
	for _, body := range []string{
		`{"token_endpoint_auth_method":"private_key_jwt"}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks":{"keys":[]}}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks":` + string(privJWKS) + `}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks":"nonsense"}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks_uri":"https://example/jwks"}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks":` + jwks + `,"token_endpoint_auth_signing_alg":"HS256"}`,
		`{"token_endpoint_auth_method":"private_key_jwt","jwks":` + jwks + `,"token_endpoint_auth_signing_alg":"none"}`,
		`{"token_endpoint_auth_method":"client_secret_jwt","token_endpoint_auth_signing_alg":"RS256"}`,
		`{"token_endpoint_auth_method":"self_signed_tls_client_auth"}`,
		`{"token_endpoint_auth_method":"tls_client_auth"}`,
		`{"token_endpoint_auth_method":"magic"}`,
	} {
		if r := register(body); r.status != http.StatusBadRequest || r.str("error") != "invalid_client_metadata" {
			t.Errorf("%s: %d %s, want 400 invalid_client_metadata", body, r.status, r.raw)
		}
	}
	if strings.Contains(string(privJWKS), `"d"`) == false {
		t.Fatal("test JWKS is not private")
	}
}

func TestDiscoveryAdvertisesKeyAuthAndDPoP(t *testing.T) {
	s := mustServer(t, Options{DPoPAlgs: []string{"ES256", "HS256", "EdDSA"}})
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/.well-known/oauth-authorization-server", nil)
	md := do(t, req)
	for key, want := range map[string][]string{
		"grant_types_supported":                            {GrantJWTBearer, GrantTokenExchange, GrantClientCredentials},
		"token_endpoint_auth_methods_supported":            {AuthMethodPrivateKeyJWT, AuthMethodSecretJWT, AuthMethodBasic},
		"token_endpoint_auth_signing_alg_values_supported": {"ES256", "RS256", "PS256", "EdDSA", "HS256"},
	} {
		got := anyStrings(md.body[key])
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%s = %v, lacks %s", key, got, w)
			}
		}
	}
	// Symmetric algs are never DPoP algs, even when asked for.
	if got := anyStrings(md.body["dpop_signing_alg_values_supported"]); !slices.Equal(got, []string{"ES256", "EdDSA"}) {
		t.Errorf("dpop_signing_alg_values_supported = %v", got)
	}
	if got := anyStrings(md.body["token_endpoint_auth_signing_alg_values_supported"]); slices.Contains(got, "none") {
		t.Errorf("none advertised")
	}
}
