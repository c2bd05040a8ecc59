package mcp

// A self-test of the harness, no tokend: the MCP server and oidc-provider
// driven by golang.org/x/oauth2 and the SDK client alone. It pins down what
// the tokend tests rely on (the 401 challenge and metadata the SDK serves,
// dynamic registration, JWT access tokens for the resource named, the
// audience check), so a failing tokend test points at tokend.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// register registers a public native client with oidc-provider.
func register(t testing.TB, issuer string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_name":                "e2e-mcp-harness",
		"application_type":           "native",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"redirect_uris":              []string{"http://127.0.0.1/callback"},
		"token_endpoint_auth_method": "none",
	})
	resp, err := http.Post(issuer+"/reg", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reg struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration: %s %v", resp.Status, err)
	}
	return reg.ClientID
}

// harnessToken runs one authorization-code flow for resource with the
// client and returns the token.
func harnessToken(t testing.TB, issuer, clientID, resource string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID:    clientID,
		Endpoint:    oauth2.Endpoint{AuthURL: issuer + "/auth", TokenURL: issuer + "/token", AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: "http://127.0.0.1:1/callback",
		Scopes:      []string{"offline_access", "mcp:tools"},
	}
	verifier := oauth2.GenerateVerifier()
	landed := browse(t, conf.AuthCodeURL("s1", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", resource), oauth2.SetAuthURLParam("prompt", "consent")), issuer)
	u, _ := url.Parse(landed)
	if u.Query().Get("code") == "" || u.Query().Get("iss") != issuer {
		t.Fatalf("authorization response %s: want a code and iss", u.Redacted())
	}
	tok, err := conf.Exchange(context.Background(), u.Query().Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHarnessMCPServer(t *testing.T) {
	t.Parallel()
	st := startStack(t)

	// Unauthenticated: 401 naming the metadata, which names the resource
	// and the authorization server.
	code, challenge := postInitialize(t, st.MCP.URL, "")
	if code != http.StatusUnauthorized || !strings.Contains(challenge, `resource_metadata="`+st.MCP.Base+"/.well-known/oauth-protected-resource/mcp") {
		t.Fatalf("unauthenticated initialize: %d %q, want 401 with resource_metadata", code, challenge)
	}
	var prm struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	getJSON(t, st.MCP.Base+"/.well-known/oauth-protected-resource/mcp", &prm)
	if prm.Resource != st.MCP.URL || len(prm.AuthorizationServers) != 1 || prm.AuthorizationServers[0] != st.AS.Issuer {
		t.Fatalf("protected-resource metadata %+v", prm)
	}

	clientID := register(t, st.AS.Issuer)
	tok := harnessToken(t, st.AS.Issuer, clientID, st.MCP.URL)
	if strings.Count(tok.AccessToken, ".") != 2 || tok.RefreshToken == "" {
		t.Fatalf("access token is not a JWT, or no refresh token")
	}
	bearer := "Bearer " + tok.AccessToken

	// The SDK client with the token: tools listed and called.
	c := startClients(t, 50*time.Millisecond, clientSession{Name: "direct", URL: st.MCP.URL, Headers: map[string]string{"Authorization": bearer}})
	if strings.Join(c.Ready.Tools, ",") != "echo,whoami" {
		t.Errorf("tools %v, want echo and whoami", c.Ready.Tools)
	}
	eventually(t, timeoutCalls, pollEvery, "tool calls", func() error {
		if s := st.MCP.stats()["/mcp"]; s.ToolCalls < 4 {
			return errNotYet
		}
		return nil
	})
	sum := c.stop()
	d := sum.Sessions["direct"]
	if sum.Failures != 0 || d.Sub != "e2e-user" || d.Resource != st.MCP.URL || d.Tokens != 1 {
		t.Errorf("summary %+v: want no failure, sub e2e-user, resource %s, one token", sum, st.MCP.URL)
	}

	// The same token at the other resource: refused by the SDK's audience
	// check.
	code, challenge = postInitialize(t, st.MCP.Other, bearer)
	if code != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
		t.Errorf("token for %s at %s: %d %q, want 401 invalid_token", st.MCP.URL, st.MCP.Other, code, challenge)
	}
	if s := st.MCP.stats()["/other/mcp"]; s.ToolCalls != 0 || s.Sessions != 0 {
		t.Errorf("other resource stats %+v: want no session", s)
	}
	// A token issued for the other resource is accepted there.
	other := harnessToken(t, st.AS.Issuer, clientID, st.MCP.Other)
	if code, challenge = postInitialize(t, st.MCP.Other, "Bearer "+other.AccessToken); code != http.StatusOK {
		t.Errorf("token for %s at itself: %d %q", st.MCP.Other, code, challenge)
	}
	if s := st.AS.Stats(); s.Registrations != 1 || s.RefreshTokenReuse != 0 {
		t.Errorf("authorization server stats %+v", s)
	}
}
