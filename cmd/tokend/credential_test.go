package main

import (
	"strings"
	"testing"
)

func TestCredentialHelpers(t *testing.T) {
	list := `{"grants":[{"name":"host","state":"valid","match":["https://git.example.com/"],"match_username":"oauth2"},` +
		`{"name":"team","state":"valid","match":["https://git.example.com/team/"],"match_username":"x-access-token"},` +
		`{"name":"stuck","state":"reauthorization_required","match":["https://stuck.example.com/"],"match_username":"oauth2"}]}`
	tok := `{"access_token":"at-team","token_type":"Bearer","expires_in":60,"expires_at":"2026-11-23T10:01:00Z"}`
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens":       {{200, list}},
		"GET /v1/tokens/team":  {{200, tok}},
		"GET /v1/tokens/host":  {{200, strings.Replace(tok, "at-team", "at-host", 1)}},
		"GET /v1/tokens/stuck": {{409, `{"error":"reauthorization_required","error_description":"the refresh token was rejected"}`}},
		"GET /v1/tokens/bad":   {{200, strings.Replace(tok, "at-team", "at team", 1)}},
		"GET /v1/tokens/bound": {{200, strings.Replace(tok, `"Bearer"`, `"DPoP"`, 1)}},
	})
	tests := []struct {
		name, stdin, env string
		args             []string
		code             int
		stdout, stderr   string
	}{
		{"git longest prefix", "protocol=https\nhost=git.example.com\npath=team/app.git\n\n", "", []string{"git", "get"}, 0,
			"username=x-access-token\npassword=at-team\npassword_expiry_utc=1795428060\n", ""},
		{"git host only", "protocol=https\nhost=git.example.com\n\n", "", []string{"git", "get"}, 0,
			"username=oauth2\npassword=at-host\npassword_expiry_utc=1795428060\n", ""},
		{"git no match", "protocol=https\nhost=elsewhere.example.com\n\n", "", []string{"git", "get"}, 0,
			"", "no grant you may read has a match prefix covering https://elsewhere.example.com/"},
		// A path that leaves its prefix through dot segments or encoded
		// separators gets nothing, not team's token nor the host's.
		{"git dot segments", "protocol=https\nhost=git.example.com\npath=team/../other/app.git\n\n", "", []string{"git", "get"}, 0,
			"", "no grant matches https://git.example.com/team/../other/app.git"},
		{"git encoded dot segments", "protocol=https\nhost=git.example.com\npath=team/%2E%2e/other/app.git\n\n", "", []string{"git", "get"}, 0,
			"", "no grant matches"},
		{"git single dot", "url=https://git.example.com/team/./app.git\n\n", "", []string{"git", "get"}, 0, "", "no grant matches"},
		{"git encoded slash", "url=https://git.example.com/team%2f..%2Fother/app.git\n\n", "", []string{"git", "get"}, 0, "", "no grant matches"},
		{"git backslash", "protocol=https\nhost=git.example.com\npath=team/..%5cother/app.git\n\n", "", []string{"git", "get"}, 0, "", "no grant matches"},
		{"git segment boundary", "protocol=https\nhost=git.example.com\npath=teams/app.git\n\n", "", []string{"git", "get"}, 0,
			"username=oauth2\npassword=at-host\n", ""},
		{"git reauthorization", "protocol=https\nhost=stuck.example.com\n\n", "", []string{"git", "get"}, exitReauth, "", "tokend authorize stuck"},
		{"git store", "protocol=https\nhost=x\npassword=p\n\n", "", []string{"git", "store"}, 0, "", ""},
		{"kubectl default v1", "", "", []string{"kubectl", "team"}, 0,
			`{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"at-team","expirationTimestamp":"2026-11-23T10:01:00Z"}}` + "\n", ""},
		{"kubectl v1beta1", "", `{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential"}`, []string{"kubectl", "team"}, 0,
			`{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"at-team","expirationTimestamp":"2026-11-23T10:01:00Z"}}` + "\n", ""},
		{"kubectl unknown version", "", `{"apiVersion":"client.authentication.k8s.io/v2"}`, []string{"kubectl", "team"}, exitError, "", "tokend speaks client.authentication.k8s.io/v1 and v1beta1"},
		{"kubectl malformed token", "", "", []string{"kubectl", "bad"}, exitError, "", "not passing it on"},
		{"docker get", "https://git.example.com/team/x\n", "", []string{"docker", "get"}, 0,
			`{"ServerURL":"https://git.example.com/team/x","Username":"x-access-token","Secret":"at-team"}` + "\n", ""},
		{"docker list", "", "", []string{"docker", "list"}, 0,
			`{"https://git.example.com/":"oauth2","https://git.example.com/team/":"x-access-token","https://stuck.example.com/":"oauth2"}` + "\n", ""},
		{"docker dot segments", "https://git.example.com/team/%2e%2E/other\n", "", []string{"docker", "get"}, exitError, "credentials not found in native keychain\n", "no grant matches"},
		{"docker not found", "nowhere.example.com", "", []string{"docker", "get"}, exitError, "credentials not found in native keychain\n", "no grant you may read"},
		{"docker erase", "x", "", []string{"docker", "erase"}, exitError, "tokend: credential docker: erase is refused", "erase is refused"},
		{"headers", "", "", []string{"headers", "team"}, 0, `{"Authorization":"Bearer at-team"}` + "\n", ""},
		{"headers reauthorization", "", "", []string{"headers", "stuck"}, exitReauth, "", "tokend authorize stuck"},
		{"headers malformed token", "", "", []string{"headers", "bad"}, exitError, "", "not passing it on"},
		{"headers dpop", "", "", []string{"headers", "bound"}, exitError, "", "DPoP-bound tokens, which need a fresh proof for each request that a headers helper cannot give: point the MCP client at the proxy"},
		{"headers no name", "", "", []string{"headers"}, exitUsage, "", "credential headers: give the grant NAME"},
		{"unknown helper", "", "", []string{"svn"}, exitUsage, "", `unknown helper "svn"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestCLI()
			tc.env["TOKEND_SOCKET"] = f.socket
			if tt.env != "" {
				tc.env["KUBERNETES_EXEC_INFO"] = tt.env
			}
			old := stdinOf
			stdinOf = strings.NewReader(tt.stdin)
			defer func() { stdinOf = old }()
			code := tc.run(append([]string{"credential"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, tc.errOut.String())
			}
			if !strings.HasPrefix(tc.out.String(), tt.stdout) || (tt.stdout == "" && tc.out.Len() > 0) {
				t.Errorf("stdout %q, want %q", tc.out.String(), tt.stdout)
			}
			if (tt.stderr == "" && tc.errOut.Len() > 0) || !strings.Contains(tc.errOut.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", tc.errOut.String(), tt.stderr)
			}
		})
	}
}

func TestExecVarName(t *testing.T) {
	for in, want := range map[string]string{"demo": "TOKEND_DEMO_TOKEN", "my-api.v2": "TOKEND_MY_API_V2_TOKEN", "a_b": "TOKEND_A_B_TOKEN"} {
		if got := execVarName(in); got != want || !validEnvName(got) {
			t.Errorf("execVarName(%q) = %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", "1X", "A-B", "A B", "A=B"} {
		if validEnvName(bad) {
			t.Errorf("validEnvName(%q)", bad)
		}
	}
}
