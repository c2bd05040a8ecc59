package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// tokend mcp against a real daemon (tokend dev and its development
// provider): the MCP server accepts only the token the daemon holds for
// the grant, and refuses the first one it sees, as a resource does with a
// token revoked behind tokend's back: the bridge reports it to the daemon
// (POST .../rejected), which refreshes, and the client on stdio never
// notices.
func TestMCPBridgeWithDevDaemon(t *testing.T) {
	sock, cl := startDevDaemon(t)

	var mu sync.Mutex
	var seen []string
	var refused string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := cl.Token(r.Context(), "demo")
		mu.Lock()
		if refused == "" && err == nil {
			refused = tok.AccessToken
		}
		first := err == nil && tok.AccessToken == refused
		mu.Unlock()
		if err != nil || first || r.Header.Get("Authorization") != "Bearer "+tok.AccessToken {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &msg)
		mu.Lock()
		seen = append(seen, r.Method+" "+msg.Method+" "+r.Header.Get("Mcp-Session-Id"))
		mu.Unlock()
		switch {
		case r.Method == http.MethodGet:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case r.Method == http.MethodDelete || msg.ID == nil:
			w.WriteHeader(http.StatusAccepted)
		case msg.Method == "initialize":
			w.Header().Set("Mcp-Session-Id", "s1")
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"t","version":"1"}}}`)
		default:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"result":{"content":[{"type":"text","text":"hi"}]}}`)
		}
	}))
	defer srv.Close()

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	old := stdinOf
	stdinOf = inR
	defer func() { stdinOf = old }()
	bridge := newTestCLI()
	bridge.cli.stdout = outW
	bridge.cli.sleep = api.Sleep
	bridge.cli.now = time.Now
	exit := make(chan int, 1)
	go func() {
		exit <- bridge.cli.run(context.Background(), []string{"mcp", "demo", "--url", srv.URL, "--socket", sock})
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	for i, send := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hello"}}`,
	} {
		io.WriteString(inW, send+"\n")
		if !strings.Contains(send, `"id"`) {
			continue
		}
		if !lines.Scan() {
			t.Fatalf("message %d: no answer; stderr: %s", i, bridge.errOut.String())
		}
		if !strings.Contains(lines.Text(), `"result"`) {
			t.Fatalf("message %d answered %s", i, lines.Text())
		}
	}
	inW.Close()
	select {
	case code := <-exit:
		if code != exitOK {
			t.Errorf("tokend mcp: exit %d, %s", code, bridge.errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tokend mcp did not end with its stdin")
	}
	mu.Lock()
	defer mu.Unlock()
	now, err := cl.Token(context.Background(), "demo")
	if err != nil || now.AccessToken == refused || !strings.Contains(bridge.errOut.String(), "refused the grant's token (HTTP 401)") {
		t.Errorf("the daemon still holds the refused token (%v), or the bridge did not say it reported it: %s", err, bridge.errOut.String())
	}
	want := []string{"POST initialize ", "POST notifications/initialized s1", "POST tools/call s1", "DELETE  s1"}
	got := strings.Join(seen, "|")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("the server saw %q, without %q", got, w)
		}
	}
}

// startDevDaemon runs tokend dev until the test ends and returns its
// socket once the demo grant (client_credentials) has a token.
func startDevDaemon(t *testing.T) (string, *api.Client) {
	t.Helper()
	dir := testutil.ShortDir(t)
	sock := filepath.Join(dir, "tokend.sock")
	ctx, cancel := context.WithCancel(context.Background())
	daemon := newTestCLI()
	done := make(chan int, 1)
	go func() {
		done <- daemon.cli.run(ctx, []string{"dev", "--dir", dir, "--metrics", "127.0.0.1:0", "--provider", "127.0.0.1:0"})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("tokend dev did not stop")
		}
		os.RemoveAll(dir)
	})
	cl := api.NewClient(sock)
	waitFor(t, "the demo grant's token", 30*time.Second, func() bool {
		_, err := cl.Token(context.Background(), "demo")
		return err == nil
	})
	return sock, cl
}

// Without --url the bridge goes to the grant's protected_resource; a
// grant without one is a usage error that says what to give.
func TestMCPNeedsAURL(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Method + " " + r.URL.Path + " " + r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	defer srv.Close()
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/plain/status": {{200, `{"name":"plain","state":"valid"}`}},
		"GET /v1/tokens/res/status":   {{200, `{"name":"res","state":"valid","protected_resource":"` + srv.URL + `/mcp"}`}},
		"GET /v1/tokens/res":          {{200, `{"access_token":"at-res","token_type":"Bearer","expires_in":60}`}},
	})
	old := stdinOf
	defer func() { stdinOf = old }()
	stdinOf = strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}` + "\n")
	tc := newTestCLI()
	tc.env["TOKEND_SOCKET"] = f.socket
	if code := tc.run("mcp", "res"); code != exitOK || got != "POST /mcp Bearer at-res" || tc.out.String() != `{"jsonrpc":"2.0","id":1,"result":{}}`+"\n" {
		t.Errorf("exit %d, the server saw %q, stdout %q, stderr %q", code, got, tc.out.String(), tc.errOut.String())
	}
	tc = newTestCLI()
	tc.env["TOKEND_SOCKET"] = f.socket
	if code := tc.run("mcp", "plain"); code != exitUsage || !strings.Contains(tc.errOut.String(), "grant plain has no protected_resource: name the MCP server with --url URL") {
		t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("mcp", "plain", "--url", "http://mcp.example.com/mcp"); code != exitUsage || !strings.Contains(tc.errOut.String(), "uses http to a non-loopback host") {
		t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
	}
}
