package mcp

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// proxyURL is the MCP URL a client uses through a grant proxy listening on
// addr: the proxy's root is the grant's resource URL.
func proxyURL(addr string) string { return "http://" + addr + "/" }

// bridge is a client session launching `tokend mcp NAME` on td's socket.
func bridge(td *tokend, session, grant string) clientSession {
	return clientSession{Name: session, Command: tokendBin, Args: []string{"mcp", grant}, Env: map[string]string{"TOKEND_SOCKET": td.Socket}}
}

// TestMCPResource: a grant that names only the MCP server's URL is
// discovered (the SDK server's 401 challenge and metadata, oidc-provider's
// metadata), registered (dynamic registration), authorized in paste mode
// with the resource and the scopes the challenge named (a second grant
// through the start page on the callback listener), and the SDK
// clients call tools through the grant's proxy and through `tokend mcp`
// with the grant's token; a token of a grant for the other resource is
// refused by the server's audience check.
func TestMCPResource(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.LowPort(t))
	td := newTokend(t,
		grantConfig{Name: "notes", Resource: st.MCP.URL, Proxy: proxyAddr},
		grantConfig{Name: "other", Resource: st.MCP.Other},
	)

	authURL := td.authorizePaste("notes", st.AS.Issuer)
	q := authURL.Query()
	scopes := strings.Fields(q.Get("scope"))
	if q.Get("resource") != st.MCP.URL || !slices.Contains(scopes, "mcp:tools") || !slices.Contains(scopes, "offline_access") {
		t.Errorf("authorization request %v: want resource=%s and scopes mcp:tools (the challenge's) and offline_access (listed by the server)", q, st.MCP.URL)
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("client_id") == "" || q.Get("response_type") != "code" {
		t.Errorf("authorization request %v: want a code request with an S256 challenge by a registered client", q)
	}
	if s := st.AS.Stats(); s.Registrations != 1 || s.TokenSuccess["authorization_code"] != 1 {
		t.Errorf("authorization server saw %d registrations and %d code exchanges, want 1 and 1", s.Registrations, s.TokenSuccess["authorization_code"])
	}
	if status, err := td.status("notes"); err != nil || status.ProtectedResource != st.MCP.URL {
		t.Errorf("status of notes: %+v %v: want protected_resource %s", status, err, st.MCP.URL)
	}

	// Tools through the proxy and through the bridge.
	c := startClients(t, 100*time.Millisecond,
		clientSession{Name: "proxy", URL: proxyURL(proxyAddr)},
		bridge(td, "bridge", "notes"),
	)
	if strings.Join(c.Ready.Tools, ",") != "echo,whoami" {
		t.Errorf("tools listed %v, want echo and whoami", c.Ready.Tools)
	}
	eventually(t, timeoutCalls, pollEvery, "tool calls through the proxy and the bridge", func() error {
		if s := st.MCP.stats()["/mcp"]; s.ToolCalls < 20 {
			return errNotYet
		}
		return nil
	})
	sum := c.stop()
	for _, name := range []string{"proxy", "bridge"} {
		s := sum.Sessions[name]
		if s.Calls < 5 || s.Failures != 0 || s.Sub != "e2e-user" || s.Resource != st.MCP.URL {
			t.Errorf("session %s: %+v: want calls without failure as e2e-user for %s", name, s, st.MCP.URL)
		}
	}
	for _, f := range c.failures() {
		t.Errorf("failed call: %s %s: %s", f.Session, f.Tool, f.Error)
	}
	if s := st.MCP.stats()["/mcp"]; s.Clients != 1 || s.Sessions != 2 {
		t.Errorf("MCP server saw %d clients and %d sessions, want 1 client (tokend's) and 2 sessions", s.Clients, s.Sessions)
	}

	// The proxy replaces whatever Authorization the caller sent.
	req, _ := http.NewRequest(http.MethodPost, proxyURL(proxyAddr), strings.NewReader(initialize))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer caller-made-this-up")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("initialize through the proxy with the caller's own Authorization: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}

	// A token for the other resource (authorized through the start page
	// this time) is refused by this one.
	td.authorizeStartPage("other")
	other, err := td.token("other")
	if err != nil {
		t.Fatal(err)
	}
	before := st.MCP.stats()["/mcp"]
	if code, chal := postInitialize(t, st.MCP.URL, "Bearer "+other); code != http.StatusUnauthorized || !strings.Contains(chal, `error="invalid_token"`) {
		t.Errorf("the other grant's token at %s: %d %q, want 401 invalid_token", st.MCP.URL, code, chal)
	}
	if after := st.MCP.stats()["/mcp"]; after.Sessions != before.Sessions {
		t.Errorf("a session was opened with the other resource's token")
	}
	if code, chal := postInitialize(t, st.MCP.Other, "Bearer "+other); code != http.StatusOK {
		t.Errorf("the other grant's token at its own resource: %d %q, want 200", code, chal)
	}
	notes, err := td.token("notes")
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := postInitialize(t, st.MCP.Other, "Bearer "+notes); code != http.StatusUnauthorized {
		t.Errorf("notes' token at the other resource: %d, want 401", code)
	}
	if s := st.AS.Stats(); s.Registrations != 2 || s.RefreshTokenReuse != 0 || s.InvalidGrant != 0 {
		t.Errorf("authorization server stats %+v: want 2 registrations (one client per grant), no reuse, no invalid_grant", s)
	}
	if strings.Contains(td.logs.String(), notes) || strings.Contains(td.logs.String(), other) {
		t.Errorf("tokend logged an access token")
	}
}
