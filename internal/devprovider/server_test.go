package devprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const redirectURI = "http://127.0.0.1:8785/callback"

var (
	basicClient  = Client{ID: "basic:app", Secret: "s3cr:t/+%&=", AuthMethod: AuthMethodBasic, RedirectURIs: []string{redirectURI}}
	postClient   = Client{ID: "post-app", Secret: "post-secret", AuthMethod: AuthMethodPost}
	publicClient = Client{ID: "cli", AuthMethod: AuthMethodNone, RedirectURIs: []string{redirectURI}}
)

var (
	basicAuth  = auth{AuthMethodBasic, basicClient.ID, basicClient.Secret}
	postAuth   = auth{AuthMethodPost, postClient.ID, postClient.Secret}
	publicAuth = auth{AuthMethodNone, publicClient.ID, ""}
)

func baseOptions() Options {
	return Options{
		Clients: []Client{basicClient, postClient, publicClient},
		Users:   map[string]string{"alice": "wonderland"},
	}
}

var passwordForm = url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}, "scope": {"openid read"}}

func oauth2Config(s *Server, c Client, style oauth2.AuthStyle) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     c.ID,
		ClientSecret: c.Secret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       s.URL() + "/authorize",
			TokenURL:      s.URL() + "/token",
			DeviceAuthURL: s.URL() + "/device",
			AuthStyle:     style,
		},
		RedirectURL: "http://127.0.0.1:51234/callback", // another port: loopback match
		Scopes:      []string{"openid", "offline_access"},
	}
}

func TestDiscovery(t *testing.T) {
	for _, allow := range []bool{false, true} {
		s := mustServer(t, Options{AllowRegistration: allow})
		get(t, s.URL()+"/.well-known/oauth-authorization-server") // something in the log
		for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
			r := do(t, req)
			if r.status != http.StatusOK {
				t.Fatalf("%s: status %d", path, r.status)
			}
			want := map[string]string{
				"issuer":                        s.URL(),
				"authorization_endpoint":        s.URL() + "/authorize",
				"token_endpoint":                s.URL() + "/token",
				"revocation_endpoint":           s.URL() + "/revoke",
				"device_authorization_endpoint": s.URL() + "/device",
			}
			for k, v := range want {
				if r.str(k) != v {
					t.Errorf("%s: %s = %q, want %q", path, k, r.str(k), v)
				}
			}
			if got, want := r.str("registration_endpoint"), map[bool]string{true: s.URL() + "/register"}[allow]; got != want {
				t.Errorf("%s: registration_endpoint = %q, want %q", path, got, want)
			}
			if r.body["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("%s: iss parameter not advertised", path)
			}
			b, _ := json.Marshal(r.body)
			for _, frag := range []string{`"code_challenge_methods_supported":["S256"]`, GrantDeviceCode, `"client_secret_post"`, `"none"`, `"refresh_token"`} {
				if !strings.Contains(string(b), frag) {
					t.Errorf("%s: document lacks %s: %s", path, frag, b)
				}
			}
		}
	}
}

func TestAuthorizationCodeWithOAuth2(t *testing.T) {
	s := mustServer(t, Options{AutoApprove: true, Clients: []Client{publicClient}})
	cfg := oauth2Config(s, publicClient, oauth2.AuthStyleInParams)
	verifier := oauth2.GenerateVerifier()
	resp := get(t, cfg.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n0nce")))
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://127.0.0.1:51234/callback?") {
		t.Fatalf("redirected to %q", loc)
	}
	q := location(t, resp)
	if q.Get("state") != "st4te" || q.Get("iss") != s.URL() || !strings.HasPrefix(q.Get("code"), "ac_") {
		t.Fatalf("redirect query %v", q)
	}
	tok, err := cfg.Exchange(ctx(t), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, "at_") || !strings.HasPrefix(tok.RefreshToken, "rt_") || tok.TokenType != "Bearer" {
		t.Fatalf("token %+v", tok)
	}
	if !s.Valid(tok.AccessToken) || !s.RefreshValid(tok.RefreshToken) {
		t.Fatal("issued tokens are not valid")
	}
	if d := time.Until(tok.Expiry); d < 20*time.Second || d > 31*time.Second {
		t.Errorf("expiry in %v, want about 30s (the default AccessTTL)", d)
	}
	idt, _ := tok.Extra("id_token").(string)
	parts := strings.Split(idt, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", idt)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err := json.Unmarshal(claims, &c); err != nil || c["iss"] != s.URL() || c["aud"] != publicClient.ID || c["nonce"] != "n0nce" || c["sub"] != Subject {
		t.Fatalf("id_token claims %s (%v)", claims, err)
	}

	// Refresh through x/oauth2, forcing it by handing over an expired token.
	tok.Expiry = time.Now().Add(-time.Minute)
	tok2, err := cfg.TokenSource(ctx(t), tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok.AccessToken || !s.Valid(tok2.AccessToken) {
		t.Fatalf("refresh gave %+v", tok2)
	}
	st := s.Stats()
	if st.Refreshes != 1 || st.ByGrant[GrantAuthorizationCode] != 1 || st.ByGrant[GrantRefreshToken] != 1 || st.TokenRequests != 2 {
		t.Errorf("stats %+v", st)
	}
}

func authorizeURL(s *Server, c Client, params url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {c.ID}, "redirect_uri": {redirectURI}, "state": {"xyz"}}
	for k, v := range params {
		q[k] = v
	}
	for k, v := range q {
		if v[0] == "" {
			delete(q, k)
		}
	}
	return s.URL() + "/authorize?" + q.Encode()
}

func TestAuthorizeValidation(t *testing.T) {
	o := baseOptions()
	o.AutoApprove = true
	s := mustServer(t, o)
	challenge := url.Values{"code_challenge": {s256("v")}, "code_challenge_method": {"S256"}}
	for _, tc := range []struct {
		name   string
		client Client
		params url.Values
		status int
		err    string // the error in the redirect
	}{
		{"unknown client", Client{ID: "nobody"}, challenge, 400, ""},
		{"unregistered redirect", publicClient, url.Values{"redirect_uri": {"http://127.0.0.1:1/other"}}, 400, ""},
		{"non-loopback other port", basicClient, url.Values{"redirect_uri": {"http://example.com:8785/callback"}}, 400, ""},
		{"https loopback other scheme", basicClient, url.Values{"redirect_uri": {"https://127.0.0.1:8785/callback"}}, 400, ""},
		{"public without PKCE", publicClient, nil, 302, "invalid_request"},
		{"plain PKCE", publicClient, url.Values{"code_challenge": {"v"}, "code_challenge_method": {"plain"}}, 302, "invalid_request"},
		{"implicit", publicClient, url.Values{"response_type": {"token"}, "code_challenge": {"x"}, "code_challenge_method": {"S256"}}, 302, "unsupported_response_type"},
		{"public loopback any port", publicClient, url.Values{"redirect_uri": {"http://127.0.0.1:4000/callback"}, "code_challenge": {"x"}, "code_challenge_method": {"S256"}}, 302, ""},
		{"confidential without PKCE", basicClient, nil, 302, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := get(t, authorizeURL(s, tc.client, tc.params))
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 302 {
				return
			}
			q := location(t, resp)
			if q.Get("error") != tc.err || q.Get("state") != "xyz" || q.Get("iss") != s.URL() {
				t.Fatalf("redirect query %v, want error %q", q, tc.err)
			}
			if (tc.err == "") != (q.Get("code") != "") {
				t.Fatalf("code %q with error %q", q.Get("code"), tc.err)
			}
		})
	}
}

var requestID = regexp.MustCompile(`name="request" value="([^"]+)"`)

func TestAuthorizeApprovalPage(t *testing.T) {
	s := mustServer(t, baseOptions())
	page := func() string {
		resp, err := http.Get(authorizeURL(s, basicClient, url.Values{"scope": {"read"}}))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		m := requestID.FindStringSubmatch(b.String())
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || m == nil {
			t.Fatalf("status %d page %s", resp.StatusCode, b.String())
		}
		return m[1]
	}
	decide := func(id, action string) *http.Response {
		resp, err := noRedirect.PostForm(s.URL()+"/authorize/approve", url.Values{"request": {id}, "action": {action}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	id := page()
	q := location(t, decide(id, "approve"))
	if q.Get("code") == "" || q.Get("state") != "xyz" || q.Get("iss") != s.URL() {
		t.Fatalf("approve redirect %v", q)
	}
	if resp := decide(id, "approve"); resp.StatusCode != 400 {
		t.Fatalf("second approval of one request: status %d, want 400", resp.StatusCode)
	}
	q = location(t, decide(page(), "deny"))
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("deny redirect %v", q)
	}
	// The code from the page works at the token endpoint.
	r := post(t, s, "/token", basicAuth, url.Values{"grant_type": {"authorization_code"}, "code": {location(t, decide(page(), "approve")).Get("code")}, "redirect_uri": {redirectURI}})
	wantOK(t, r)
	if r.str("scope") != "read" || r.str("id_token") != "" {
		t.Errorf("scope %q id_token %q: want read and none", r.str("scope"), r.str("id_token"))
	}
}

// code runs an authorization for c at a server with AutoApprove and
// returns the code.
func code(t *testing.T, s *Server, c Client, challenge string) string {
	t.Helper()
	p := url.Values{}
	if challenge != "" {
		p = url.Values{"code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	}
	return location(t, get(t, authorizeURL(s, c, p))).Get("code")
}

func TestAuthorizationCodeChecks(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now, o.AutoApprove = clk.Now, true
	s := mustServer(t, o, "the-verifier")
	exchange := func(a auth, code string, extra url.Values) response {
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
		for k, v := range extra {
			f[k] = v
		}
		return post(t, s, "/token", a, f)
	}
	good := url.Values{"code_verifier": {"the-verifier"}}
	ch := s256("the-verifier")

	t.Run("PKCE wrong verifier", func(t *testing.T) {
		wantError(t, exchange(publicAuth, code(t, s, publicClient, ch), url.Values{"code_verifier": {"other"}}), 400, "invalid_grant")
	})
	t.Run("PKCE missing verifier", func(t *testing.T) {
		wantError(t, exchange(publicAuth, code(t, s, publicClient, ch), nil), 400, "invalid_grant")
	})
	t.Run("verifier without challenge", func(t *testing.T) {
		wantError(t, exchange(basicAuth, code(t, s, basicClient, ""), good), 400, "invalid_grant")
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		wantError(t, exchange(publicAuth, code(t, s, publicClient, ch), url.Values{"code_verifier": {"the-verifier"}, "redirect_uri": {"http://127.0.0.1:8785/other"}}), 400, "invalid_grant")
	})
	t.Run("other client", func(t *testing.T) {
		wantError(t, exchange(basicAuth, code(t, s, publicClient, ch), good), 400, "invalid_grant")
	})
	t.Run("expired", func(t *testing.T) {
		c := code(t, s, publicClient, ch)
		clk.Advance(61 * time.Second)
		wantError(t, exchange(publicAuth, c, good), 400, "invalid_grant")
	})
	t.Run("unknown", func(t *testing.T) {
		wantError(t, exchange(publicAuth, "ac_nope", good), 400, "invalid_grant")
	})
	t.Run("replay revokes", func(t *testing.T) {
		c := code(t, s, publicClient, ch)
		first := exchange(publicAuth, c, good)
		wantOK(t, first)
		if !s.Valid(first.str("access_token")) {
			t.Fatal("first exchange's token not valid")
		}
		wantError(t, exchange(publicAuth, c, good), 400, "invalid_grant")
		if s.Valid(first.str("access_token")) || s.RefreshValid(first.str("refresh_token")) {
			t.Fatal("tokens of a replayed code are still valid")
		}
	})
}

func TestClientAuthentication(t *testing.T) {
	s := mustServer(t, baseOptions())
	cc := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name   string
		a      auth
		form   url.Values
		status int
	}{
		{"basic ok, url-encoded parts", basicAuth, cc, 200},
		{"basic client in body", auth{AuthMethodPost, basicClient.ID, basicClient.Secret}, cc, 401},
		{"basic wrong secret", auth{AuthMethodBasic, basicClient.ID, "nope"}, cc, 401},
		{"post ok", postAuth, cc, 200},
		{"post client in header", auth{AuthMethodBasic, postClient.ID, postClient.Secret}, cc, 401},
		{"post wrong secret", auth{AuthMethodPost, postClient.ID, "nope"}, cc, 401},
		{"none ok", publicAuth, passwordForm, 200},
		{"none client with a secret", auth{AuthMethodPost, publicClient.ID, "x"}, passwordForm, 401},
		{"none client in header", auth{AuthMethodBasic, publicClient.ID, ""}, passwordForm, 401},
		{"confidential client without secret", auth{AuthMethodNone, postClient.ID, ""}, cc, 401},
		{"unknown client", auth{AuthMethodBasic, "who", "x"}, cc, 401},
		{"no client at all", auth{}, cc, 401},
		{"two methods", basicAuth, url.Values{"grant_type": {"client_credentials"}, "client_secret": {"x"}}, 400},
		{"public client_credentials", publicAuth, cc, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, s, "/token", tc.a, tc.form)
			switch tc.status {
			case 200:
				wantOK(t, r)
			case 401:
				wantError(t, r, 401, "invalid_client")
				if r.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			default:
				if r.status != tc.status || r.str("error") == "" {
					t.Fatalf("status %d body %s, want %d with an error", r.status, r.raw, tc.status)
				}
			}
		})
	}
	// A raw (not URL-encoded) Basic header works for plain ids and secrets.
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/token", strings.NewReader(cc.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.AddClient(Client{ID: "plain", Secret: "plainsecret"})
	req.SetBasicAuth("plain", "plainsecret")
	wantOK(t, do(t, req))
}

func TestClientCredentialsWithOAuth2(t *testing.T) {
	for _, tc := range []struct {
		c     Client
		style oauth2.AuthStyle
	}{
		{basicClient, oauth2.AuthStyleInHeader},
		{postClient, oauth2.AuthStyleInParams},
		{postClient, oauth2.AuthStyleAutoDetect}, // header first, 401, then body
	} {
		s := mustServer(t, baseOptions())
		cfg := clientcredentials.Config{ClientID: tc.c.ID, ClientSecret: tc.c.Secret, TokenURL: s.URL() + "/token", Scopes: []string{"api"}, AuthStyle: tc.style}
		tok, err := cfg.Token(ctx(t))
		if err != nil {
			t.Fatalf("%s/%v: %v", tc.c.ID, tc.style, err)
		}
		if !s.Valid(tok.AccessToken) || tok.RefreshToken != "" {
			t.Fatalf("%s/%v: token %+v valid=%v; want valid with no refresh token", tc.c.ID, tc.style, tok, s.Valid(tok.AccessToken))
		}
	}
	o := baseOptions()
	o.RefreshForClientCredentials = true
	s := mustServer(t, o)
	r := post(t, s, "/token", postAuth, url.Values{"grant_type": {"client_credentials"}})
	wantOK(t, r)
	if !s.RefreshValid(r.str("refresh_token")) {
		t.Fatalf("RefreshForClientCredentials: no valid refresh token in %s", r.raw)
	}
}

func TestPasswordGrant(t *testing.T) {
	s := mustServer(t, baseOptions(), "wonderland", "hunter2")
	cfg := oauth2Config(s, basicClient, oauth2.AuthStyleInHeader)
	tok, err := cfg.PasswordCredentialsToken(ctx(t), "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Valid(tok.AccessToken) || !s.RefreshValid(tok.RefreshToken) {
		t.Fatal("password grant tokens not valid")
	}
	_, err = cfg.PasswordCredentialsToken(ctx(t), "alice", "hunter2")
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("wrong password: %v, want invalid_grant", err)
	}
	s.AddUser("bob", "hunter2")
	if _, err := cfg.PasswordCredentialsToken(ctx(t), "bob", "hunter2"); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
}

func refresh(t testing.TB, s *Server, a auth, rt string) response {
	t.Helper()
	return post(t, s, "/token", a, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

func TestRotationAndReuse(t *testing.T) {
	o := baseOptions()
	o.Rotate = true
	s := mustServer(t, o)
	first := post(t, s, "/token", postAuth, passwordForm)
	wantOK(t, first)
	rt1 := first.str("refresh_token")
	second := refresh(t, s, postAuth, rt1)
	wantOK(t, second)
	rt2 := second.str("refresh_token")
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("rotation gave refresh token %q", rt2)
	}
	if s.RefreshValid(rt1) || !s.RefreshValid(rt2) {
		t.Fatal("after rotation the old token must be invalid and the new one valid")
	}
	if second.str("scope") != "openid read" || second.str("id_token") == "" {
		t.Errorf("refresh kept scope %q id_token %q", second.str("scope"), second.str("id_token"))
	}
	// Another client cannot use it.
	wantError(t, refresh(t, s, basicAuth, rt2), 400, "invalid_grant")
	// Reuse of rt1 kills the family.
	wantError(t, refresh(t, s, postAuth, rt1), 400, "invalid_grant")
	if s.RefreshValid(rt2) || s.Valid(second.str("access_token")) || s.Valid(first.str("access_token")) {
		t.Fatal("reuse did not revoke the family")
	}
	wantError(t, refresh(t, s, postAuth, rt2), 400, "invalid_grant")
	if st := s.Stats(); st.Reuses != 1 || st.Refreshes != 1 {
		t.Fatalf("stats %+v, want 1 reuse and 1 refresh", st)
	}
	// An unrelated family is untouched.
	other := post(t, s, "/token", postAuth, passwordForm)
	wantOK(t, refresh(t, s, postAuth, other.str("refresh_token")))
}

func TestRefreshWithoutRotationAndScope(t *testing.T) {
	s := mustServer(t, baseOptions())
	first := post(t, s, "/token", postAuth, passwordForm)
	rt := first.str("refresh_token")
	for range 3 {
		r := refresh(t, s, postAuth, rt)
		wantOK(t, r)
		if r.str("refresh_token") != rt {
			t.Fatalf("without Rotate the same refresh token must come back, got %q", r.str("refresh_token"))
		}
		if _, ok := r.body["refresh_token_expires_in"]; ok {
			t.Fatal("refresh_token_expires_in sent without RefreshTTL")
		}
	}
	r := post(t, s, "/token", postAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"}})
	wantOK(t, r)
	if r.str("scope") != "read" || r.str("id_token") != "" {
		t.Errorf("narrowed scope %q id_token %q", r.str("scope"), r.str("id_token"))
	}
	wantError(t, post(t, s, "/token", postAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"admin"}}), 400, "invalid_scope")
	wantError(t, refresh(t, s, postAuth, "rt_unknown"), 400, "invalid_grant")
	wantError(t, post(t, s, "/token", postAuth, url.Values{"grant_type": {"refresh_token"}}), 400, "invalid_request")
	s.RevokeFamilyOf(rt)
	wantError(t, refresh(t, s, postAuth, rt), 400, "invalid_grant")
	if s.Valid(first.str("access_token")) {
		t.Error("RevokeFamilyOf left the access token valid")
	}
}

func TestExpiryWithInjectedClock(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		clk := newClock()
		o := baseOptions()
		o.Now, o.Rotate, o.AccessTTL, o.RefreshTTL = clk.Now, rotate, 10*time.Minute, time.Hour
		s := mustServer(t, o)
		r := post(t, s, "/token", postAuth, passwordForm)
		wantOK(t, r)
		if r.num("expires_in") != 600 || r.num("refresh_token_expires_in") != 3600 {
			t.Fatalf("expires_in %v refresh_token_expires_in %v", r.body["expires_in"], r.body["refresh_token_expires_in"])
		}
		at, rt := r.str("access_token"), r.str("refresh_token")
		clk.Advance(10*time.Minute - time.Second)
		if !s.Valid(at) {
			t.Fatal("access token expired early")
		}
		clk.Advance(time.Second)
		if s.Valid(at) {
			t.Fatal("access token still valid at its expiry")
		}
		clk.Advance(20 * time.Minute) // 30 min in
		r = refresh(t, s, postAuth, rt)
		wantOK(t, r)
		want := map[bool]float64{false: 1800, true: 3600}[rotate] // rotation: a fresh token, a fresh TTL
		if got := r.num("refresh_token_expires_in"); got != want {
			t.Fatalf("rotate=%v: refresh_token_expires_in %v, want %v", rotate, got, want)
		}
		rt = r.str("refresh_token")
		clk.Advance(31 * time.Minute)
		if s.RefreshValid(rt) == !rotate {
			t.Fatalf("rotate=%v: RefreshValid = %v at 61 min", rotate, s.RefreshValid(rt))
		}
		clk.Advance(30 * time.Minute)
		wantError(t, refresh(t, s, postAuth, rt), 400, "invalid_grant")
	}
}

func TestRevocation(t *testing.T) {
	s := mustServer(t, baseOptions())
	r := post(t, s, "/token", postAuth, passwordForm)
	at, rt := r.str("access_token"), r.str("refresh_token")
	other := post(t, s, "/token", postAuth, passwordForm)

	rev := func(a auth, token string) response {
		return post(t, s, "/revoke", a, url.Values{"token": {token}})
	}
	if got := rev(basicAuth, at); got.status != 200 || !s.Valid(at) {
		t.Fatalf("another client's revocation: status %d, valid %v; want 200 and still valid", got.status, s.Valid(at))
	}
	if got := rev(postAuth, at); got.status != 200 || s.Valid(at) || !s.RefreshValid(rt) {
		t.Fatalf("revoking the access token: status %d", got.status)
	}
	if got := rev(postAuth, rt); got.status != 200 || s.RefreshValid(rt) {
		t.Fatalf("revoking the refresh token: status %d", got.status)
	}
	wantError(t, refresh(t, s, postAuth, rt), 400, "invalid_grant")
	if !s.Valid(other.str("access_token")) {
		t.Fatal("revocation reached another family")
	}
	if got := rev(postAuth, "never-issued"); got.status != 200 {
		t.Fatalf("unknown token: status %d, want 200", got.status)
	}
	wantError(t, rev(auth{AuthMethodPost, postClient.ID, "wrong"}, rt), 401, "invalid_client")
	wantError(t, post(t, s, "/revoke", postAuth, nil), 400, "invalid_request")
	if st := s.Stats(); st.Revocations != 4 {
		t.Errorf("Revocations = %d, want 4", st.Revocations)
	}
}

func TestDeviceFlow(t *testing.T) {
	clk := newClock()
	o := baseOptions()
	o.Now = clk.Now
	o.DeviceInterval = 1500 * time.Millisecond
	s := mustServer(t, o)
	start := func() response {
		r := post(t, s, "/device", publicAuth, url.Values{"scope": {"read"}})
		if r.status != 200 || !strings.HasPrefix(r.str("device_code"), "dc_") || r.str("user_code") == "" ||
			r.str("verification_uri") != s.URL()+"/device/verify" || !strings.Contains(r.str("verification_uri_complete"), "user_code=") ||
			r.num("interval") != 2 || r.num("expires_in") != 600 {
			t.Fatalf("device answer %d %s", r.status, r.raw)
		}
		return r
	}
	poll := func(dc string) response {
		return post(t, s, "/token", publicAuth, url.Values{"grant_type": {GrantDeviceCode}, "device_code": {dc}})
	}

	t.Run("approve", func(t *testing.T) {
		d := start()
		dc := d.str("device_code")
		wantError(t, poll(dc), 400, "authorization_pending")
		clk.Advance(time.Second)
		wantError(t, poll(dc), 400, "slow_down") // the interval is 2 s
		clk.Advance(2 * time.Second)
		wantError(t, poll(dc), 400, "slow_down") // slow_down made it 7 s
		clk.Advance(12 * time.Second)            // and now 12 s
		wantError(t, poll(dc), 400, "authorization_pending")
		if err := s.ApproveDevice(strings.ToLower(strings.ReplaceAll(d.str("user_code"), "-", ""))); err != nil {
			t.Fatal(err)
		}
		if err := s.DenyDevice(d.str("user_code")); !errors.Is(err, ErrDeviceDecided) {
			t.Fatalf("deny after approve: %v", err)
		}
		clk.Advance(12 * time.Second)
		r := poll(dc)
		wantOK(t, r)
		if !s.Valid(r.str("access_token")) || !s.RefreshValid(r.str("refresh_token")) || r.str("scope") != "read" {
			t.Fatalf("device tokens %s", r.raw)
		}
		clk.Advance(12 * time.Second)
		wantError(t, poll(dc), 400, "invalid_grant")
	})
	t.Run("deny", func(t *testing.T) {
		d := start()
		if err := s.DenyDevice(d.str("user_code")); err != nil {
			t.Fatal(err)
		}
		wantError(t, poll(d.str("device_code")), 400, "access_denied")
	})
	t.Run("expire", func(t *testing.T) {
		d := start()
		clk.Advance(10 * time.Minute)
		wantError(t, poll(d.str("device_code")), 400, "expired_token")
		if err := s.ApproveDevice(d.str("user_code")); !errors.Is(err, ErrDeviceExpired) {
			t.Fatalf("approve expired: %v", err)
		}
	})
	t.Run("verification page", func(t *testing.T) {
		d := start()
		resp, err := http.PostForm(s.URL()+"/device/verify", url.Values{"user_code": {d.str("user_code")}, "action": {"approve"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		clk.Advance(time.Minute)
		wantOK(t, poll(d.str("device_code")))
	})
	t.Run("other client and unknown codes", func(t *testing.T) {
		d := start()
		wantError(t, post(t, s, "/token", postAuth, url.Values{"grant_type": {GrantDeviceCode}, "device_code": {d.str("device_code")}}), 400, "invalid_grant")
		if err := s.ApproveDevice("NOPE-NOPE"); !errors.Is(err, ErrUnknownUserCode) {
			t.Fatalf("unknown user code: %v", err)
		}
	})
}

func TestDeviceAuthWithOAuth2(t *testing.T) {
	s := mustServer(t, Options{Clients: []Client{publicClient}, AutoApprove: true})
	da, err := oauth2Config(s, publicClient, oauth2.AuthStyleInParams).DeviceAuth(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if da.UserCode == "" || da.Interval != 1 || da.VerificationURIComplete == "" {
		t.Fatalf("device auth %+v", da)
	}
	// AutoApprove: opening the complete URI approves.
	get(t, da.VerificationURIComplete)
	if err := s.ApproveDevice(da.UserCode); !errors.Is(err, ErrDeviceDecided) {
		t.Fatalf("after visiting the complete URI: %v, want already decided", err)
	}
}

func TestRequestFormat(t *testing.T) {
	s := mustServer(t, baseOptions())
	send := func(contentType, body string) response {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/token", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		req.SetBasicAuth(url.QueryEscape(basicClient.ID), url.QueryEscape(basicClient.Secret))
		return do(t, req)
	}
	wantError(t, send("application/json", `{"grant_type":"client_credentials"}`), 400, "invalid_request")
	wantError(t, send("text/plain", "grant_type=client_credentials"), 400, "invalid_request")
	wantError(t, send("application/x-www-form-urlencoded", "grant_type=client_credentials&x="+strings.Repeat("a", 70<<10)), 400, "invalid_request")
	wantError(t, send("application/x-www-form-urlencoded", "grant_type=client_credentials&scope=a&scope=b"), 400, "invalid_request")
	wantError(t, send("application/x-www-form-urlencoded", "grant_type=implicit"), 400, "unsupported_grant_type")
	wantError(t, send("application/x-www-form-urlencoded", ""), 400, "invalid_request")
	wantOK(t, send("application/x-www-form-urlencoded; charset=utf-8", "grant_type=client_credentials"))
	resp := get(t, s.URL()+"/token")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: status %d", resp.StatusCode)
	}
}

func TestRegistration(t *testing.T) {
	s := mustServer(t, Options{})
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/register", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	if r := do(t, req); r.status != 404 {
		t.Fatalf("registration not allowed: status %d", r.status)
	}

	s = mustServer(t, Options{AllowRegistration: true, Users: map[string]string{"alice": "wonderland"}})
	register := func(body string) response {
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/register", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return do(t, req)
	}
	r := register(`{"redirect_uris":["http://127.0.0.1:8785/callback"],"token_endpoint_auth_method":"client_secret_post","grant_types":["client_credentials","refresh_token"],"client_name":"tokend","software_id":"ignored"}`)
	if r.status != 201 || r.str("client_secret") == "" || r.str("registration_access_token") == "" ||
		r.str("registration_client_uri") != s.URL()+"/register/"+r.str("client_id") ||
		r.num("client_id_issued_at") == 0 || r.body["client_secret_expires_at"] != float64(0) ||
		r.str("token_endpoint_auth_method") != AuthMethodPost || r.str("client_name") != "tokend" {
		t.Fatalf("registration answer %d %s", r.status, r.raw)
	}
	id := r.str("client_id")
	wantOK(t, post(t, s, "/token", auth{AuthMethodPost, id, r.str("client_secret")}, url.Values{"grant_type": {"client_credentials"}}))
	wantError(t, post(t, s, "/token", auth{AuthMethodBasic, id, r.str("client_secret")}, url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client")

	// RFC 7592 read and delete.
	rd, _ := http.NewRequest(http.MethodGet, r.str("registration_client_uri"), nil)
	rd.Header.Set("Authorization", "Bearer "+r.str("registration_access_token"))
	if got := do(t, rd); got.status != 200 || got.str("client_id") != id {
		t.Fatalf("read registration: %d %s", got.status, got.raw)
	}
	rd.Header.Set("Authorization", "Bearer wrong")
	if got := do(t, rd); got.status != 401 {
		t.Fatalf("read with a wrong token: %d", got.status)
	}

	pub := register(`{"token_endpoint_auth_method":"none"}`)
	if pub.status != 201 || pub.str("client_secret") != "" || pub.str("token_endpoint_auth_method") != "none" {
		t.Fatalf("public registration %d %s", pub.status, pub.raw)
	}
	wantOK(t, post(t, s, "/token", auth{AuthMethodNone, pub.str("client_id"), ""}, passwordForm))
	if dflt := register(`{}`); dflt.str("token_endpoint_auth_method") != AuthMethodBasic {
		t.Fatalf("default auth method: %s", dflt.raw)
	} else {
		wantOK(t, post(t, s, "/token", auth{AuthMethodBasic, dflt.str("client_id"), dflt.str("client_secret")}, url.Values{"grant_type": {"client_credentials"}}))
	}

	del, _ := http.NewRequest(http.MethodDelete, r.str("registration_client_uri"), nil)
	del.Header.Set("Authorization", "Bearer "+r.str("registration_access_token"))
	if got := do(t, del); got.status != 204 {
		t.Fatalf("delete registration: %d", got.status)
	}
	wantError(t, post(t, s, "/token", auth{AuthMethodPost, id, r.str("client_secret")}, url.Values{"grant_type": {"client_credentials"}}), 401, "invalid_client")

	if bad := register(`{"token_endpoint_auth_method":"private_key_jwt"}`); bad.status != 400 || bad.str("error") != "invalid_client_metadata" {
		t.Fatalf("unsupported method: %d %s", bad.status, bad.raw)
	}
	if bad := register(`{"redirect_uris":["/relative"]}`); bad.status != 400 || bad.str("error") != "invalid_redirect_uri" {
		t.Fatalf("relative redirect: %d %s", bad.status, bad.raw)
	}
	if bad := register(`{`); bad.status != 400 {
		t.Fatalf("malformed JSON: %d", bad.status)
	}
	if st := s.Stats(); st.Registrations != 3 {
		t.Errorf("Registrations = %d, want 3", st.Registrations)
	}
	issued := strings.Join(s.Issued(), " ")
	if !strings.Contains(issued, r.str("client_secret")) || !strings.Contains(issued, r.str("registration_access_token")) {
		t.Error("Issued lacks the registered client's secrets")
	}
}

func TestLifecycle(t *testing.T) {
	s := NewUnstarted(Options{Logf: t.Logf})
	if s.URL() != "" {
		t.Fatalf("URL before Start = %q", s.URL())
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Fatal("second Start succeeded")
	}
	s.Close()
	s.Close()
	if _, err := http.Get(s.URL() + "/.well-known/openid-configuration"); err == nil {
		t.Fatal("server still answers after Close")
	}
	if err := NewUnstarted(Options{}).Start("256.0.0.1:0"); err == nil || !strings.HasPrefix(err.Error(), "devprovider: ") {
		t.Fatalf("bad address: %v", err)
	}

	// Mounted elsewhere, the issuer comes from the Host header.
	h := NewUnstarted(Options{})
	defer h.Close()
	ts := httptest.NewServer(h.Handler())
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/.well-known/oauth-authorization-server", nil)
	if r := do(t, req); r.str("issuer") != ts.URL {
		t.Fatalf("issuer %q, want %q", r.str("issuer"), ts.URL)
	}
}
