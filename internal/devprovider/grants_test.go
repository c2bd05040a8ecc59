package devprovider

import (
	"crypto/elliptic"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
)

const saIssuer = "robot@project.iam.example"

func TestJWTBearerGrant(t *testing.T) {
	clk := newClock()
	key, other := testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P256())
	rk := testutil.RSAKey(t)
	o := baseOptions()
	o.Now = clk.Now
	o.AssertionIssuers = []AssertionIssuer{
		{Issuer: saIssuer, JWKS: jwksOf(t, key, rk), Audiences: []string{"https://oauth2.example/token"}},
		{Issuer: "restricted", JWKS: jwksOf(t, key), Subjects: []string{"allowed"}},
		{Issuer: "google-style", JWKS: jwksOf(t, key), SubjectOptional: true},
	}
	s := mustServer(t, o)
	grant := func(assertion string) url.Values {
		return url.Values{"grant_type": {GrantJWTBearer}, "assertion": {assertion}, "scope": {"read write"}}
	}
	good := jwtClaims(saIssuer, "user@example", s.URL()+"/token", clk.Now())
	sign := func(c map[string]any) string { return testutil.SignJWT(t, key, jose.ES256, "", false, nil, c) }

	// Anonymous, as Google's token endpoint takes it.
	r := post(t, s, "/token", auth{}, grant(sign(good)))
	wantOK(t, r)
	if r.str("refresh_token") != "" || r.str("token_type") != "Bearer" || r.str("scope") != "read write" {
		t.Errorf("answer %s", r.raw)
	}
	info, ok := s.TokenInfo(r.str("access_token"))
	if !ok || info.Subject != "user@example" || info.GrantType != GrantJWTBearer || info.ClientID != "" || info.Scope != "read write" {
		t.Errorf("TokenInfo = %+v, %v", info, ok)
	}
	// With client authentication, an audience of the issuer's list, RS256.
	r = post(t, s, "/token", basicAuth, grant(testutil.SignJWT(t, rk, jose.RS256, "k1", false, nil, with(good, "jti", "2", "aud", "https://oauth2.example/token"))))
	wantOK(t, r)
	if info, _ := s.TokenInfo(r.str("access_token")); info.ClientID != basicClient.ID {
		t.Errorf("client %q", info.ClientID)
	}
	wantOK(t, post(t, s, "/token", auth{}, grant(sign(with(good, "jti", "3", "aud", s.URL())))))
	wantOK(t, post(t, s, "/token", auth{}, grant(sign(with(good, "jti", "4", "iss", "restricted", "sub", "allowed")))))
	r = post(t, s, "/token", auth{}, grant(sign(with(good, "jti", "5", "iss", "google-style", "sub", nil))))
	wantOK(t, r)
	if info, _ := s.TokenInfo(r.str("access_token")); info.Subject != "google-style" {
		t.Errorf("subject of a sub-less assertion: %q", info.Subject)
	}

	replayed := sign(with(good, "jti", "once"))
	wantOK(t, post(t, s, "/token", auth{}, grant(replayed)))
	before := s.Stats()
	r = post(t, s, "/token", auth{}, grant(replayed))
	wantError(t, r, http.StatusBadRequest, "invalid_grant")
	if st := s.Stats(); st.AssertionReplays != before.AssertionReplays+1 || r.str("error_description") == "" {
		t.Errorf("replay: %+v, %s", st, r.raw)
	}

	for _, tc := range []struct{ name, assertion string }{
		{"wrong key", testutil.SignJWT(t, other, jose.ES256, "", false, nil, good)},
		{"untrusted issuer", sign(with(good, "iss", "stranger"))},
		{"no issuer", sign(with(good, "iss", nil))},
		{"alg none", rawJWT(t, nil, map[string]any{"alg": "none"}, good)},
		{"HS256 keyed with the public key", testutil.SignJWT(t, publicPEM(t, key), jose.HS256, "", false, nil, good)},
		{"wrong aud", sign(with(good, "aud", "https://elsewhere.example/token"))},
		{"another issuer's audience", sign(with(good, "iss", "restricted", "sub", "allowed", "aud", "https://oauth2.example/token"))},
		{"subject not allowed", sign(with(good, "iss", "restricted", "sub", "other"))},
		{"no sub", sign(with(good, "sub", nil))},
		{"expired", sign(with(good, "exp", clk.Now().Add(-time.Second).Unix()))},
		{"no exp", sign(with(good, "exp", nil))},
		{"iat in the future", sign(with(good, "iat", clk.Now().Add(time.Minute).Unix()))},
		{"no jti", sign(with(good, "jti", nil))},
		{"garbage", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"},
	} {
		r := post(t, s, "/token", auth{}, grant(tc.assertion))
		wantErrorNamed(t, tc.name, r, http.StatusBadRequest, "invalid_grant")
		if r.str("error_description") == "" {
			t.Errorf("%s: no description", tc.name)
		}
	}
	// iat a little ahead of the server's clock is within the skew.
	wantOK(t, post(t, s, "/token", auth{}, grant(sign(with(good, "jti", "skew", "iat", clk.Now().Add(10*time.Second).Unix())))))
	wantError(t, post(t, s, "/token", auth{}, url.Values{"grant_type": {GrantJWTBearer}}), http.StatusBadRequest, "invalid_request")
	// A client that names itself must authenticate.
	wantError(t, post(t, s, "/token", auth{AuthMethodBasic, basicClient.ID, "wrong"}, grant(sign(with(good, "jti", "5")))), http.StatusUnauthorized, "invalid_client")
	if !slices.Contains(s.Issued(), replayed) {
		t.Errorf("assertions are not in Issued")
	}
}

func TestTokenExchange(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	s := mustServer(t, o)
	subject := post(t, s, "/token", basicAuth, withForm(passwordForm, "scope", "openid read write"))
	wantOK(t, subject)
	actor := post(t, s, "/token", postAuth, url.Values{"grant_type": {"client_credentials"}, "scope": {"svc"}})
	wantOK(t, actor)
	exchange := func(kv ...string) url.Values {
		f := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {subject.str("access_token")}, "subject_token_type": {TokenTypeAccess}}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Add(kv[i], kv[i+1])
		}
		return f
	}

	f := exchange("scope", "read", "audience", "api-a", "audience", "api-b", "resource", "https://api.example/v1",
		"actor_token", actor.str("access_token"), "actor_token_type", TokenTypeAccess, "requested_token_type", TokenTypeAccess)
	r := post(t, s, "/token", basicAuth, f)
	wantOK(t, r)
	if r.str("issued_token_type") != TokenTypeAccess || r.str("scope") != "read" || r.str("refresh_token") != "" || r.str("token_type") != "Bearer" {
		t.Errorf("answer %s", r.raw)
	}
	info, _ := s.TokenInfo(r.str("access_token"))
	if info.Subject != "alice" || info.Actor != postClient.ID || !slices.Equal(info.Audience, []string{"api-a", "api-b"}) ||
		!slices.Equal(info.Resource, []string{"https://api.example/v1"}) || info.GrantType != GrantTokenExchange || info.ClientID != basicClient.ID {
		t.Errorf("TokenInfo = %+v", info)
	}
	if !s.Valid(r.str("access_token")) || s.Stats().Exchanges != 1 {
		t.Errorf("exchanged token not valid or not counted")
	}
	// Without scope the subject's scope carries over; an id token works too.
	r = post(t, s, "/token", publicAuth, exchange())
	wantOK(t, r)
	if r.str("scope") != "openid read write" {
		t.Errorf("scope %q", r.str("scope"))
	}
	idf := exchange("scope", "read")
	idf.Set("subject_token", subject.str("id_token"))
	idf.Set("subject_token_type", "urn:ietf:params:oauth:token-type:id_token")
	wantOK(t, post(t, s, "/token", basicAuth, idf))

	for _, tc := range []struct {
		name         string
		form         url.Values
		status       int
		code, change string
	}{
		{"scope beyond the subject's", exchange("scope", "read admin"), 400, "invalid_scope", ""},
		{"unknown subject token", exchange(), 400, "invalid_grant", "subject_token"},
		{"refresh token as access token", exchange(), 400, "invalid_grant", "refresh"},
		{"unknown actor token", exchange("actor_token", "at_nope", "actor_token_type", TokenTypeAccess), 400, "invalid_grant", ""},
		{"actor token without type", exchange("actor_token", actor.str("access_token")), 400, "invalid_request", ""},
		{"missing subject_token_type", exchange(), 400, "invalid_request", "type"},
		{"unsupported subject_token_type", exchange(), 400, "invalid_request", "jwt"},
		{"unsupported requested_token_type", exchange("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, "invalid_request", ""},
		{"relative resource", exchange("resource", "/v1"), 400, "invalid_target", ""},
	} {
		switch tc.change {
		case "subject_token":
			tc.form.Set("subject_token", "at_unknown")
		case "refresh":
			tc.form.Set("subject_token", subject.str("refresh_token"))
		case "type":
			tc.form.Del("subject_token_type")
		case "jwt":
			tc.form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
		}
		wantErrorNamed(t, tc.name, post(t, s, "/token", basicAuth, tc.form), tc.status, tc.code)
	}
	wantError(t, post(t, s, "/token", auth{AuthMethodBasic, basicClient.ID, "bad"}, exchange()), http.StatusUnauthorized, "invalid_client")

	// A revoked or expired subject token cannot be exchanged.
	s.RevokeFamilyOf(subject.str("refresh_token"))
	wantError(t, post(t, s, "/token", basicAuth, exchange()), http.StatusBadRequest, "invalid_grant")
	fresh := post(t, s, "/token", basicAuth, passwordForm)
	clk.Advance(s.opts.AccessTTL)
	f = exchange()
	f.Set("subject_token", fresh.str("access_token"))
	wantError(t, post(t, s, "/token", basicAuth, f), http.StatusBadRequest, "invalid_grant")
}

func withForm(v url.Values, kv ...string) url.Values {
	out := cloneValues(v)
	for i := 0; i+1 < len(kv); i += 2 {
		out.Set(kv[i], kv[i+1])
	}
	return out
}
