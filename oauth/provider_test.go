package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestClientCredentials(t *testing.T) {
	for _, m := range authMethods {
		t.Run(string(m), func(t *testing.T) {
			clock := newClock()
			start := clock.Now()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkForm(t, r, "/token", m, url.Values{
					"grant_type": {"client_credentials"},
					"scope":      {"reports:read reports:write"},
					"audience":   {"https://api.example.com"},
					"resource":   {"https://res.example.com"},
				})
				// Time passes while the provider works: Obtained must be
				// the time the request was sent.
				clock.Advance(5 * time.Second)
				writeJSON(w, 200, map[string]any{
					"access_token": "at-1", "token_type": "bearer", "expires_in": 3600,
					"scope": "reports:read",
				})
			}))
			defer srv.Close()
			p := newTestProvider(srv, m, clock)
			tok, err := p.ClientCredentials(context.Background(), []string{"reports:read", "reports:write"},
				Params{"audience": "https://api.example.com", "resource": "https://res.example.com"})
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.AccessToken.Reveal(); got != "at-1" {
				t.Errorf("AccessToken = %q", got)
			}
			if tok.TokenType != "Bearer" {
				t.Errorf("TokenType = %q, want Bearer", tok.TokenType)
			}
			if tok.Scope != "reports:read" {
				t.Errorf("Scope = %q", tok.Scope)
			}
			if !tok.Obtained.Equal(start) {
				t.Errorf("Obtained = %v, want %v (before the request)", tok.Obtained, start)
			}
			if tok.ExpiresIn != time.Hour || !tok.Expiry.Equal(start.Add(time.Hour)) {
				t.Errorf("ExpiresIn, Expiry = %v, %v; want 1h, %v", tok.ExpiresIn, tok.Expiry, start.Add(time.Hour))
			}
			if !tok.RefreshToken.IsZero() || !tok.IDToken.IsZero() || !tok.RefreshExpiry.IsZero() {
				t.Errorf("unexpected refresh/id token or refresh expiry: %+v", tok)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	cases := []struct {
		name   string
		answer map[string]any
		want   string // refresh token returned
	}{
		{"rotation", map[string]any{"access_token": "at-2", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt-2"}, "rt-2"},
		{"same refresh token", map[string]any{"access_token": "at-2", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt-1"}, "rt-1"},
		{"no refresh token", map[string]any{"access_token": "at-2", "token_type": "Bearer", "expires_in": 60}, ""},
		{"empty refresh token", map[string]any{"access_token": "at-2", "token_type": "Bearer", "expires_in": 60, "refresh_token": ""}, ""},
	}
	for _, m := range authMethods {
		for _, c := range cases {
			t.Run(string(m)+"/"+c.name, func(t *testing.T) {
				clock := newClock()
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					checkForm(t, r, "/token", m, url.Values{
						"grant_type":    {"refresh_token"},
						"refresh_token": {"rt-1"},
						"scope":         {"openid offline_access"},
						"resource":      {"https://res.example.com"},
					})
					writeJSON(w, 200, c.answer)
				}))
				defer srv.Close()
				p := newTestProvider(srv, m, clock)
				tok, err := p.Refresh(context.Background(), NewSecret("rt-1"), []string{"openid", "offline_access"}, Params{"resource": "https://res.example.com"})
				if err != nil {
					t.Fatal(err)
				}
				if tok.AccessToken.Reveal() != "at-2" {
					t.Errorf("AccessToken = %q", tok.AccessToken.Reveal())
				}
				if got := tok.RefreshToken.Reveal(); got != c.want {
					t.Errorf("RefreshToken = %q, want %q", got, c.want)
				}
				if !tok.Expiry.Equal(clock.Now().Add(time.Minute)) {
					t.Errorf("Expiry = %v", tok.Expiry)
				}
			})
		}
	}
}

func TestRefreshWithoutScopesOrParams(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checkForm(t, r, "/token", AuthBasic, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}})
		writeJSON(w, 200, map[string]any{"access_token": "at-2", "token_type": "Bearer"})
	}))
	defer srv.Close()
	if _, err := newTestProvider(srv, AuthBasic, newClock()).Refresh(context.Background(), NewSecret("rt-1"), nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAuthCodeURLAndExchange(t *testing.T) {
	for _, m := range authMethods {
		t.Run(string(m), func(t *testing.T) {
			verifier := NewVerifier()
			if n := len(verifier.Reveal()); n != 43 {
				t.Fatalf("verifier length %d, want 43", n)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkForm(t, r, "/token", m, url.Values{
					"grant_type":    {"authorization_code"},
					"code":          {"code-1"},
					"code_verifier": {verifier.Reveal()},
					"redirect_uri":  {"http://127.0.0.1:8785/callback"},
					"audience":      {"aud"},
				})
				writeJSON(w, 200, map[string]any{
					"access_token": "at-1", "token_type": "BEARER", "expires_in": 300,
					"refresh_token": "rt-1", "id_token": "id.token.sig", "scope": "openid",
				})
			}))
			defer srv.Close()
			p := newTestProvider(srv, m, newClock())
			state := NewState()
			raw := p.AuthCodeURL(AuthRequest{
				State: state, Verifier: verifier, Nonce: "n-1",
				Scopes: []string{"openid", "offline_access"},
				Params: Params{"prompt": "consent", "state": "attacker", "code_challenge_method": "plain"},
			})
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if u.Path != "/authorize" {
				t.Errorf("path = %s", u.Path)
			}
			sum := sha256.Sum256([]byte(verifier.Reveal()))
			want := url.Values{
				"response_type":         {"code"},
				"client_id":             {testClientID},
				"redirect_uri":          {"http://127.0.0.1:8785/callback"},
				"scope":                 {"openid offline_access"},
				"state":                 {state},
				"code_challenge_method": {"S256"},
				"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
				"nonce":                 {"n-1"},
				"prompt":                {"consent"},
			}
			if got := u.Query(); got.Encode() != want.Encode() {
				t.Errorf("query =\n  %s\nwant\n  %s", got.Encode(), want.Encode())
			}
			if strings.Contains(raw, verifier.Reveal()) {
				t.Error("authorization URL contains the verifier")
			}

			tok, err := p.Exchange(context.Background(), "code-1", verifier, Params{"audience": "aud"})
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken.Reveal() != "at-1" || tok.RefreshToken.Reveal() != "rt-1" || tok.IDToken.Reveal() != "id.token.sig" {
				t.Errorf("token = %q %q %q", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal(), tok.IDToken.Reveal())
			}
			if tok.TokenType != "Bearer" || tok.Scope != "openid" || tok.ExpiresIn != 5*time.Minute {
				t.Errorf("TokenType, Scope, ExpiresIn = %q, %q, %v", tok.TokenType, tok.Scope, tok.ExpiresIn)
			}
		})
	}
}

func TestAuthCodeURLWithoutPKCE(t *testing.T) {
	p := &Provider{Endpoints: Endpoints{Authorization: "https://id.example.com/auth?tenant=x"}, Client: Client{ID: "c"}}
	u, err := url.Parse(p.AuthCodeURL(AuthRequest{State: "s"}))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("tenant") != "x" || q.Get("state") != "s" || q.Has("code_challenge") || q.Has("nonce") || q.Has("scope") {
		t.Errorf("query = %s", q.Encode())
	}
}

func TestPassword(t *testing.T) {
	for _, m := range authMethods {
		t.Run(string(m), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				checkForm(t, r, "/token", m, url.Values{
					"grant_type": {"password"},
					"username":   {"svc-reports"},
					"password":   {"pa ss&word"},
					"scope":      {"read"},
					"audience":   {"aud"},
				})
				writeJSON(w, 200, map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 60, "refresh_token": "rt-1"})
			}))
			defer srv.Close()
			tok, err := newTestProvider(srv, m, newClock()).Password(context.Background(), "svc-reports", NewSecret("pa ss&word"), []string{"read"}, Params{"audience": "aud"})
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken.Reveal() != "at-1" || tok.RefreshToken.Reveal() != "rt-1" {
				t.Errorf("token = %q, %q", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal())
			}
		})
	}
}

func TestTokenFields(t *testing.T) {
	cases := []struct {
		name, ct, body string
		check          func(t *testing.T, tok *Token, now time.Time)
	}{
		{"lowercase bearer", "application/json", `{"access_token":"a","token_type":"bearer","expires_in":10}`, func(t *testing.T, tok *Token, now time.Time) {
			if tok.TokenType != "Bearer" {
				t.Errorf("TokenType = %q", tok.TokenType)
			}
		}},
		{"expires_in as string", "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":"3600"}`, func(t *testing.T, tok *Token, now time.Time) {
			if tok.ExpiresIn != time.Hour || !tok.Expiry.Equal(now.Add(time.Hour)) {
				t.Errorf("ExpiresIn, Expiry = %v, %v", tok.ExpiresIn, tok.Expiry)
			}
		}},
		{"missing expires_in", "application/json", `{"access_token":"a","token_type":"Bearer"}`, func(t *testing.T, tok *Token, now time.Time) {
			if tok.ExpiresIn != 0 || !tok.Expiry.IsZero() {
				t.Errorf("ExpiresIn, Expiry = %v, %v; want zero", tok.ExpiresIn, tok.Expiry)
			}
		}},
		{"refresh_token_expires_in", "application/json", `{"access_token":"a","token_type":"Bearer","expires_in":3600,"refresh_token":"r","refresh_token_expires_in":86400}`, func(t *testing.T, tok *Token, now time.Time) {
			if !tok.RefreshExpiry.Equal(now.Add(24 * time.Hour)) {
				t.Errorf("RefreshExpiry = %v", tok.RefreshExpiry)
			}
		}},
		{"refresh_expires_in as string", "application/json", `{"access_token":"a","token_type":"Bearer","refresh_token":"r","refresh_expires_in":"1800"}`, func(t *testing.T, tok *Token, now time.Time) {
			if !tok.RefreshExpiry.Equal(now.Add(30 * time.Minute)) {
				t.Errorf("RefreshExpiry = %v", tok.RefreshExpiry)
			}
		}},
		{"refresh_expires_in zero (Keycloak offline)", "application/json", `{"access_token":"a","token_type":"Bearer","refresh_token":"r","refresh_expires_in":0}`, func(t *testing.T, tok *Token, now time.Time) {
			if !tok.RefreshExpiry.IsZero() {
				t.Errorf("RefreshExpiry = %v, want zero", tok.RefreshExpiry)
			}
		}},
		{"no token_type", "application/json", `{"access_token":"a"}`, func(t *testing.T, tok *Token, now time.Time) {
			if tok.TokenType != "Bearer" {
				t.Errorf("TokenType = %q", tok.TokenType)
			}
		}},
		{"form-encoded (GitHub)", "application/x-www-form-urlencoded", `access_token=a&token_type=bearer&scope=repo%2Cuser&expires_in=28800&refresh_token=r&refresh_token_expires_in=15811200`, func(t *testing.T, tok *Token, now time.Time) {
			if tok.TokenType != "Bearer" || tok.Scope != "repo,user" || tok.ExpiresIn != 8*time.Hour || tok.RefreshToken.Reveal() != "r" {
				t.Errorf("token = %q %q %v %q", tok.TokenType, tok.Scope, tok.ExpiresIn, tok.RefreshToken.Reveal())
			}
			if !tok.RefreshExpiry.Equal(now.Add(15811200 * time.Second)) {
				t.Errorf("RefreshExpiry = %v", tok.RefreshExpiry)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", c.ct)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			clock := newClock()
			tok, err := newTestProvider(srv, AuthBasic, clock).ClientCredentials(context.Background(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken.Reveal() != "a" {
				t.Errorf("AccessToken = %q", tok.AccessToken.Reveal())
			}
			c.check(t, tok, clock.Now())
		})
	}
}

func TestRequestConfigurationErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request to %s", r.URL.Path)
	}))
	defer srv.Close()
	ctx := context.Background()

	p := newTestProvider(srv, AuthBasic, newClock())
	_, err := p.ClientCredentials(ctx, nil, Params{"grant_type": "password"})
	if ClassOf(err) != Configuration || !strings.Contains(err.Error(), `"grant_type"`) {
		t.Errorf("reserved param: %v (%v)", err, ClassOf(err))
	}
	_, err = p.Refresh(ctx, NewSecret("rt"), nil, Params{"refresh_token": "other"})
	if ClassOf(err) != Configuration {
		t.Errorf("reserved param in refresh: %v", err)
	}

	p.Client.AuthMethod = "private_key_jwt"
	_, err = p.ClientCredentials(ctx, nil, nil)
	if ClassOf(err) != Configuration {
		t.Errorf("unsupported auth method: %v", err)
	}

	p = newTestProvider(srv, AuthBasic, newClock())
	p.Endpoints = Endpoints{}
	for name, f := range map[string]func() error{
		"exchange": func() error { _, err := p.Exchange(ctx, "c", Secret{}, nil); return err },
		"refresh":  func() error { _, err := p.Refresh(ctx, NewSecret("r"), nil, nil); return err },
		"device":   func() error { _, err := p.StartDevice(ctx, nil, nil); return err },
		"revoke":   func() error { return p.Revoke(ctx, NewSecret("r"), "") },
	} {
		if err := f(); ClassOf(err) != Configuration || !strings.Contains(err.Error(), "endpoint") {
			t.Errorf("%s without endpoint: %v", name, err)
		}
	}
}

func TestEmptyAuthMethodDefaults(t *testing.T) {
	for _, withSecret := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m := AuthNone
			if withSecret {
				m = AuthBasic
			}
			checkForm(t, r, "/token", m, url.Values{"grant_type": {"client_credentials"}})
			writeJSON(w, 200, map[string]any{"access_token": "a"})
		}))
		p := newTestProvider(srv, "", newClock())
		if !withSecret {
			p.Client.Secret = Secret{}
		}
		if _, err := p.ClientCredentials(context.Background(), nil, nil); err != nil {
			t.Errorf("withSecret=%v: %v", withSecret, err)
		}
		srv.Close()
	}
}

func TestTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := newTestProvider(srv, AuthBasic, newClock())
	srv.Close() // nothing listens any more

	_, err := p.Refresh(context.Background(), NewSecret("rt-secret"), nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Class != Transient || e.Status != 0 || e.Op != "refresh" {
		t.Fatalf("err = %#v", err)
	}
	if !strings.HasPrefix(err.Error(), "oauth: refresh: ") {
		t.Errorf("message %q", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.ClientCredentials(ctx, nil, nil)
	if ClassOf(err) != Transient || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
