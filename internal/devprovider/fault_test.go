package devprovider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// rawPost sends a password grant and returns the raw answer or the
// transport error.
func rawPost(ctx context.Context, s *Server, form url.Values) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(basicClient.ID), url.QueryEscape(basicClient.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestFaults(t *testing.T) {
	o := baseOptions()
	o.Rotate = true
	for _, tc := range []struct {
		fault Fault
		// check inspects the answer to the faulted request (err is the
		// transport error).
		check func(t *testing.T, s *Server, resp *http.Response, body []byte, err error)
	}{
		{Fault{Kind: FaultDown}, func(t *testing.T, _ *Server, _ *http.Response, _ []byte, err error) {
			if err == nil {
				t.Fatal("request succeeded against a down server")
			}
		}},
		{Fault{Kind: FaultSlow, Delay: 20 * time.Millisecond}, wantStatus(200, "application/json", `"access_token":"at_`)},
		{Fault{Kind: Fault500}, wantStatus(500, "application/json", `"error":"server_error"`)},
		{Fault{Kind: Fault503, RetryAfter: 1500 * time.Millisecond}, both(wantStatus(503, "application/json", "temporarily_unavailable"), wantHeader("Retry-After", "2"))},
		{Fault{Kind: Fault503}, wantHeader("Retry-After", "")},
		{Fault{Kind: Fault429, RetryAfter: 30 * time.Second}, both(wantStatus(429, "text/plain", "too many"), wantHeader("Retry-After", "30"))},
		{Fault{Kind: Fault429}, wantHeader("Retry-After", "1")},
		{Fault{Kind: FaultHTML}, wantStatus(200, "text/html", "<html>")},
		{Fault{Kind: FaultHTML502}, wantStatus(502, "text/html", "Bad Gateway")},
		{Fault{Kind: FaultEmpty}, func(t *testing.T, _ *Server, resp *http.Response, body []byte, err error) {
			wantStatus(200, "application/json", "")(t, nil, resp, body, err)
			if len(body) != 0 {
				t.Fatalf("body %q, want empty", body)
			}
		}},
		{Fault{Kind: FaultHuge}, func(t *testing.T, _ *Server, resp *http.Response, body []byte, err error) {
			wantStatus(200, "application/json", `{"padding":"xxx`)(t, nil, resp, body, err)
			if len(body) < 10<<20 {
				t.Fatalf("body is %d bytes, want at least 10 MB", len(body))
			}
		}},
		{Fault{Kind: FaultNoAccessToken}, func(t *testing.T, _ *Server, resp *http.Response, body []byte, err error) {
			wantStatus(200, "application/json", `"token_type"`)(t, nil, resp, body, err)
			if strings.Contains(string(body), "access_token") {
				t.Fatalf("body %s has an access token", body)
			}
		}},
		{Fault{Kind: FaultErrorIn200}, wantStatus(200, "application/json", `{"error":"server_error"}`)},
		{Fault{Kind: FaultInvalidGrant}, wantStatus(400, "application/json", `"error":"invalid_grant"`)},
		{Fault{Kind: FaultInvalidClient}, both(wantStatus(401, "application/json", `"error":"invalid_client"`), wantHeader("WWW-Authenticate", `Basic realm="oauthtest"`))},
		{Fault{Kind: FaultInvalidRequestRefresh}, wantStatus(400, "application/json", `"error":"invalid_request","error_description":"Refresh token is invalid or has already been claimed by another client"`)},
		{Fault{Kind: FaultStringExpiresIn}, wantStatus(200, "application/json", `"expires_in":"30"`)},
		{Fault{Kind: FaultNoExpiresIn}, func(t *testing.T, s *Server, resp *http.Response, body []byte, err error) {
			wantStatus(200, "application/json", `"access_token":"at_`)(t, nil, resp, body, err)
			if strings.Contains(string(body), "expires_in") {
				t.Fatalf("body %s has expires_in", body)
			}
		}},
		{Fault{Kind: FaultNoRefreshToken}, func(t *testing.T, s *Server, resp *http.Response, body []byte, err error) {
			wantStatus(200, "application/json", `"access_token":"at_`)(t, nil, resp, body, err)
			if strings.Contains(string(body), "refresh_token") {
				t.Fatalf("body %s has a refresh token", body)
			}
		}},
		{Fault{Kind: FaultLowercaseBearer}, wantStatus(200, "application/json", `"token_type":"bearer"`)},
	} {
		t.Run(tc.fault.Kind.String(), func(t *testing.T) {
			s := mustServer(t, o)
			s.SetFault(Fault{Kind: tc.fault.Kind, Times: 1, RetryAfter: tc.fault.RetryAfter, Delay: tc.fault.Delay})
			resp, body, err := rawPost(ctx(t), s, passwordForm)
			tc.check(t, s, resp, body, err)
			// Times: 1 used the fault up.
			resp, body, err = rawPost(ctx(t), s, passwordForm)
			if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"expires_in":30,`) || !strings.Contains(string(body), `"token_type":"Bearer"`) {
				t.Fatalf("after the fault: %v %s", err, body)
			}
			if st := s.Stats(); st.Faulted != 1 || st.TokenRequests != 2 {
				t.Fatalf("stats %+v, want 1 faulted of 2", st)
			}
		})
	}
}

func wantStatus(status int, contentType, bodyPart string) func(*testing.T, *Server, *http.Response, []byte, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, body []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != status || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) || !strings.Contains(string(body), bodyPart) {
			t.Fatalf("got %d %q %.200s, want %d %q containing %q", resp.StatusCode, resp.Header.Get("Content-Type"), body, status, contentType, bodyPart)
		}
	}
}

func wantHeader(key, value string) func(*testing.T, *Server, *http.Response, []byte, error) {
	return func(t *testing.T, _ *Server, resp *http.Response, _ []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get(key); got != value {
			t.Fatalf("%s = %q, want %q", key, got, value)
		}
	}
}

func both(a, b func(*testing.T, *Server, *http.Response, []byte, error)) func(*testing.T, *Server, *http.Response, []byte, error) {
	return func(t *testing.T, s *Server, resp *http.Response, body []byte, err error) {
		t.Helper()
		a(t, s, resp, body, err)
		b(t, s, resp, body, err)
	}
}

// Every fault kind has a name and a case in TestFaults.
func TestFaultKindNames(t *testing.T) {
	if FaultDPoPNonceLoop.String() != "dpop_nonce_loop" || FaultDPoPDowngrade.String() != "dpop_downgrade" {
		t.Errorf("names: %v %v", FaultDPoPNonceLoop, FaultDPoPDowngrade)
	}
	if FaultLowercaseBearer.String() != "lowercase_bearer" || FaultKind(99).String() != "FaultKind(99)" {
		t.Fatalf("names: %v %v", FaultLowercaseBearer, FaultKind(99))
	}
}

func TestFaultsThroughOAuth2(t *testing.T) {
	s := mustServer(t, baseOptions())
	cfg := oauth2Config(s, basicClient, oauth2.AuthStyleInHeader)
	try := func(k FaultKind) (*oauth2.Token, error) {
		s.SetFault(Fault{Kind: k, Times: 1})
		return cfg.PasswordCredentialsToken(ctx(t), "alice", "wonderland")
	}
	if tok, err := try(FaultStringExpiresIn); err != nil || time.Until(tok.Expiry) < 20*time.Second {
		t.Fatalf("string expires_in: %v %v", tok, err)
	}
	if tok, err := try(FaultLowercaseBearer); err != nil || tok.TokenType != "bearer" {
		t.Fatalf("lowercase bearer: %v %v", tok, err)
	}
	for _, k := range []FaultKind{FaultHuge, FaultNoAccessToken, FaultErrorIn200, FaultEmpty, FaultHTML} {
		if tok, err := try(k); err == nil {
			t.Errorf("%v: x/oauth2 accepted %+v", k, tok)
		}
	}
	var re *oauth2.RetrieveError
	if _, err := try(FaultInvalidGrant); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("invalid_grant: %v", err)
	}
}

func TestFaultSelection(t *testing.T) {
	o := baseOptions()
	o.Rotate = true
	s := mustServer(t, o)
	first := post(t, s, "/token", postAuth, passwordForm)
	wantOK(t, first)

	// GrantTypes: only refreshes fail, and Times 0 lasts until cleared.
	s.SetFault(Fault{Kind: Fault503, GrantTypes: []string{GrantRefreshToken}})
	for range 3 {
		wantError(t, refresh(t, s, postAuth, first.str("refresh_token")), 503, "temporarily_unavailable")
		wantOK(t, post(t, s, "/token", postAuth, passwordForm))
	}
	s.ClearFault()
	// FaultNoRefreshToken does not rotate: the old refresh token stays good.
	s.SetFault(Fault{Kind: FaultNoRefreshToken, Times: 1})
	r := refresh(t, s, postAuth, first.str("refresh_token"))
	wantOK(t, r)
	if r.str("refresh_token") != "" || !s.RefreshValid(first.str("refresh_token")) {
		t.Fatalf("FaultNoRefreshToken: answer %s, old token valid %v", r.raw, s.RefreshValid(first.str("refresh_token")))
	}
	wantOK(t, refresh(t, s, postAuth, first.str("refresh_token")))

	// Endpoints: the revocation endpoint fails, the token endpoint works.
	s.SetFault(Fault{Kind: Fault500, Times: 2, Endpoints: []string{EndpointRevoke}})
	wantOK(t, post(t, s, "/token", postAuth, passwordForm))
	wantError(t, post(t, s, "/revoke", postAuth, url.Values{"token": {"x"}}), 500, "server_error")
	s.SetFault(Fault{Kind: FaultDown, Endpoints: []string{EndpointDevice}})
	if _, err := http.PostForm(s.URL()+"/device", url.Values{"client_id": {publicClient.ID}}); err == nil {
		t.Fatal("device endpoint answered while down")
	}
	if st := s.Stats(); st.Faulted != 6 {
		t.Fatalf("Faulted = %d, want 6", st.Faulted)
	}
}

func TestSlowFaultHonoursCancellation(t *testing.T) {
	s := mustServer(t, baseOptions())
	s.SetFault(Fault{Kind: FaultSlow, Delay: time.Hour})
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := rawPost(c, s, passwordForm); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	// Close must not wait an hour for the handler (the test would time out).
	s.SetLatency(time.Hour)
	done := make(chan struct{})
	go func() {
		rawPost(context.Background(), s, passwordForm)
		close(done)
	}()
	s.Close()
	<-done
}

func TestLatency(t *testing.T) {
	s := mustServer(t, baseOptions())
	s.SetLatency(30 * time.Millisecond)
	start := time.Now()
	wantOK(t, post(t, s, "/token", postAuth, passwordForm))
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("answered in %v despite 30 ms latency", d)
	}
	s.SetLatency(0)
}

// TestConcurrentRotation pushes many rotating families through the server
// at once (run with -race).
func TestConcurrentRotation(t *testing.T) {
	o := baseOptions()
	o.Rotate = true
	s := mustServer(t, o)
	const workers, rounds = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			r, err := tryPost(s, "/token", postAuth, passwordForm)
			if err != nil {
				errs <- err
				return
			}
			rt := r.str("refresh_token")
			for i := range rounds {
				r, err := tryPost(s, "/token", postAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
				if err != nil || r.status != 200 || r.str("refresh_token") == rt {
					errs <- fmt.Errorf("worker %d round %d: %v %d %s", w, i, err, r.status, r.raw)
					return
				}
				rt = r.str("refresh_token")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.Refreshes != workers*rounds || st.Reuses != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func BenchmarkRefresh(b *testing.B) {
	o := baseOptions()
	o.Rotate = true
	s := New(o)
	defer s.Close()
	b.RunParallel(func(pb *testing.PB) {
		r, err := tryPost(s, "/token", postAuth, passwordForm)
		if err != nil {
			b.Error(err)
			return
		}
		rt := r.str("refresh_token")
		for pb.Next() {
			r, err := tryPost(s, "/token", postAuth, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if err != nil || r.status != 200 {
				b.Errorf("refresh: %v %d %s", err, r.status, r.raw)
				return
			}
			rt = r.str("refresh_token")
		}
	})
}
