package mcpbridge

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The session's life with JSON answers: initialize goes without a
// session id and its answer's id is sent from then on, with the protocol
// version the server chose; the client's notification is accepted; stdin's
// end deletes the session.
func TestBridgeJSONSession(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	init := h.initialize(1)
	if r, _ := init["result"].(map[string]any); r["protocolVersion"] != protocolVersion {
		t.Fatalf("initialize answered %v", init)
	}
	if got := resultText(t, h.call(2, "tools/call", toolCall("echo", "hello\nworld"))); got != "hello\nworld" {
		t.Errorf("echo answered %q", got)
	}
	if err := h.close(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []seenRequest{
		{method: "POST", auth: "Bearer at-1", rpcMethod: "initialize"},
		{method: "POST", session: "session-1", version: protocolVersion, auth: "Bearer at-1", rpcMethod: "notifications/initialized"},
		{method: "POST", session: "session-1", version: protocolVersion, auth: "Bearer at-1", rpcMethod: "tools/call"},
		{method: "DELETE", session: "session-1", version: protocolVersion, auth: "Bearer at-1"},
	}
	got := slices.DeleteFunc(s.requests(), func(r seenRequest) bool { return r.method == "GET" })
	if !slices.Equal(got, want) {
		t.Errorf("the server saw\n%v\nwant\n%v", got, want)
	}
	if strings.Contains(h.log.String(), "at-1") {
		t.Errorf("the log shows a token:\n%s", h.log.String())
	}
}

// Event-stream answers: the notification before the answer reaches the
// client first, on one line though the server split it; the server's own
// GET stream is opened after initialize and its messages forwarded.
func TestBridgeEventStreams(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.sse, s.getStream = true, true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + protocolVersion + `","capabilities":{}}}`)
	if m := h.recv(); m["method"] != "notifications/progress" {
		t.Fatalf("first message %v, want the progress notification", m)
	}
	if m := h.recv(); m["id"] != float64(1) || m["result"] == nil {
		t.Fatalf("second message %v, want the initialize answer", m)
	}
	select {
	case <-s.getOpen:
	case <-time.After(10 * time.Second):
		t.Fatal("the bridge opened no GET stream")
	}
	if m := h.recv(); m["method"] != "notifications/tools/list_changed" {
		t.Fatalf("the GET stream's message: %v", m)
	}
	h.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	h.send(`{"jsonrpc":"2.0","id":"two","method":"tools/call","params":` + toolCall("echo", "via sse") + `}`)
	if m := h.recv(); m["method"] != "notifications/progress" {
		t.Fatalf("%v, want the progress notification", m)
	}
	if m := h.recv(); m["id"] != "two" || resultText(t, m) != "via sse" {
		t.Fatalf("answer %v", m)
	}
	if err := h.close(); err != nil {
		t.Fatal(err)
	}
	var gets []seenRequest
	for _, r := range s.requests() {
		if r.method == "GET" {
			gets = append(gets, r)
		}
	}
	if len(gets) == 0 || gets[0].session != "session-1" || gets[0].version != protocolVersion || gets[0].auth != "Bearer at-1" {
		t.Errorf("GET requests %v", gets)
	}
}

// A stream that drops before its answer is resumed with GET and the last
// event id it gave, after the retry delay it named.
func TestBridgeResumesDroppedStream(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.sse = true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	h.send(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":` + toolCall("drop", "") + `}`)
	if m := h.recv(); m["method"] != "notifications/message" {
		t.Fatalf("%v, want the notification sent before the drop", m)
	}
	if m := h.recv(); m["id"] != float64(2) || resultText(t, m) != "after the drop" {
		t.Fatalf("answer %v", m)
	}
	var resumed []seenRequest
	for _, r := range s.requests() {
		if r.method == "GET" && r.lastEventID != "" {
			resumed = append(resumed, r)
		}
	}
	if len(resumed) != 1 || resumed[0].lastEventID != "d-2" || resumed[0].session != "session-1" || resumed[0].auth != "Bearer at-1" {
		t.Errorf("resuming requests %v", resumed)
	}
	if sl := h.sleeps(); !slices.Contains(sl, 7*time.Millisecond) {
		t.Errorf("waits %v: the server's retry of 7ms was not honoured", sl)
	}
}

// A server that refuses to resume a stream (a 4xx to the GET) is asked
// once, and the client gets an error answer.
func TestBridgeResumeRefused(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.sse = true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	_, msg, data := rpcError(t, h.call(2, "tools/call", toolCall("drop-forgotten", "")))
	if data["http_status"] != float64(400) || !strings.Contains(msg, "refused to resume its event stream") {
		t.Errorf("error %q %v", msg, data)
	}
	gets := 0
	for _, r := range s.requests() {
		if r.method == "GET" && r.lastEventID == "d-2" {
			gets++
		}
	}
	if gets != 1 {
		t.Errorf("%d attempts to resume, want 1", gets)
	}
}

// A stream that drops with no event id cannot be resumed: the client gets
// an error answer rather than waiting forever.
func TestBridgeUnresumableStreamIsAnError(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	_, srv := newMCPServer(t, d)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"))
	})
	srv.Config.Handler = mux
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.send(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	h.recv()
	code, msg, _ := rpcError(t, h.recv())
	if code != codeUndelivered || !strings.Contains(msg, "no event id to resume it from") {
		t.Errorf("error %v %q", code, msg)
	}
}

// A 401 is reported to the daemon once, with the refused token and the
// challenge, and the request sent again with the token it answers.
func TestBridgeRefreshesARefusedToken(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.refuse["at-1"] = true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	if got := resultText(t, h.call(2, "tools/call", toolCall("echo", "x"))); got != "x" {
		t.Fatalf("echo answered %q", got)
	}
	d.mu.Lock()
	rej := d.rejected
	d.mu.Unlock()
	if len(rej) != 1 || rej[0].AccessToken != "at-1" || !strings.Contains(rej[0].Challenge, `error="invalid_token"`) {
		t.Errorf("rejected reports %+v", rej)
	}
	reqs := s.requests()
	if reqs[0].auth != "Bearer at-1" || reqs[1].auth != "Bearer at-2" || reqs[1].rpcMethod != "initialize" {
		t.Errorf("requests %v", reqs)
	}
}

// A server that refuses every token: one report to the daemon, one more
// attempt, then the client gets the 401 as an error answer.
func TestBridgeReportsARefusalOnce(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.refuseAll = true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`)
	code, msg, data := rpcError(t, h.recv())
	if code != codeUndelivered || !strings.Contains(msg, "HTTP 401") || data["http_status"] != float64(401) || !strings.Contains(data["www_authenticate"].(string), "invalid_token") {
		t.Errorf("error %v %q %v", code, msg, data)
	}
	d.mu.Lock()
	n := len(d.rejected)
	d.mu.Unlock()
	if n != 1 || len(s.requests()) != 2 {
		t.Errorf("%d reports to the daemon and %d requests, want 1 and 2", n, len(s.requests()))
	}
}

// A 403 insufficient_scope is recorded as a step-up; the bridge waits,
// saying what a person must run, for a token with the scopes, and sends
// the request again.
func TestBridgeStepUp(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	d.authorizeAfter = 3 // the person authorizes during the fourth poll
	s, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	if got := resultText(t, h.call(2, "tools/call", toolCall("admin", ""))); got != "admin done" {
		t.Fatalf("admin answered %q", got)
	}
	d.mu.Lock()
	ups := d.stepUps
	d.mu.Unlock()
	if len(ups) != 1 || ups[0].Scope != "read admin" || !strings.Contains(ups[0].Challenge, "insufficient_scope") {
		t.Errorf("step-ups %+v", ups)
	}
	if log := h.log.String(); !strings.Contains(log, "tokend authorize "+grant) || !strings.Contains(log, "read admin") {
		t.Errorf("the log does not say what to run:\n%s", log)
	}
	if sl := h.sleeps(); len(sl) != 3 || sl[0] != DefaultStepUpPoll {
		t.Errorf("waits %v, want three polls of %v", sl, DefaultStepUpPoll)
	}
	var calls []string
	for _, r := range s.requests() {
		if r.rpcMethod == "tools/call" {
			calls = append(calls, r.auth)
		}
	}
	if !slices.Equal(calls, []string{"Bearer at-1", "Bearer at-2"}) {
		t.Errorf("tools/call sent with %v", calls)
	}
}

// A server that asks for more scopes each time gets two step-ups for one
// request (three authorizations in all), then the client gets the 403.
func TestBridgeStepUpLimit(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	d.authorizeAfter = 0
	s, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	code, msg, data := rpcError(t, h.call(2, "tools/call", toolCall("greedy", "")))
	if code != codeUndelivered || data["http_status"] != float64(403) || !strings.Contains(msg, "after 2 step-ups") {
		t.Errorf("error %v %q %v", code, msg, data)
	}
	d.mu.Lock()
	n := len(d.stepUps)
	d.mu.Unlock()
	calls := 0
	for _, r := range s.requests() {
		if r.rpcMethod == "tools/call" {
			calls++
		}
	}
	if n != 2 || calls != 3 {
		t.Errorf("%d step-ups and %d attempts, want 2 and 3", n, calls)
	}
}

// The daemon refusing a step-up (its own bound) and a person who never
// comes both end in an error answer, not a wait without end.
func TestBridgeStepUpRefusedOrNeverAuthorized(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		d, cl := newFakeDaemon(t, "read")
		d.stepUpLimit = 0
		_, srv := newMCPServer(t, d)
		h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
		h.initialize(1)
		_, msg, data := rpcError(t, h.call(2, "tools/call", toolCall("admin", "")))
		if data["http_status"] != float64(403) || !strings.Contains(msg, "step_up_limit") {
			t.Errorf("error %q %v", msg, data)
		}
	})
	t.Run("never authorized", func(t *testing.T) {
		d, cl := newFakeDaemon(t, "read")
		d.authorizeAfter = -1
		_, srv := newMCPServer(t, d)
		h := startBridge(t, Config{URL: srv.URL, Daemon: cl, StepUpWait: time.Minute})
		h.initialize(1)
		_, msg, _ := rpcError(t, h.call(2, "tools/call", toolCall("admin", "")))
		if !strings.Contains(msg, "no authorization for them came within 1m0s") {
			t.Errorf("error %q", msg)
		}
		if n := len(h.sleeps()); n != 60 {
			t.Errorf("%d polls in a minute, want 60", n)
		}
	})
}

// A 404 for the session tells the client with an error answer; its next
// initialize starts a new session, sent without the old id.
func TestBridgeSessionGone(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	s.expireSessions()
	_, msg, data := rpcError(t, h.call(2, "tools/list", "{}"))
	if data["http_status"] != float64(404) || !strings.Contains(msg, "ended the session") {
		t.Errorf("error %q %v", msg, data)
	}
	h.initialize(3)
	if got := resultText(t, h.call(4, "tools/call", toolCall("echo", "again"))); got != "again" {
		t.Errorf("echo answered %q", got)
	}
	reqs := s.requests()
	var inits []seenRequest
	for _, r := range reqs {
		if r.rpcMethod == "initialize" {
			inits = append(inits, r)
		}
	}
	if len(inits) != 2 || inits[1].session != "" || reqs[len(reqs)-1].session != "session-2" {
		t.Errorf("requests %v", reqs)
	}
}

// Lines that are not JSON-RPC messages get a parse error answer; the
// bridge goes on.
func TestBridgeParseError(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	_, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.send(`{"jsonrpc":"2.0","id":1,"method":`)
	m := h.recv()
	if code, _, _ := rpcError(t, m); code != codeParseError || m["id"] != nil {
		t.Errorf("answer %v", m)
	}
	h.send("")
	h.initialize(2)
}

// The daemon having no token (a person must authorize the grant) is an
// error answer that says so, and nothing is sent to the server.
func TestBridgeNoToken(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	d.tokenErr = `{"error":"reauthorization_required","error_description":"the refresh token was rejected"}`
	s, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	_, msg, _ := rpcError(t, h.call(1, "initialize", "{}"))
	if !strings.Contains(msg, "reauthorization_required") || !strings.Contains(msg, "tokend authorize "+grant) {
		t.Errorf("error %q", msg)
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

// A DPoP grant: each request gets its own proof from the daemon, and a
// server asking for a nonce gets the request again with it.
func TestBridgeDPoP(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	s, srv := newMCPServer(t, d)
	s.dpop = true
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl, DPoP: true})
	h.initialize(1)
	if got := resultText(t, h.call(2, "tools/call", toolCall("echo", "bound"))); got != "bound" {
		t.Fatalf("echo answered %q", got)
	}
	reqs := s.requests()
	call := reqs[slices.IndexFunc(reqs, func(r seenRequest) bool { return r.rpcMethod == "tools/call" })]
	if reqs[0].auth != "DPoP at-1" || reqs[0].dpop != "proof:POST:" || reqs[1].dpop != "proof:POST:n-1" || call.dpop != "proof:POST:n-1" {
		t.Errorf("requests %v", reqs)
	}
	d.mu.Lock()
	rej := len(d.rejected)
	d.mu.Unlock()
	if rej != 0 {
		t.Errorf("a nonce request was reported as a refused token")
	}
}

// A server's HTTP error that carries a JSON-RPC error reaches the client
// as the server wrote it, with the request's id.
func TestBridgeForwardsTheServersErrorAnswer(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	_, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.call(1, "initialize", "{}") // and no notifications/initialized
	code, msg, _ := rpcError(t, h.call(2, "tools/list", "{}"))
	if code != -32600 || msg != "tools/list before notifications/initialized" {
		t.Errorf("error %v %q", code, msg)
	}
}

// Requests refused for the same scopes at once share one step-up: the
// daemon's bound on step-ups is not used up by parallel tool calls.
func TestBridgeParallelRequestsShareAStepUp(t *testing.T) {
	d, cl := newFakeDaemon(t, "read")
	d.authorizeAfter = 5
	d.stepUpLimit = 1
	_, srv := newMCPServer(t, d)
	h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
	h.initialize(1)
	for id := 2; id <= 5; id++ {
		h.send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":` + toolCall("admin", "") + `}`)
	}
	for range 4 {
		if m := h.recv(); resultText(t, m) != "admin done" {
			t.Errorf("answer %v", m)
		}
	}
	d.mu.Lock()
	n := len(d.stepUps)
	d.mu.Unlock()
	if n != 1 {
		t.Errorf("%d step-ups recorded, want 1", n)
	}
}

// A notification the client writes after a request reaches the server
// after it, though the request is not answered yet: a cancellation finds
// its request. With an event stream the server begins its answer at
// once; with JSON the bridge waits orderGrace for a beginning that does
// not come.
func TestBridgeKeepsTheClientsOrder(t *testing.T) {
	for _, sse := range []bool{true, false} {
		d, cl := newFakeDaemon(t, "read")
		s, srv := newMCPServer(t, d)
		s.sse = sse
		h := startBridge(t, Config{URL: srv.URL, Daemon: cl})
		h.initialize(1)
		for id := 2; id < 6; id++ {
			h.send(`{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"tools/call","params":` + toolCall("wait", "") + `}`)
			h.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":` + strconv.Itoa(id) + `}}`)
			m := h.recv()
			for m["method"] != nil {
				m = h.recv()
			}
			if got := resultText(t, m); got != "cancelled" {
				t.Fatalf("event stream %v, request %d: %q", sse, id, got)
			}
		}
	}
}
