package e2e

// DPoP (RFC 9449) against oidc-provider, which verifies the
// proofs tokend sends with its token requests and binds the tokens (cnf.jkt
// in introspection): client_credentials with and without server nonces,
// authorization_code with a DPoP-bound refresh token (public client), the
// proofs programs get from POST /v1/tokens/NAME/dpop and `tokend token NAME
// --dpop METHOD URL` accepted once by an independent resource server and
// refused replayed or re-targeted, and a provider that ignores DPoP.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// dpopHeaders runs `tokend token GRANT --dpop METHOD URL` and returns the
// two header values it prints.
func dpopHeaders(t *testing.T, td *Tokend, grant, method, target string) (authorization, proof string) {
	t.Helper()
	return headerLines(t, td, td.MustCLI("token", grant, "--dpop", method, target))
}

// headerLines reads the two header lines of `tokend token --dpop`.
func headerLines(t *testing.T, td *Tokend, out string) (authorization, proof string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "Authorization":
			authorization = v
		case "DPoP":
			proof = v
		default:
			t.Errorf("tokend token --dpop printed an unexpected line (%d chars)", len(l))
		}
	}
	if !strings.HasPrefix(authorization, "DPoP ") || proof == "" {
		t.Fatalf("tokend token --dpop printed no Authorization: DPoP and DPoP lines (%d chars)", len(out))
	}
	td.NoLeak(proof)
	return authorization, proof
}

// storedDPoPKeys returns the private parts ("d") of the EC JWKs found in an
// unsealed store: the grants' DPoP keys.
func storedDPoPKeys(t *testing.T, s *Setup) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, "tokend.db"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range storedKeyRe.FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	if len(out) == 0 {
		t.Logf("no DPoP key found in the unsealed store (its layout changed?)")
	}
	return out
}

var storedKeyRe = regexp.MustCompile(`\\?"d\\?"\s*:\s*\\?"([A-Za-z0-9_-]{40,})\\?"`)

// dpopFetch asks POST /v1/tokens/GRANT/dpop for a proof.
func dpopFetch(t *testing.T, td *Tokend, grant string, req api.DPoPRequest) (api.DPoPResponse, int, string) {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := td.http.Post("http://tokend/v1/tokens/"+url.PathEscape(grant)+"/dpop", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST /v1/tokens/%s/dpop: %v", grant, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out api.DPoPResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("POST /v1/tokens/%s/dpop answered %q: %v", grant, body, err)
		}
		td.NoLeak(out.DPoP, out.AccessToken)
	}
	return out, resp.StatusCode, string(body)
}

// TestDPoPClientCredentials: a client_credentials grant with dpop: true
// gets DPoP-bound tokens (token_type DPoP; the provider binds them to one
// key, the same across renewals), also when the provider demands nonces;
// programs get proofs that a resource server accepts once, and refuses
// replayed, sent to another URL or with another method; a resource server
// that wants its own nonce gets it through --nonce and the socket's nonce.
func TestDPoPClientCredentials(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, nonce := range []bool{false, true} {
		t.Run(fmt.Sprintf("nonce=%t", nonce), func(t *testing.T) {
			t.Parallel()
			s := NewSetupNoCallback(t)
			op := oidcop.Start(t, oidcop.Config{ClientCredentialsTTL: 15, Clients: []map[string]any{
				ccClient("cc", "client_secret_basic", map[string]any{"client_secret": ccSecret}),
			}, DPoPNonce: nonce})
			cfg := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: cc\n    client_secret_file: %s\n    auth_method: client_secret_basic\n",
				s.SecretFile("cc", ccSecret)), ccGrant("    dpop: true\n")+strings.Replace(ccGrant(""), "  api:", "  plain:", 1))
			td := StartTokend(t, s, cfg)
			td.NoLeak(ccSecret)
			NoLeakSeen(t, td, op)
			rs := newResourceServer(t, op)

			// A grant without dpop beside it: Bearer, and no proofs for it.
			if plain := td.WaitToken("plain", 20*time.Second); plain.TokenType != "Bearer" {
				t.Errorf("grant without dpop: token_type %q, want Bearer", plain.TokenType)
			}
			if _, code, body := dpopFetch(t, td, "plain", api.DPoPRequest{Method: "GET", URL: rs.URL + "/x"}); code == 200 || !strings.Contains(strings.ToLower(body), "dpop") {
				t.Errorf("POST /v1/tokens/plain/dpop for a grant without dpop: %d %s, want a refusal naming dpop", code, body)
			}
			if out, errOut, code := td.CLI("token", "plain", "--dpop", "GET", rs.URL+"/x"); code == 0 || !strings.Contains(strings.ToLower(errOut), "dpop") {
				t.Errorf("tokend token plain --dpop: exit %d, stdout %d chars, stderr %q: want a failure naming dpop", code, len(out), errOut)
			}

			first := td.WaitToken("api", 20*time.Second)
			if first.TokenType != "DPoP" {
				t.Errorf("token_type %q, want DPoP", first.TokenType)
			}
			in := op.Introspect(first.AccessToken)
			if !in.Active || in.TokenType != "DPoP" || in.Cnf.JKT == "" {
				t.Fatalf("introspection = %+v, want an active DPoP token with cnf.jkt", in)
			}
			if st := td.Status("api"); !st.DPoP || st.State != api.StateValid {
				t.Errorf("status dpop %t state %q, want true, valid", st.DPoP, st.State)
			}

			// The CLI's header lines: accepted once; the same proof again,
			// or a proof for another URL or method, refused.
			target := rs.URL + "/things/1"
			authz, proof := dpopHeaders(t, td, "api", "GET", target+"?page=2#top")
			if authz != "DPoP "+first.AccessToken && authz != "DPoP "+td.MustToken("api").AccessToken {
				t.Errorf("Authorization line does not carry the grant's token")
			}
			if jkt := dpopThumbprint(t, proof); jkt != in.Cnf.JKT {
				t.Errorf("proof key %s, token bound to %s", jkt, in.Cnf.JKT)
			}
			if code, body := rs.call(t, "GET", target+"?page=2", authz, proof); code != 200 {
				t.Errorf("resource server refused tokend's proof: %d %s", code, body)
			}
			if code, _ := rs.call(t, "GET", target+"?page=2", authz, proof); code != 401 {
				t.Errorf("resource server accepted a replayed proof: %d", code)
			}
			authz, proof = dpopHeaders(t, td, "api", "GET", target)
			if code, _ := rs.call(t, "GET", rs.URL+"/things/2", authz, proof); code != 401 {
				t.Errorf("resource server accepted a proof made for another URL: %d", code)
			}
			if code, _ := rs.call(t, "DELETE", target, authz, proof); code != 401 {
				t.Errorf("resource server accepted a proof made for another method: %d", code)
			}

			// The socket API: a fresh proof for the request asked about.
			r, code, body := dpopFetch(t, td, "api", api.DPoPRequest{Method: "POST", URL: target})
			if code != 200 || r.TokenType != "DPoP" || r.DPoP == "" || r.AccessToken == "" || r.ExpiresIn <= 0 || r.ExpiresAt.IsZero() {
				t.Fatalf("POST /v1/tokens/api/dpop: %d %+v %s", code, r.TokenType, body)
			}
			if code, body := rs.call(t, "POST", target, "DPoP "+r.AccessToken, r.DPoP); code != 200 {
				t.Errorf("resource server refused the /dpop proof: %d %s", code, body)
			}
			for _, bad := range []api.DPoPRequest{{Method: "GET"}, {Method: "", URL: target}, {Method: "GET", URL: "not a url"}} {
				if _, code, _ := dpopFetch(t, td, "api", bad); code != http.StatusBadRequest {
					t.Errorf("POST /dpop %+v answered %d, want 400", bad, code)
				}
			}

			// A resource server that wants its nonce in proofs: the CLI's
			// --nonce and the socket's nonce put it there.
			rs.requireNonce("rs-nonce-" + randomID())
			authz, proof = dpopHeaders(t, td, "api", "GET", target)
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", authz)
			req.Header.Set("DPoP", proof)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			rsNonce := resp.Header.Get("DPoP-Nonce")
			if resp.StatusCode != 401 || rsNonce == "" {
				t.Fatalf("resource server wanting a nonce answered %d, nonce %q", resp.StatusCode, rsNonce)
			}
			out := td.MustCLI("token", "api", "--dpop", "GET", target, "--nonce", rsNonce)
			authz, proof = headerLines(t, td, out)
			if code, body := rs.call(t, "GET", target, authz, proof); code != 200 {
				t.Errorf("resource server refused a proof made with --nonce: %d %s", code, body)
			}
			r, code, body = dpopFetch(t, td, "api", api.DPoPRequest{Method: "GET", URL: target, Nonce: rsNonce})
			if code != 200 {
				t.Fatalf("POST /dpop with a nonce: %d %s", code, body)
			}
			if code, body := rs.call(t, "GET", target, "DPoP "+r.AccessToken, r.DPoP); code != 200 {
				t.Errorf("resource server refused a /dpop proof made with its nonce: %d %s", code, body)
			}
			rs.requireNonce("")

			// Renewed with a proof of the same key.
			var second api.TokenResponse
			eventually(t, 25*time.Second, 250*time.Millisecond, "a renewed token", func() error {
				second = td.MustToken("api")
				if second.AccessToken == first.AccessToken {
					return fmt.Errorf("still the first token")
				}
				return nil
			})
			if in2 := op.Introspect(second.AccessToken); in2.TokenType != "DPoP" || in2.Cnf.JKT != in.Cnf.JKT {
				t.Errorf("renewed token bound to %q (type %s), want the same key %q", in2.Cnf.JKT, in2.TokenType, in.Cnf.JKT)
			}
			authz, proof = dpopHeaders(t, td, "api", "GET", target)
			if code, body := rs.call(t, "GET", target, authz, proof); code != 200 {
				t.Errorf("resource server refused a proof after renewal: %d %s", code, body)
			}

			st := op.Stats()
			if st.DPoPTokens < 2 || len(st.DPoPErrors) != 0 || st.TokenSuccess["client_credentials"] < 2 {
				t.Errorf("provider stats = %+v, want 2 DPoP tokens and no proof refused", st)
			}
			if nonce && st.UseDPoPNonce == 0 {
				t.Errorf("the provider never asked for a nonce: %+v", st)
			}
			// The store is unsealed here (no key_file): the DPoP key's
			// private part is readable in it, and must be in no log.
			td.NoLeak(storedDPoPKeys(t, s)...)
			if out := td.MustCLI("status", "api", "--json"); strings.Contains(out, proof) || strings.Contains(out, "\"d\"") {
				t.Errorf("status shows a proof or a private key")
			}
		})
	}
}

// TestDPoPAuthorizationCode: a public client's authorization_code grant
// with dpop: true: the code exchange and every refresh carry proofs of the
// grant's key (oidc-provider binds a public client's refresh token to it
// and refuses a refresh with another key).
func TestDPoPAuthorizationCode(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	c := authClient{"none", ""}
	op := oidcop.Start(t, oidcop.Config{AccessTokenTTL: 60, Clients: []map[string]any{{
		"client_id": "app", "grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"redirect_uris": []string{"http://127.0.0.1/callback"}, "token_endpoint_auth_method": "none",
	}}})
	s := NewSetup(t)
	cfg := strings.Replace(codeConfig(s, op.Issuer, c), "    type: authorization_code\n", "    type: authorization_code\n    dpop: true\n", 1)
	td := StartTokend(t, s, cfg)
	NoLeakSeen(t, td, op)

	authorizeInBrowser(t, op, td, "web")
	tok := td.WaitToken("web", 10*time.Second)
	in := op.Introspect(tok.AccessToken)
	if tok.TokenType != "DPoP" || in.TokenType != "DPoP" || in.Cnf.JKT == "" {
		t.Fatalf("token_type %q, introspection %+v: want DPoP-bound", tok.TokenType, in)
	}
	for i := range 2 {
		td.MustCLI("refresh", "web")
		next := td.MustToken("web")
		if next.AccessToken == tok.AccessToken {
			t.Fatalf("refresh %d left the same token", i+1)
		}
		if in2 := op.Introspect(next.AccessToken); !in2.Active || in2.Cnf.JKT != in.Cnf.JKT {
			t.Errorf("refresh %d: token bound to %q, want %q", i+1, in2.Cnf.JKT, in.Cnf.JKT)
		}
		tok = next
	}
	rs := newResourceServer(t, op)
	authz, proof := dpopHeaders(t, td, "web", "GET", rs.URL+"/me")
	if code, body := rs.call(t, "GET", rs.URL+"/me", authz, proof); code != 200 {
		t.Errorf("resource server refused the proof: %d %s", code, body)
	}
	if st := op.Stats(); st.InvalidGrant != 0 || len(st.DPoPErrors) != 0 || st.TokenSuccess["refresh_token"] != 2 || st.DPoPTokens != 3 {
		t.Errorf("provider stats = %+v, want 3 DPoP tokens (code, 2 refreshes), no error", st)
	}
	if rt := op.RefreshTokens("app"); rt.Active != 1 || rt.Consumed != 2 {
		t.Errorf("refresh tokens = %+v, want 1 active, 2 consumed", rt)
	}

	// Reauthorization rotates the key: the new token is bound to another.
	authorizeInBrowser(t, op, td, "web")
	eventually(t, 10*time.Second, 100*time.Millisecond, "a token after reauthorization", func() error {
		if td.MustToken("web").AccessToken == tok.AccessToken {
			return fmt.Errorf("still the old token")
		}
		return nil
	})
	if in3 := op.Introspect(td.MustToken("web").AccessToken); !in3.Active || in3.Cnf.JKT == "" || in3.Cnf.JKT == in.Cnf.JKT {
		t.Errorf("after reauthorization the token is bound to %q, want a new key (was %q)", in3.Cnf.JKT, in.Cnf.JKT)
	}
}

// TestDPoPDowngrade: a provider that ignores DPoP answers a Bearer token;
// tokend with dpop: true keeps no such token and says why in status.
func TestDPoPDowngrade(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	off := false
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{
		ccClient("cc", "client_secret_basic", map[string]any{"client_secret": ccSecret}),
	}, DPoP: &off})
	cfg := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: cc\n    client_secret_file: %s\n    auth_method: client_secret_basic\n",
		s.SecretFile("cc", ccSecret)), ccGrant("    dpop: true\n"))
	td := StartTokend(t, s, cfg)
	td.NoLeak(ccSecret)

	st := waitFailure(t, td, "api")
	if st.State == api.StateValid || !strings.Contains(st.LastError, "DPoP") {
		t.Errorf("status state %q, last error %q: want a failure that names DPoP", st.State, st.LastError)
	}
	if tok, code, _ := td.Token("api"); code == 200 {
		t.Errorf("a %s token was served for a dpop grant", tok.TokenType)
	}
	if _, code, _ := dpopFetch(t, td, "api", api.DPoPRequest{Method: "GET", URL: "https://api.example/x"}); code == 200 {
		t.Errorf("POST /dpop answered 200 without a DPoP-bound token")
	}
}

// TestDPoPNonceLoop: a server that answers every proof with a new nonce
// (use_dpop_nonce) gets one retry per attempt, not a loop; the grant's
// status says what happened.
func TestDPoPNonceLoop(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{
		ccClient("cc", "client_secret_basic", map[string]any{"client_secret": ccSecret}),
	}, DPoPNonceLoop: true})
	cfg := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: cc\n    client_secret_file: %s\n    auth_method: client_secret_basic\n",
		s.SecretFile("cc", ccSecret)), ccGrant("    dpop: true\n"))
	td := StartTokend(t, s, cfg)
	td.NoLeak(ccSecret)
	NoLeakSeen(t, td, op)

	st := waitFailure(t, td, "api")
	if st.State == api.StateValid || !strings.Contains(strings.ToLower(st.LastError), "nonce") {
		t.Errorf("state %q, last error %q: want a failure that names the nonce", st.State, st.LastError)
	}
	if _, code, _ := td.Token("api"); code == 200 {
		t.Errorf("a token was served")
	}
	// Every attempt is one request and one retry with the nonce given.
	n := op.Stats().TokenRequests["nonce-loop"]
	failures := td.Status("api").Failures
	if n == 0 || n > 2*failures+2 {
		t.Errorf("%d token requests for %d failed attempts: want at most one retry per attempt", n, failures)
	}
}

// TestDPoPReload: turning dpop on for a grant in the configuration and
// reloading (SIGHUP) gets a DPoP-bound token at once, not when the Bearer
// one would have been renewed (tokens live 5 minutes here); turning it off
// again gets a Bearer token.
func TestDPoPReload(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	op := oidcop.Start(t, oidcop.Config{ClientCredentialsTTL: 300, Clients: []map[string]any{
		ccClient("cc", "client_secret_basic", map[string]any{"client_secret": ccSecret}),
	}})
	plain := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: cc\n    client_secret_file: %s\n    auth_method: client_secret_basic\n",
		s.SecretFile("cc", ccSecret)), ccGrant(""))
	td := StartTokend(t, s, plain)
	td.NoLeak(ccSecret)
	NoLeakSeen(t, td, op)

	bearer := td.WaitToken("api", 20*time.Second)
	if bearer.TokenType != "Bearer" {
		t.Fatalf("token_type %q before dpop, want Bearer", bearer.TokenType)
	}
	for _, step := range []struct {
		cfg, want string
	}{
		{strings.Replace(plain, "    scopes: [api:read]\n", "    scopes: [api:read]\n    dpop: true\n", 1), "DPoP"},
		{plain, "Bearer"},
	} {
		writeFile(t, td.cfgPath, step.cfg)
		td.hup()
		eventually(t, 15*time.Second, 100*time.Millisecond, "a "+step.want+" token after reload", func() error {
			tok, code, body := td.Token("api")
			if code != http.StatusOK {
				return fmt.Errorf("%d %s", code, body)
			}
			if tok.TokenType != step.want {
				return fmt.Errorf("token_type %q", tok.TokenType)
			}
			in := op.Introspect(tok.AccessToken)
			if !in.Active || (in.Cnf.JKT != "") != (step.want == "DPoP") {
				return fmt.Errorf("served a %s token whose introspection is %+v", tok.TokenType, in)
			}
			return nil
		})
	}
	if st := op.Stats(); st.TokenSuccess["client_credentials"] != 3 || st.DPoPTokens != 1 {
		t.Errorf("provider stats = %+v, want 3 tokens, one DPoP-bound", st)
	}
}
