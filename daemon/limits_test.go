package daemon

// Limits of the socket API and the callback listener against hostile or
// broken clients: oversized headers, queries and bodies, and connections
// that send half a request and stall (slowloris).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// patience bounds every raw exchange: far longer than a healthy answer
// takes, shorter than the servers' ReadTimeout (10 s), so a hang fails.
const patience = 8 * time.Second

// rawExchange writes req on a new connection and reads one response. It
// returns the status code, or 0 when the server closed the connection (or
// reset it) without answering.
func rawExchange(t *testing.T, network, addr string, req []byte) int {
	t.Helper()
	c, err := net.DialTimeout(network, addr, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(patience))
	// The server may answer and close while the request is still being
	// written; the write's error does not matter, the answer does.
	go func() { _, _ = c.Write(req) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close within %v", patience)
		}
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestLimitOversizedHeaderOnSocket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	// MaxHeaderBytes is 16 KiB (net/http allows 4 KiB of slack above it);
	// 32 KiB is over any reading of the limit.
	req := "GET /v1/tokens/cc HTTP/1.1\r\nHost: tokend\r\nX-Big: " + strings.Repeat("a", 32<<10) + "\r\n\r\n"
	if code := rawExchange(t, "unix", h.sock, []byte(req)); code != 0 && code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized header: got %d, want 431 or a closed connection", code)
	}
	// Many small headers adding up to the same.
	var b strings.Builder
	b.WriteString("GET /v1/tokens/cc HTTP/1.1\r\nHost: tokend\r\n")
	for i := 0; b.Len() < 32<<10; i++ {
		fmt.Fprintf(&b, "X-H%d: %s\r\n", i, strings.Repeat("b", 100))
	}
	b.WriteString("\r\n")
	if code := rawExchange(t, "unix", h.sock, []byte(b.String())); code != 0 && code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("many headers: got %d, want 431 or a closed connection", code)
	}
	// An oversized path (request line).
	req = "GET /v1/tokens/" + strings.Repeat("c", 32<<10) + " HTTP/1.1\r\nHost: tokend\r\n\r\n"
	if code := rawExchange(t, "unix", h.sock, []byte(req)); code != 0 && code != http.StatusRequestHeaderFieldsTooLarge && code != http.StatusRequestURITooLong {
		t.Errorf("oversized request line: got %d, want 414/431 or a closed connection", code)
	}
	// The daemon still serves.
	if tok := h.token("cc"); tok.AccessToken == "" {
		t.Error("no token after the oversized requests")
	}
}

// An operator action with a body over 64 KiB is refused, and not carried
// out: no endpoint takes a body, and none may be made to read one.
func TestLimitOversizedBodyOnSocket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	body := strings.Repeat("x", 100<<10)
	for _, tc := range []struct{ name, req string }{
		{"content-length", fmt.Sprintf("POST /v1/tokens/cc/refresh HTTP/1.1\r\nHost: tokend\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)},
		{"chunked", fmt.Sprintf("POST /v1/tokens/cc/refresh HTTP/1.1\r\nHost: tokend\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.prov.Stats().TokenRequests
			code := rawExchange(t, "unix", h.sock, []byte(tc.req))
			if code != 0 && code != http.StatusRequestEntityTooLarge {
				t.Errorf("POST with a %d KiB body: got %d, want 413 or a closed connection", len(body)>>10, code)
			}
			h.settle()
			if after := h.prov.Stats().TokenRequests; after != before {
				t.Errorf("the refresh with an oversized body was carried out (%d token requests before, %d after)", before, after)
			}
		})
	}
}

// stall opens n connections that each send the start of a request and
// nothing more.
func stall(t *testing.T, network, addr string, n int, partial string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout(network, addr, patience)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte(partial)); err != nil {
			t.Fatal(err)
		}
	}
	return conns
}

// stillOpen fails unless every connection is still open: the stalled
// clients really were there while the test's request was served.
func stillOpen(t *testing.T, conns []net.Conn) {
	t.Helper()
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		}
	}
	if open != len(conns) {
		t.Fatalf("only %d of %d stalled connections were still open; the test proves nothing", open, len(conns))
	}
}

func TestSlowlorisSocket(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	conns := stall(t, "unix", h.sock, 50, "GET /v1/tok")
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://tokend/v1/tokens/cc", nil)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("fetch while 50 connections stall: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "access_token") {
		t.Fatalf("fetch while 50 connections stall: %d %s", resp.StatusCode, b)
	}
	stillOpen(t, conns)
}

func TestSlowlorisCallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	addr := h.d.CallbackAddr()
	// As many as the listener holds before pressure closes silent ones
	// (package server's connLimiter: three quarters of 1/32 of
	// RLIMIT_NOFILE, within 4 and 64): past that, they would be closed,
	// not stall.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	n := int(min(max(rl.Cur/32, 4), 64))*3/4 - 1
	conns := stall(t, "tcp", addr, n, "GET /callback?sta")
	hc := &http.Client{Timeout: patience}
	resp, err := hc.Get("http://" + addr + "/callback?state=unknown&code=x")
	if err != nil {
		t.Fatalf("callback while %d connections stall: %v", n, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback with an unknown state: %d, want 400", resp.StatusCode)
	}
	stillOpen(t, conns)
}

func TestLimitOversizedCallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	addr := h.d.CallbackAddr()
	before := h.stored("cc")
	big := strings.Repeat("A", 32<<10)
	for _, tc := range []struct {
		name string
		req  string
		ok   []int // acceptable answers besides a closed connection
	}{
		{"query", "GET /callback?state=" + big + "&code=x HTTP/1.1\r\nHost: " + addr + "\r\n\r\n", []int{400, 414, 431}},
		{"header", "GET /callback?state=s&code=x HTTP/1.1\r\nHost: " + addr + "\r\nCookie: " + big + "\r\n\r\n", []int{431}},
		// Within the header limit, but a state longer than any tokend makes.
		{"long state", "GET /callback?state=" + strings.Repeat("S", 10<<10) + "&code=x HTTP/1.1\r\nHost: " + addr + "\r\n\r\n", []int{400}},
		{"body", fmt.Sprintf("POST /callback HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", addr, len(big), big), []int{404, 405, 413}}, // no POST route: the catch-all 404
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := rawExchange(t, "tcp", addr, []byte(tc.req))
			ok := code == 0
			for _, c := range tc.ok {
				ok = ok || code == c
			}
			if !ok {
				t.Errorf("got %d, want one of %v or a closed connection", code, tc.ok)
			}
		})
	}
	if after := h.stored("cc"); after.Generation != before.Generation || after.AccessToken != before.AccessToken {
		t.Errorf("oversized callbacks changed the stored token: generation %d → %d", before.Generation, after.Generation)
	}
}

// A connection that never finishes its request header is closed by the
// server after ReadHeaderTimeout (5 s), well before ReadTimeout (10 s)
// would. This takes 5 s of real time, spent in parallel with the other
// tests; -short skips it.
func TestSlowHeaderTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 5 s for ReadHeaderTimeout")
	}
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	for _, l := range []struct{ network, addr string }{{"unix", h.sock}, {"tcp", h.d.CallbackAddr()}} {
		t.Run(l.network, func(t *testing.T) {
			t.Parallel()
			c := stall(t, l.network, l.addr, 1, "GET /v1/tokens/cc HTTP/1.1\r\nHost: x\r\n")[0]
			_ = c.SetReadDeadline(time.Now().Add(patience))
			start := time.Now()
			n, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("a stalled header was not closed within %v: no ReadHeaderTimeout below ReadTimeout", patience)
			}
			// net/http may answer 408 before closing; either way it closed.
			t.Logf("closed after %v (%d bytes)", time.Since(start).Round(100*time.Millisecond), n)
		})
	}
}
