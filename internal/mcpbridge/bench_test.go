package mcpbridge

import (
	"bytes"
	"context"

	"io"
	"net/http"
	"testing"
)

// BenchmarkToolCall measures one tools/call round trip to the test
// server: directly (an HTTP client holding the token and the session) and
// through the bridge (a line on stdin to a line on stdout, with the
// token fetched from the daemon's socket for the request). The
// difference is the bridge's added latency per call; daemon-token is the
// part of it the token's fetch from the socket takes.
func BenchmarkToolCall(b *testing.B) {
	b.Run("daemon-token", func(b *testing.B) {
		_, cl := newFakeDaemon(b, "read")
		for b.Loop() {
			if _, err := cl.Token(context.Background(), grant); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mode := range []string{"json", "sse"} {
		b.Run("direct/"+mode, func(b *testing.B) {
			d, _ := newFakeDaemon(b, "read")
			s, srv := newMCPServer(b, d)
			s.sse = mode == "sse"
			s.sessions["session-b"], s.initialized["session-b"] = true, true
			hc := &http.Client{}
			body := []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":` + toolCall("echo", "hello") + `}`)
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Mcp-Session-Id", "session-b")
				req.Header.Set("MCP-Protocol-Version", protocolVersion)
				req.Header.Set("Authorization", "Bearer at-1")
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !bytes.Contains(out, []byte(`"hello"`)) {
					b.Fatalf("HTTP %d %s", resp.StatusCode, out)
				}
			}
		})
		b.Run("bridge/"+mode, func(b *testing.B) {
			d, cl := newFakeDaemon(b, "read")
			s, srv := newMCPServer(b, d)
			s.sse = mode == "sse"
			h := startBridge(b, Config{URL: srv.URL, Daemon: cl})
			h.initialize(1)
			id := 1
			b.ResetTimer()
			for b.Loop() {
				id++
				if got := resultText(b, h.call(id, "tools/call", toolCall("echo", "hello"))); got != "hello" {
					b.Fatalf("echo answered %q", got)
				}
			}
		})
	}
}
