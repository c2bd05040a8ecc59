package mcpbridge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// The fakes the bridge is driven against: a daemon on a unix socket
// answering the few API calls the bridge makes (through the real
// api.Client), and a Streamable HTTP MCP server checking what it receives.

const grant = "notes"

// fakeDaemon is tokend's socket API for one grant. Its tokens are
// at-1, at-2, ...; issued maps each to the scopes it carries.
type fakeDaemon struct {
	mu       sync.Mutex
	token    string
	scope    string
	n        int
	issued   map[string]string
	rejected []api.RejectedRequest
	stepUps  []api.StepUpRequest
	nonces   []string
	// A step-up's authorization comes once the token was fetched
	// authorizeAfter times since (a person running tokend authorize);
	// never when negative.
	authorizeAfter int
	pending        string
	polls          int
	// stepUpLimit: step-ups beyond it are refused (429 step_up_limit).
	stepUpLimit int
	tokenErr    string // a JSON error answer for GET token, with 409
}

func newFakeDaemon(t testing.TB, scope string) (*fakeDaemon, *api.Client) {
	d := &fakeDaemon{scope: scope, issued: map[string]string{}, stepUpLimit: 100}
	d.issue(scope)
	return d, api.NewClient(testutil.ServeUnix(t, d))
}

// issue makes a new current token with scope; the caller holds mu (or
// the daemon is not serving yet).
func (d *fakeDaemon) issue(scope string) {
	d.n++
	d.token, d.scope = fmt.Sprintf("at-%d", d.n), scope
	d.issued[d.token] = scope
}

func (d *fakeDaemon) scopesOf(token string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.issued[token]
	return s, ok
}

func (d *fakeDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	tokenAnswer := func(tokenType string) {
		json.NewEncoder(w).Encode(api.TokenResponse{AccessToken: d.token, TokenType: tokenType, ExpiresIn: 3600, Scope: d.scope})
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/tokens/" + grant:
		if d.tokenErr != "" {
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, d.tokenErr)
			return
		}
		if d.pending != "" {
			d.polls++
			if d.authorizeAfter >= 0 && d.polls > d.authorizeAfter {
				d.issue(d.pending)
				d.pending = ""
			}
		}
		tokenAnswer("Bearer")
	case "POST /v1/tokens/" + grant + "/rejected":
		var req api.RejectedRequest
		json.NewDecoder(r.Body).Decode(&req)
		d.rejected = append(d.rejected, req)
		if req.AccessToken == d.token {
			d.issue(d.scope)
		}
		tokenAnswer("Bearer")
	case "POST /v1/tokens/" + grant + "/step-up":
		var req api.StepUpRequest
		json.NewDecoder(r.Body).Decode(&req)
		d.stepUps = append(d.stepUps, req)
		if len(d.stepUps) > d.stepUpLimit {
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":"step_up_limit","error_description":"grant notes: 3 step-ups within 10m0s"}`)
			return
		}
		d.pending, d.polls = req.Scope, 0
		json.NewEncoder(w).Encode(api.GrantStatus{Name: grant, State: api.StateReauthorizationRequired, StepUpScopes: strings.Fields(req.Scope)})
	case "POST /v1/tokens/" + grant + "/dpop":
		var req api.DPoPRequest
		json.NewDecoder(r.Body).Decode(&req)
		d.nonces = append(d.nonces, req.Nonce)
		json.NewEncoder(w).Encode(api.DPoPResponse{AccessToken: d.token, TokenType: "DPoP", DPoP: "proof:" + req.Method + ":" + req.Nonce, ExpiresIn: 3600})
	default:
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"unknown_grant"}`)
	}
}

// seenRequest is one request the MCP server received.
type seenRequest struct {
	method, session, version, lastEventID, auth, dpop, rpcMethod string
}

// mcpServer is a Streamable HTTP MCP server (transport 2025-11-25) with
// tools that exercise the bridge:
//
//	echo    answers its argument text
//	admin   needs the scope admin (403 insufficient_scope otherwise)
//	greedy  always asks for one scope more than the token has
//	drop    (event streams) sends a notification, then drops the stream;
//	        the answer comes on the GET that resumes it
//	drop-forgotten  as drop, but the stream cannot be resumed (400)
//	wait    answers once the client cancels it
type mcpServer struct {
	t      testing.TB
	daemon *fakeDaemon
	mu     sync.Mutex
	// sse: answer requests with event streams, else with JSON.
	sse bool
	// getStream: offer the GET stream, which sends one notification.
	getStream bool
	// dpop: require DPoP proofs, with the nonce "n-1".
	dpop bool
	// refuse: tokens answered 401 even though the daemon issued them;
	// refuseAll: every token.
	refuse    map[string]bool
	refuseAll bool
	sessions  map[string]bool
	// initialized: the sessions whose client sent
	// notifications/initialized.
	initialized map[string]bool
	nsession    int
	seen        []seenRequest
	resume      map[string]string // Last-Event-ID → the events that follow it
	// waiting: the wait tool's calls, by id, until cancelled;
	// cancelledEarly: cancellations that came before their request.
	waiting        map[string]chan struct{}
	cancelledEarly []string
	getOpen        chan struct{}
	greedyN        int
}

func newMCPServer(t testing.TB, d *fakeDaemon) (*mcpServer, *httptest.Server) {
	s := &mcpServer{t: t, daemon: d, refuse: map[string]bool{}, sessions: map[string]bool{}, initialized: map[string]bool{}, waiting: map[string]chan struct{}{}, resume: map[string]string{}, getOpen: make(chan struct{}, 10)}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *mcpServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

// expireSessions forgets every session, as a restarted server does.
func (s *mcpServer) expireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions = map[string]bool{}
}

const protocolVersion = "2025-11-25"

func (s *mcpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var msg struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
			Name      string          `json:"name"`
			Arguments struct {
				Text string `json:"text"`
			} `json:"arguments"`
		} `json:"params"`
	}
	if r.Method == http.MethodPost {
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
	}
	s.mu.Lock()
	rec := seenRequest{r.Method, r.Header.Get("Mcp-Session-Id"), r.Header.Get("MCP-Protocol-Version"), r.Header.Get("Last-Event-ID"), r.Header.Get("Authorization"), r.Header.Get("DPoP"), msg.Method}
	s.seen = append(s.seen, rec)
	s.mu.Unlock()

	scopes, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	sid := r.Header.Get("Mcp-Session-Id")
	if !(r.Method == http.MethodPost && msg.Method == "initialize") {
		s.mu.Lock()
		known := s.sessions[sid]
		s.mu.Unlock()
		switch {
		case sid == "":
			http.Error(w, "no session", http.StatusBadRequest)
			return
		case !known:
			http.Error(w, "no such session", http.StatusNotFound)
			return
		case rec.version != protocolVersion:
			http.Error(w, "bad MCP-Protocol-Version "+rec.version, http.StatusBadRequest)
			return
		}
	}
	switch r.Method {
	case http.MethodDelete:
		s.mu.Lock()
		delete(s.sessions, sid)
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodGet:
		s.serveGET(w, r)
		return
	case http.MethodPost:
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		http.Error(w, "Content-Type "+ct, http.StatusUnsupportedMediaType)
		return
	}
	if a := r.Header.Get("Accept"); !strings.Contains(a, "application/json") || !strings.Contains(a, "text/event-stream") {
		http.Error(w, "Accept "+a, http.StatusNotAcceptable)
		return
	}
	if msg.Method == "notifications/cancelled" {
		s.mu.Lock()
		id := string(msg.Params.RequestID)
		if w, ok := s.waiting[id]; ok {
			close(w)
			delete(s.waiting, id)
		} else {
			s.cancelledEarly = append(s.cancelledEarly, id)
		}
		s.mu.Unlock()
	}
	if msg.Method == "notifications/initialized" {
		// Slow to take note, as a busy server may be: a request sent
		// before this answer would find the session not initialized.
		time.Sleep(20 * time.Millisecond)
		s.mu.Lock()
		s.initialized[sid] = true
		s.mu.Unlock()
	}
	if msg.ID == nil || msg.Method == "" {
		w.WriteHeader(http.StatusAccepted) // a notification or a response
		return
	}
	s.mu.Lock()
	ready := s.initialized[sid]
	s.mu.Unlock()
	if msg.Method != "initialize" && msg.Method != "ping" && !ready {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(msg.ID)+`,"error":{"code":-32600,"message":"`+msg.Method+` before notifications/initialized"}}`)
		return
	}
	var result string
	begun := false // the event stream's headers are out
	switch msg.Method {
	case "initialize":
		s.mu.Lock()
		s.nsession++
		sid = fmt.Sprintf("session-%d", s.nsession)
		s.sessions[sid] = true
		s.mu.Unlock()
		w.Header().Set("Mcp-Session-Id", sid)
		result = `{"protocolVersion":"` + protocolVersion + `","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"1"}}`
	case "tools/call":
		switch msg.Params.Name {
		case "echo":
			result = `{"content":[{"type":"text","text":` + jsonString(msg.Params.Arguments.Text) + `}]}`
		case "admin":
			if !strings.Contains(" "+scopes+" ", " admin ") {
				w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="read admin", resource_metadata="http://x/.well-known/oauth-protected-resource"`)
				w.WriteHeader(http.StatusForbidden)
				return
			}
			result = `{"content":[{"type":"text","text":"admin done"}]}`
		case "greedy":
			s.mu.Lock()
			s.greedyN++
			more := fmt.Sprintf("%s extra%d", scopes, s.greedyN)
			s.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+more+`"`)
			w.WriteHeader(http.StatusForbidden)
			return
		case "drop", "drop-forgotten":
			s.serveDrop(w, msg.ID, msg.Params.Name == "drop")
			return
		case "wait":
			// Answers once the client cancels it.
			s.mu.Lock()
			early := slices.Contains(s.cancelledEarly, string(msg.ID))
			cancelled := make(chan struct{})
			if !early {
				s.waiting[string(msg.ID)] = cancelled
			}
			s.mu.Unlock()
			if early {
				result = `{"content":[{"type":"text","text":"the cancellation came before the request"}]}`
				break
			}
			if s.sse {
				// The answer begins: the client may go on.
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				begun = true
			}
			select {
			case <-cancelled:
				result = `{"content":[{"type":"text","text":"cancelled"}]}`
			case <-r.Context().Done():
				return
			}
		default:
			result = `{"content":[],"isError":true}`
		}
	default:
		result = `{}`
	}
	answer := `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"result":` + result + `}`
	if !s.sse {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
		return
	}
	if begun {
		io.WriteString(w, "data: "+answer+"\n\n")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	// A notification before the answer, data split over lines, and a
	// comment: what a real stream may carry.
	io.WriteString(w, ": keep-alive\n\nid: e-1\ndata: {\"jsonrpc\":\"2.0\",\ndata:  \"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n")
	w.(http.Flusher).Flush()
	io.WriteString(w, "id: e-2\r\ndata: "+answer+"\r\n\r\n")
}

// serveDrop sends a priming event, a notification, and drops the stream
// before the answer; the GET resuming after e-2 gets the answer.
func (s *mcpServer) serveDrop(w http.ResponseWriter, id json.RawMessage, resumable bool) {
	if resumable {
		s.mu.Lock()
		s.resume["d-2"] = "id: d-3\ndata: " + `{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"content":[{"type":"text","text":"after the drop"}]}}` + "\n\n"
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "id: d-1\nretry: 7\ndata:\n\nid: d-2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"before the drop\"}}\n\n")
	w.(http.Flusher).Flush()
	// Returning ends the stream: the client sees it close.
}

func (s *mcpServer) serveGET(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		http.Error(w, "Accept", http.StatusNotAcceptable)
		return
	}
	if lid := r.Header.Get("Last-Event-ID"); lid != "" {
		s.mu.Lock()
		events, ok := s.resume[lid]
		delete(s.resume, lid)
		s.mu.Unlock()
		if !ok {
			http.Error(w, "unknown event id", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, events)
		return
	}
	if !s.getStream {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
	w.(http.Flusher).Flush()
	s.getOpen <- struct{}{}
	<-r.Context().Done()
}

// authenticate checks the request's token (and DPoP proof) against the
// daemon's issued tokens and returns its scopes; otherwise it answers
// 401.
func (s *mcpServer) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	scheme, tok := "Bearer ", ""
	if s.dpop {
		scheme = "DPoP "
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, scheme) {
		tok = strings.TrimPrefix(a, scheme)
	}
	scopes, issued := s.daemon.scopesOf(tok)
	s.mu.Lock()
	refused := s.refuseAll || s.refuse[tok]
	s.mu.Unlock()
	if !issued || refused {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="http://x/.well-known/oauth-protected-resource"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return "", false
	}
	if s.dpop && r.Header.Get("DPoP") != "proof:"+r.Method+":n-1" {
		w.Header().Set("DPoP-Nonce", "n-1")
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="a nonce is required"`)
		w.WriteHeader(http.StatusUnauthorized)
		return "", false
	}
	return scopes, true
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// harness runs the bridge with its stdin and stdout in the test's hands.
type harness struct {
	t     testing.TB
	stdin *io.PipeWriter
	lines chan string
	log   *testutil.SyncBuffer
	done  chan error
	// slept are the waits the bridge asked for, in order.
	mu    sync.Mutex
	slept []time.Duration
	clock time.Time
}

func startBridge(t testing.TB, cfg Config) *harness {
	h := &harness{t: t, lines: make(chan string, 100), log: &testutil.SyncBuffer{}, done: make(chan error, 1), clock: time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h.stdin = inW
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, maxMessage+1)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	cfg.Grant = grant
	cfg.Log = h.log
	// The clock moves by what the bridge waits for; the real wait is
	// kept short.
	cfg.Now = func() time.Time {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.clock
	}
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.slept = append(h.slept, d)
		h.clock = h.clock.Add(d)
		h.mu.Unlock()
		return api.Sleep(ctx, min(d, time.Millisecond))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		err := Run(ctx, cfg, inR, outW)
		outW.Close()
		h.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Error("the bridge did not stop")
		}
	})
	return h
}

func (h *harness) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		h.t.Fatal(err)
	}
}

// recv returns the next message the bridge wrote, decoded.
func (h *harness) recv() map[string]any {
	h.t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			h.t.Fatalf("stdout ended; log:\n%s", h.log.String())
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			h.t.Fatalf("stdout line %q: %v", line, err)
		}
		return m
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no message on stdout; log:\n%s", h.log.String())
	}
	return nil
}

// call sends a request and returns its answer, checking it has the id;
// the server's notifications that come before it are skipped.
func (h *harness) call(id int, method, params string) map[string]any {
	h.t.Helper()
	h.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, id, method, params))
	m := h.recv()
	for m["method"] != nil && m["id"] == nil {
		m = h.recv()
	}
	if m["id"] != float64(id) {
		h.t.Fatalf("answer %v, want id %d", m, id)
	}
	return m
}

// initialize opens the session as a client does.
func (h *harness) initialize(id int) map[string]any {
	h.t.Helper()
	m := h.call(id, "initialize", `{"protocolVersion":"`+protocolVersion+`","capabilities":{},"clientInfo":{"name":"test","version":"1"}}`)
	h.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return m
}

// close ends stdin and returns Run's result.
func (h *harness) close() error {
	h.t.Helper()
	h.stdin.Close()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("the bridge did not end with stdin")
	}
	return nil
}

func (h *harness) sleeps() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.slept...)
}

func toolCall(name, text string) string {
	return `{"name":"` + name + `","arguments":{"text":` + jsonString(text) + `}}`
}

// resultText is the first text content of a tools/call answer.
func resultText(t testing.TB, m map[string]any) string {
	t.Helper()
	r, _ := m["result"].(map[string]any)
	c, _ := r["content"].([]any)
	if len(c) == 0 {
		t.Fatalf("no content in %v", m)
	}
	first, _ := c[0].(map[string]any)
	s, _ := first["text"].(string)
	return s
}

// rpcError is the error of an answer.
func rpcError(t testing.TB, m map[string]any) (code float64, message string, data map[string]any) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("not an error answer: %v", m)
	}
	data, _ = e["data"].(map[string]any)
	msg, _ := e["message"].(string)
	c, _ := e["code"].(float64)
	return c, msg, data
}
