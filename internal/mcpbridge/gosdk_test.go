package mcpbridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The bridge against a server nobody here wrote: the official Go SDK's
// Streamable HTTP handler (sessions, event-stream answers, the GET
// stream, an event store for resumption) behind its bearer-token
// middleware, checking the fake daemon's tokens. The first token is
// refused; a second endpoint needs the scope admin, which a step-up
// brings.
func TestBridgeWithTheGoSDKServer(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	server := mcp.NewServer(&mcp.Implementation{Name: "sdk-server", Version: "1"}, nil)
	type echoArgs struct {
		Text string `json:"text"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "echo", Description: "answers its text"}, func(ctx context.Context, req *mcp.CallToolRequest, a echoArgs) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
	})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	verify := func(_ context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		scopes, ok := d.scopesOf(token)
		if !ok || token == "at-1" {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{Scopes: strings.Fields(scopes), Expiration: time.Now().Add(time.Hour)}, nil
	}
	var mu sync.Mutex
	var seen []string
	record := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Mcp-Session-Id"))
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: "http://127.0.0.1/.well-known/oauth-protected-resource/mcp"})(handler))
	mux.Handle("/admin", auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{Scopes: []string{"read", "admin"}})(handler))
	srv := httptest.NewServer(record(mux))
	t.Cleanup(srv.Close)

	h := startBridge(t, Config{URL: srv.URL + "/mcp", Daemon: cl})
	init := h.initialize(1)
	if r, _ := init["result"].(map[string]any); r["protocolVersion"] != protocolVersion {
		t.Fatalf("initialize answered %v", init)
	}
	list := h.call(2, "tools/list", "{}")
	if r, _ := list["result"].(map[string]any); r == nil || !strings.Contains(fmt.Sprint(r), "answers its text") {
		t.Fatalf("tools/list answered %v", list)
	}
	if got := resultText(t, h.call(3, "tools/call", toolCall("echo", "through the SDK"))); got != "through the SDK" {
		t.Errorf("echo answered %q", got)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	rejected := len(d.rejected)
	d.mu.Unlock()
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if rejected != 1 || !strings.HasPrefix(got[0], "POST /mcp Bearer at-1 ") || !strings.HasPrefix(got[1], "POST /mcp Bearer at-2 ") {
		t.Errorf("%d rejections; requests %q", rejected, got)
	}
	if last := got[len(got)-1]; !strings.HasPrefix(last, "DELETE /mcp Bearer at-2 ") || strings.HasSuffix(last, " ") {
		t.Errorf("the last request %q is not the DELETE of the session", last)
	}

	d.authorizeAfter = 1
	h = startBridge(t, Config{URL: srv.URL + "/admin", Daemon: cl})
	h.initialize(1)
	if got := resultText(t, h.call(2, "tools/call", toolCall("echo", "with admin"))); got != "with admin" {
		t.Errorf("echo answered %q", got)
	}
	d.mu.Lock()
	ups := slices.Clone(d.stepUps)
	d.mu.Unlock()
	if len(ups) != 1 || ups[0].Scope != "read admin" {
		t.Errorf("step-ups %+v", ups)
	}
}
