package main

import (
	"strings"
	"testing"
)

func TestTokenDPoP(t *testing.T) {
	ok := `{"access_token":"at-1","token_type":"DPoP","dpop":"eyJh.eyJi.c2ln","expires_in":60,"expires_at":"2026-11-23T11:00:00Z"}`
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/tokens/api/dpop":    {{200, ok}},
		"POST /v1/tokens/plain/dpop":  {{400, `{"error":"dpop_not_enabled","error_description":"grant plain does not use DPoP (set dpop: true)"}`}},
		"POST /v1/tokens/evil/dpop":   {{200, `{"access_token":"at\r\nX-Evil: 1","token_type":"DPoP","dpop":"a.b.c"}`}},
		"POST /v1/tokens/escape/dpop": {{200, `{"access_token":"at","token_type":"DPoP","dpop":"a.b\u001b[31m"}`}},
		"POST /v1/tokens/reauth/dpop": {{409, `{"error":"reauthorization_required","error_description":"the refresh token was rejected"}`}},
	})
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"two header lines", []string{"token", "api", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, 0,
			"Authorization: DPoP at-1\nDPoP: eyJh.eyJi.c2ln\n", ""},
		{"with nonce", []string{"token", "--socket", f.socket, "api", "--dpop", "POST", "https://api.example/x", "--nonce", "n-1"}, 0,
			"Authorization: DPoP at-1\nDPoP: eyJh.eyJi.c2ln\n", ""},
		{"not a dpop grant", []string{"token", "plain", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, exitError, "",
			"grant plain does not use DPoP"},
		{"header injection", []string{"token", "evil", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, exitError, "", "not printing it"},
		{"terminal escape", []string{"token", "escape", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, exitError, "", "not printing it"},
		{"reauthorization", []string{"token", "reauth", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, exitReauth, "", "tokend authorize reauth"},
		{"no url", []string{"token", "api", "--dpop", "GET", "--socket", f.socket}, exitUsage, "", "needs METHOD and URL"},
		{"nonce alone", []string{"token", "api", "--nonce", "n", "--socket", f.socket}, exitUsage, "", "--nonce goes with --dpop"},
		{"json", []string{"token", "api", "--json", "--dpop", "GET", "https://api.example/x", "--socket", f.socket}, exitUsage, "", "do not go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCLI()
			code := tc.run(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, tc.errOut.String())
			}
			if tc.out.String() != tt.stdout {
				t.Errorf("stdout %q, want %q", tc.out.String(), tt.stdout)
			}
			if !strings.Contains(tc.errOut.String(), tt.stderr) || tt.stderr == "" && tc.errOut.Len() > 0 {
				t.Errorf("stderr %q, want %q", tc.errOut.String(), tt.stderr)
			}
			if strings.ContainsAny(tc.errOut.String(), "\x1b\r") {
				t.Errorf("stderr has control characters: %q", tc.errOut.String())
			}
		})
	}
}

func TestStatusShowsDPoPAndSubject(t *testing.T) {
	st := `{"name":"down","type":"token_exchange","provider":"corp","state":"valid","dpop":true,"subject_grant":"user","generation":3}`
	f := newFakeDaemon(t, map[string][]reply{"GET /v1/tokens/down/status": {{200, st}}})
	tc := newTestCLI()
	if code := tc.run("status", "down", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	out := tc.out.String()
	for _, want := range []string{"subject grant:  user\n", "dpop:           yes (sender-constrained: proofs from tokend token down --dpop METHOD URL)\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
