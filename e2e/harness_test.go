package e2e

// Self-tests of the harness: oidc/server.mjs driven by golang.org/x/oauth2
// alone, no tokend. They pin down the behaviour the tokend tests rely on
// (opaque 15 s tokens, rotation with reuse detection, automatic
// interactions, device approval, open registration, revocation semantics,
// the /_test routes), so a failing tokend test points at tokend.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

func TestHarnessClientCredentials(t *testing.T) {
	t.Parallel()
	o := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{{
		"client_id":      "cc",
		"client_secret":  "cc-secret-0123456789",
		"grant_types":    []string{"client_credentials"},
		"response_types": []string{},
		"redirect_uris":  []string{},
	}}})
	conf := clientcredentials.Config{
		ClientID: "cc", ClientSecret: "cc-secret-0123456789",
		TokenURL: o.Issuer + "/token", Scopes: []string{"api:read"},
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	before := time.Now()
	tok, err := conf.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != "" {
		t.Errorf("client_credentials token came with a refresh token")
	}
	if life := tok.Expiry.Sub(before); life < 13*time.Second || life > 16*time.Second {
		t.Errorf("token lifetime %v, want 15s", life)
	}
	in := o.Introspect(tok.AccessToken)
	if !in.Active || in.ClientID != "cc" || in.Scope != "api:read" {
		t.Errorf("introspection = %+v, want active, client cc, scope api:read", in)
	}
	if exp := time.Unix(in.Exp, 0); exp.Sub(before) > 16*time.Second {
		t.Errorf("introspected exp %v too far from %v", exp, before)
	}
	if o.Introspect("not-a-token").Active {
		t.Errorf("an unknown token introspects active")
	}
	revoke(t, o, tok.AccessToken, "cc", "cc-secret-0123456789")
	if o.Introspect(tok.AccessToken).Active {
		t.Errorf("revoked token still active")
	}
	s := o.Stats()
	if s.TokenRequests["client_credentials"] != 1 || s.TokenSuccess["client_credentials"] != 1 || s.Revocations != 1 {
		t.Errorf("stats = %+v, want one client_credentials request and one revocation", s)
	}
	// A wrong secret is an error the stats see, and the server logs its detail.
	bad := conf
	bad.ClientSecret = "wrong"
	if _, err := bad.Token(context.Background()); err == nil {
		t.Errorf("a wrong secret got a token")
	}
	if s := o.Stats(); s.TokenRequests["client_credentials"] != 2 || s.TokenSuccess["client_credentials"] != 1 {
		t.Errorf("stats after a wrong secret = %+v, want 2 requests, 1 success", s)
	}
	if !strings.Contains(o.Logs(), "invalid secret provided") {
		t.Errorf("server log lacks the detail of the failure:\n%s", o.Logs())
	}
}

// redirectTarget is a client's redirect URI: it records every query it
// receives and answers 200.
type redirectTarget struct {
	URL string
	mu  sync.Mutex
	got []url.Values
}

func newRedirectTarget(t testing.TB) *redirectTarget {
	rt := &redirectTarget{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		rt.mu.Lock()
		rt.got = append(rt.got, r.URL.Query())
		rt.mu.Unlock()
		fmt.Fprintln(w, "callback received")
	}))
	t.Cleanup(srv.Close)
	rt.URL = srv.URL + "/callback"
	return rt
}

func (rt *redirectTarget) last(t testing.TB) url.Values {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.got) == 0 {
		t.Fatal("e2e: the redirect URI was never called")
	}
	return rt.got[len(rt.got)-1]
}

func TestHarnessAuthorizationCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method string
		secret string
		style  oauth2.AuthStyle
	}{
		{"client_secret_basic", "basic-secret-0123456789", oauth2.AuthStyleInHeader},
		{"client_secret_post", "post-secret-0123456789", oauth2.AuthStyleInParams},
		{"none", "", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.method, func(t *testing.T) {
			t.Parallel()
			rt := newRedirectTarget(t)
			o := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{codeClient(authClient{tc.method, tc.secret})}})
			conf := &oauth2.Config{
				ClientID: "app", ClientSecret: tc.secret,
				Endpoint: oauth2.Endpoint{
					AuthURL: o.Issuer + "/auth", TokenURL: o.Issuer + "/token", AuthStyle: tc.style,
				},
				RedirectURL: rt.URL,
				Scopes:      []string{"openid"},
			}
			ctx := context.Background()

			if tc.method == "none" {
				// PKCE is required of a public client.
				p := testutil.NewBrowser(t).Open(conf.AuthCodeURL("s0"))
				if q := rt.last(t); q.Get("error") != "invalid_request" || p.Status != http.StatusOK {
					t.Errorf("public client without PKCE: redirect query %v, want error=invalid_request", q)
				}
			}

			b := testutil.NewBrowser(t)
			tok := authCodeFlow(t, o, b, rt, conf)
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token without offline_access")
			}
			if in := o.Introspect(tok.AccessToken); !in.Active || in.ClientID != "app" || in.Sub != "e2e-user" {
				t.Errorf("introspection = %+v", in)
			}
			if in := o.Introspect(tok.RefreshToken); !in.Active || in.ClientID != "app" {
				t.Errorf("refresh token introspection = %+v", in)
			}

			// Refresh rotates the refresh token.
			tok2, err := conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken || tok2.AccessToken == tok.AccessToken {
				t.Fatal("refresh did not rotate the refresh token")
			}
			if c := o.RefreshTokens("app"); c.Active != 1 || c.Consumed != 1 {
				t.Errorf("refresh tokens after one rotation = %+v, want 1 active 1 consumed", c)
			}
			// Reuse of the old refresh token: invalid_grant and the family dies.
			_, err = conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
				t.Fatalf("reused refresh token: %v, want invalid_grant", err)
			}
			if s := o.Stats(); s.InvalidGrant != 1 || s.RefreshTokenReuse != 1 || s.TokenSuccess["refresh_token"] != 1 {
				t.Errorf("stats after reuse = %+v, want invalid_grant 1, reuse 1", s)
			}
			if c := o.RefreshTokens("app"); c.Active != 0 {
				t.Errorf("refresh tokens after reuse = %+v, want none active", c)
			}
			if o.Introspect(tok2.AccessToken).Active {
				t.Errorf("access token of a revoked family still active")
			}
			if !strings.Contains(o.Logs(), "refresh token already used") {
				t.Errorf("server log lacks the reuse detail:\n%s", o.Logs())
			}

			// Revoking a refresh token (RFC 7009) revokes its grant: the
			// access tokens die too. TestRevoke relies on this.
			tok3 := authCodeFlow(t, o, b, rt, conf)
			revoke(t, o, tok3.RefreshToken, "app", tc.secret)
			if c := o.RefreshTokens("app"); c.Active != 0 {
				t.Errorf("refresh tokens after revocation = %+v, want none active", c)
			}
			if o.Introspect(tok3.AccessToken).Active {
				t.Errorf("access token still active after its refresh token was revoked")
			}
		})
	}
}

// authCodeFlow runs one authorization-code flow with PKCE in browser b and
// exchanges the code.
func authCodeFlow(t testing.TB, o *oidcop.Server, b *testutil.Browser, rt *redirectTarget, conf *oauth2.Config) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	state := oauth2.GenerateVerifier()
	p := b.Open(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "callback received") {
		t.Fatalf("flow ended at %s with %d:\n%s", p.URL, p.Status, p.Body)
	}
	q := rt.last(t)
	if q.Get("state") != state || q.Get("code") == "" || q.Get("iss") != o.Issuer {
		t.Fatalf("callback query %v: want state, code and iss=%s", q, o.Issuer)
	}
	tok, err := conf.Exchange(context.Background(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func revoke(t testing.TB, o *oidcop.Server, token, clientID, secret string) {
	t.Helper()
	form := url.Values{"token": {token}}
	if secret == "" {
		form.Set("client_id", clientID)
	}
	req, _ := http.NewRequest(http.MethodPost, o.Issuer+"/token/revocation", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %s", resp.Status)
	}
}

func TestHarnessDeviceFlow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ method, secret string }{
		{"none", ""},
		{"client_secret_basic", "tv-secret-0123456789"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			t.Parallel()
			o := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{deviceClient(tc.method, tc.secret)}})
			conf := &oauth2.Config{
				ClientID: "tv", ClientSecret: tc.secret,
				Endpoint: oauth2.Endpoint{
					DeviceAuthURL: o.Issuer + "/device/auth", TokenURL: o.Issuer + "/token",
					AuthStyle: oauth2.AuthStyleInParams,
				},
				Scopes: []string{"openid"},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if tc.secret != "" {
				// x/oauth2's DeviceAuth sends no client authentication;
				// oidc-provider (rightly, RFC 8628 §3.1) demands it of a
				// confidential client.
				if _, err := conf.DeviceAuth(ctx); err == nil {
					t.Fatal("device authorization without client authentication succeeded")
				}
				conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
				ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: basicAuth{"tv", tc.secret}})
			}
			da, err := conf.DeviceAuth(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if da.UserCode == "" || da.VerificationURI != o.Issuer+"/device" || !strings.Contains(da.VerificationURIComplete, "user_code=") || da.Interval != 1 {
				t.Fatalf("device authorization = %+v", da)
			}
			// Polls before approval: authorization_pending, not invalid_grant.
			pctx, pcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			if _, err := conf.DeviceAccessToken(pctx, da); err == nil {
				t.Fatal("token before approval")
			}
			pcancel()
			approveDevice(t, o.Issuer, da.UserCode)
			tok, err := conf.DeviceAccessToken(ctx, da)
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == "" || !o.Introspect(tok.AccessToken).Active {
				t.Errorf("device token: refresh token %t, active %t", tok.RefreshToken != "", o.Introspect(tok.AccessToken).Active)
			}
			s := o.Stats()
			if s.InvalidGrant != 0 || s.TokenSuccess["urn:ietf:params:oauth:grant-type:device_code"] != 1 || s.DeviceAuthorizations != 1 {
				t.Errorf("stats = %+v", s)
			}
			// A used user code cannot be approved again.
			p := testutil.NewBrowser(t).Open(o.Issuer + "/device?user_code=" + url.QueryEscape(da.UserCode))
			if strings.Contains(p.Body, "device approved") {
				t.Errorf("a used user code was approved again")
			}
		})
	}
}

// basicAuth adds HTTP Basic client authentication to every request that has
// none.
type basicAuth struct{ id, secret string }

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	if _, _, ok := r.BasicAuth(); !ok {
		r = r.Clone(r.Context())
		r.SetBasicAuth(url.QueryEscape(b.id), url.QueryEscape(b.secret))
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestHarnessRegistration(t *testing.T) {
	t.Parallel()
	o := oidcop.Start(t, oidcop.Config{})
	body, _ := json.Marshal(map[string]any{
		"client_name":                "e2e",
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"redirect_uris":              []string{},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	resp, err := http.Post(o.Issuer+"/reg", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || resp.StatusCode != http.StatusCreated || reg.ClientID == "" || reg.ClientSecret == "" {
		t.Fatalf("registration: %s %+v %v", resp.Status, reg, err)
	}
	conf := clientcredentials.Config{ClientID: reg.ClientID, ClientSecret: reg.ClientSecret, TokenURL: o.Issuer + "/token"}
	if _, err := conf.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := o.Stats(); s.Registrations != 1 {
		t.Errorf("registrations = %d, want 1", s.Registrations)
	}
}
