package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// answering is a token endpoint that answers every request with status,
// header and body as given (a provider that answers what it should not).
func answering(t *testing.T, status int, header map[string]string, body string) (*httptest.Server, *int) {
	t.Helper()
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Content-Type", "application/json")
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// A grant without DPoP answered with token_type DPoP gets a Configuration
// error in the provider's words, not a token nobody can use.
func TestUnrequestedDPoPTokenRefused(t *testing.T) {
	srv, _ := answering(t, 200, nil, `{"access_token":"at-1","token_type":"DPoP","expires_in":3600}`)
	p := newTestProvider(srv, AuthBasic, newClock())
	tok, err := p.ClientCredentials(context.Background(), nil, nil)
	if tok != nil || !errors.Is(err, ErrUnservable) || ClassOf(err) != Configuration || !strings.Contains(err.Error(), `token_type "DPoP"`) {
		t.Fatalf("token %v, err = %v (class %v)", tok, err, ClassOf(err))
	}
	if strings.Contains(err.Error(), "at-1") {
		t.Fatal("the access token is in the message")
	}
}

// A 200 without access_token is unservable (Configuration): asking again
// gets the same answer.
func TestAnswerWithoutAccessTokenIsUnservable(t *testing.T) {
	for _, c := range []struct{ ct, body string }{
		{"application/json", `{"token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}`},
		{"application/x-www-form-urlencoded", `token_type=bearer&refresh_token=rt-2`},
	} {
		srv, _ := answering(t, 200, map[string]string{"Content-Type": c.ct}, c.body)
		p := newTestProvider(srv, AuthBasic, newClock())
		_, err := p.Refresh(context.Background(), NewSecret("rt-1"), nil, nil)
		var e *Error
		if !errors.As(err, &e) || e.Class != Configuration || !errors.Is(err, ErrUnservable) || !strings.Contains(err.Error(), "without access_token") {
			t.Fatalf("%s: err = %v", c.ct, err)
		}
		if e.RefreshToken.Reveal() != "rt-2" || strings.Contains(err.Error(), "rt-2") {
			t.Fatalf("%s: the refresh token of the refused answer is %q", c.ct, e.RefreshToken.Reveal())
		}
	}
}

// Whatever refuses an answer, the refresh token it carries comes back in
// the error (and never in its message); the refresh token that was sent,
// echoed, does not.
func TestRefusedAnswerKeepsRefreshToken(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, body string
		dpop       bool
		class      Class
		keep       string
	}{
		{"downgrade", `{"access_token":"at-1","token_type":"Bearer","refresh_token":"rt-2","refresh_token_expires_in":600}`, true, Configuration, "rt-2"},
		{"unrequested dpop", `{"access_token":"at-1","token_type":"DPoP","refresh_token":"rt-2"}`, false, Configuration, "rt-2"},
		{"bad access token", `{"access_token":"at 1\r\nX: y","token_type":"Bearer","refresh_token":"rt-2"}`, false, Transient, "rt-2"},
		{"bad token type", `{"access_token":"at-1","token_type":"Bear er","refresh_token":"rt-2"}`, false, Transient, "rt-2"},
		{"echoed", `{"access_token":"at-1","token_type":"DPoP","refresh_token":"rt-1"}`, false, Configuration, ""},
		{"bad refresh token", `{"access_token":"at-1","token_type":"Bearer","refresh_token":"rt 2"}`, false, Transient, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, _ := answering(t, 200, nil, c.body)
			clock := newClock()
			p := newTestProvider(srv, AuthBasic, clock)
			if c.dpop {
				p = p.WithDPoP(k)
			}
			_, err := p.Refresh(context.Background(), NewSecret("rt-1"), nil, nil)
			var e *Error
			if !errors.As(err, &e) || e.Class != c.class {
				t.Fatalf("err = %v (class %v)", err, ClassOf(err))
			}
			if got := e.RefreshToken.Reveal(); got != c.keep {
				t.Fatalf("kept refresh token %q, want %q", got, c.keep)
			}
			if c.name == "downgrade" && !e.RefreshExpiry.Equal(clock.Now().Add(600e9)) {
				t.Errorf("refresh expiry %v", e.RefreshExpiry)
			}
			if strings.Contains(err.Error(), "rt-2") || strings.Contains(err.Error(), "at-1") {
				t.Fatalf("a token is in the message: %v", err)
			}
		})
	}
}

// A token exchange that asked for an access token and got a refresh token
// (token_type N_A) is refused, as is any type other than access token or
// JWT when none was asked for.
func TestTokenExchangeIssuedType(t *testing.T) {
	for _, c := range []struct {
		requested, issued string
		ok                bool
	}{
		{TokenTypeAccess, TokenTypeRefresh, false},
		{"", TokenTypeRefresh, false},
		{"", TokenTypeID, false},
		{TokenTypeAccess, TokenTypeAccess, true},
		{"", TokenTypeJWT, true},
		{"", "", true},
		{TokenTypeJWT, TokenTypeJWT, true},
		{TokenTypeJWT, TokenTypeAccess, false},
	} {
		body := `{"access_token":"issued-1","token_type":"N_A","expires_in":60`
		if c.issued != "" {
			body += `,"issued_token_type":"` + c.issued + `"`
		}
		srv, _ := answering(t, 200, nil, body+"}")
		p := newTestProvider(srv, AuthBasic, newClock())
		tok, err := p.TokenExchange(context.Background(), ExchangeRequest{SubjectToken: NewSecret("subject-1"), RequestedTokenType: c.requested})
		if c.ok {
			if err != nil {
				t.Errorf("requested %q issued %q: %v", c.requested, c.issued, err)
			}
			continue
		}
		if tok != nil || !errors.Is(err, ErrUnservable) || ClassOf(err) != Configuration || !strings.Contains(err.Error(), c.issued) {
			t.Errorf("requested %q issued %q: token %v, err %v", c.requested, c.issued, tok, err)
		}
	}
}

// A server demanding a DPoP nonce over 1 KiB gets a clear error, and the
// request is not re-sent with it; a longer nonce on a success is not kept.
func TestDPoPNonceBound(t *testing.T) {
	long := strings.Repeat("n", MaxDPoPNonce+1)
	srv, n := answering(t, 400, map[string]string{"DPoP-Nonce": long}, `{"error":"use_dpop_nonce"}`)
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(srv, AuthBasic, newClock()).WithDPoP(k)
	_, err = p.ClientCredentials(context.Background(), nil, nil)
	if !errors.Is(err, ErrDPoPNonceTooLong) || ClassOf(err) != Configuration || !strings.Contains(err.Error(), "1025 bytes") || *n != 1 {
		t.Fatalf("err = %v (class %v), %d requests", err, ClassOf(err), *n)
	}
	ok, _ := answering(t, 200, map[string]string{"DPoP-Nonce": long}, `{"access_token":"at-1","token_type":"DPoP"}`)
	p = newTestProvider(ok, AuthBasic, newClock()).WithDPoP(k)
	if _, err := p.ClientCredentials(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := k.Nonce(ok.URL + "/token"); got != "" {
		t.Fatalf("a %d-byte nonce was kept", len(got))
	}
	k.SetNonce(ok.URL, strings.Repeat("m", MaxDPoPNonce))
	if got := k.Nonce(ok.URL); len(got) != MaxDPoPNonce {
		t.Fatalf("a nonce of exactly the bound was not kept (%d)", len(got))
	}
}
