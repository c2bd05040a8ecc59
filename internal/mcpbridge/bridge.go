package mcpbridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// Daemon is what the bridge asks tokend's socket: the grant's token (or a
// DPoP proof with it) for each request, and what to do about a refused
// token or a request for more scopes. *api.Client is one;
// *api.WaitingClient is one that waits through a restart of the daemon.
type Daemon interface {
	Token(ctx context.Context, name string) (*api.TokenResponse, error)
	DPoP(ctx context.Context, name string, req api.DPoPRequest) (*api.DPoPResponse, error)
	Rejected(ctx context.Context, name string, req api.RejectedRequest) (*api.TokenResponse, error)
	StepUp(ctx context.Context, name string, req api.StepUpRequest) (*api.GrantStatus, error)
}

var (
	_ Daemon = (*api.Client)(nil)
	_ Daemon = (*api.WaitingClient)(nil)
)

// Limits and defaults.
const (
	// maxMessage bounds one message: a line on stdin, a JSON answer, an
	// SSE event.
	maxMessage = 32 << 20
	// maxInFlight bounds the client's messages being delivered at once;
	// beyond, stdin is read when one is done.
	maxInFlight = 64
	// maxStepUps is how many times one request is sent again after a
	// step-up: at most three authorizations for one operation.
	maxStepUps = 2
	// maxFruitless is how many reconnections of an SSE stream in a row may
	// fail (or bring nothing) before the bridge gives up on it.
	maxFruitless = 5
	// defaultRetry is the wait before reconnecting a stream whose server
	// named no retry.
	defaultRetry = time.Second
	// daemonTimeout bounds each call to the daemon; a token fetch may wait
	// for a refresh at the provider (at most 30 s).
	daemonTimeout = time.Minute
	// deleteTimeout bounds the DELETE of the session at the end.
	deleteTimeout = 5 * time.Second
	// DefaultStepUpWait is how long a request waits for a person to
	// authorize the scopes a server asked for.
	DefaultStepUpWait = 5 * time.Minute
	// DefaultStepUpPoll is how often the bridge asks the daemon whether
	// the wider token has come.
	DefaultStepUpPoll = time.Second
)

// Config is one bridge: a grant, the server's URL, and how to reach the
// daemon.
type Config struct {
	// Grant names the grant whose token is sent.
	Grant string
	// URL is the server's MCP endpoint (the grant's protected_resource
	// by default, chosen by the caller).
	URL string
	// DPoP says the grant's tokens are DPoP-bound: each request gets a
	// fresh proof from the daemon.
	DPoP   bool
	Daemon Daemon
	// HTTPClient sends the requests to the server; nil is a client that
	// follows no redirects (a token is never sent elsewhere) and has no
	// overall timeout (a stream lasts as long as the session).
	HTTPClient *http.Client
	// Log receives the messages for people (stderr); nil discards them.
	Log io.Writer
	// StepUpWait and StepUpPoll: DefaultStepUpWait and DefaultStepUpPoll
	// when zero.
	StepUpWait, StepUpPoll time.Duration
	// Now and Sleep are the clock; nil is the real one.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// bridge is one run: the client's stdio, the server's session.
type bridge struct {
	cfg    Config
	hc     *http.Client
	out    *lineWriter
	cancel context.CancelCauseFunc
	// listeners are the GET streams' goroutines: Run returns only once
	// they ended, so nothing they write outlives it.
	listeners sync.WaitGroup

	mu        sync.Mutex
	sessionID string
	version   string // MCP-Protocol-Version, from the initialize result
	// ended: the server ended the session (404); until the client
	// initializes a new one, its messages are answered so at once.
	ended   bool
	stopGET context.CancelFunc // ends the current session's GET stream
	nonce   string             // the server's last DPoP-Nonce
	stepUps map[string]*stepUpWait
	logMu   sync.Mutex
}

// Run bridges stdin and stdout to the server until stdin ends (then the
// messages being delivered are finished and the session is deleted) or
// ctx ends. It returns nil on both; an error when stdout cannot be
// written or stdin read.
func Run(ctx context.Context, cfg Config, stdin io.Reader, stdout io.Writer) error {
	if cfg.Grant == "" || cfg.URL == "" || cfg.Daemon == nil {
		return errors.New("mcpbridge: a grant, a URL and a daemon are needed")
	}
	if err := oauth.CheckEndpointURL(cfg.URL); err != nil {
		return fmt.Errorf("mcpbridge: the server's URL %w", err)
	}
	if cfg.StepUpWait == 0 {
		cfg.StepUpWait = DefaultStepUpWait
	}
	if cfg.StepUpPoll == 0 {
		cfg.StepUpPoll = DefaultStepUpPoll
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = api.Sleep
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	b := &bridge{cfg: cfg, hc: cfg.HTTPClient}
	if b.hc == nil {
		b.hc = defaultHTTPClient()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b.cancel = cancel
	b.out = &lineWriter{w: stdout, failed: func(err error) { cancel(fmt.Errorf("mcpbridge: writing to stdout: %w", err)) }}

	var inflight sync.WaitGroup
	slots := make(chan struct{}, maxInFlight)
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() { readErr <- b.readLines(ctx, stdin, lines) }()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case line := <-lines:
			m, perr := parseClientMessage(line)
			if perr != nil {
				b.logf("a line on stdin is not a JSON-RPC message: %v", perr)
				b.out.write(errorAnswer("null", codeParseError, "tokend mcp: parse error: "+perr.Error(), errorData{}, nil))
				continue
			}
			if len(m.requests) == 0 {
				// A notification or a response: delivered before the
				// next message is read (notifications/initialized is
				// taken before the first request).
				b.deliver(ctx, m)
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				break loop
			}
			inflight.Add(1)
			go func() {
				defer func() { <-slots; inflight.Done() }()
				b.deliver(ctx, m)
			}()
			// The next message goes once the server has begun
			// answering this request (not once it answered): the
			// server sees the client's order (a cancellation after its
			// request) while requests run side by side.
			select {
			case <-m.sent:
			case <-ctx.Done():
				break loop
			}
		case err = <-readErr:
			break loop
		}
	}
	inflight.Wait()
	b.endSession()
	b.listeners.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("mcpbridge: reading stdin: %w", err)
	}
	return nil
}

// readLines sends stdin's lines, without their end, to lines until stdin
// ends; a line longer than maxMessage is skipped with a message.
func (b *bridge) readLines(ctx context.Context, r io.Reader, lines chan<- []byte) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case tooLong:
		case len(line)+len(chunk) > maxMessage+2:
			tooLong, line = true, nil
		default:
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			if err == nil {
				b.logf("a line on stdin is longer than %d bytes: skipped", maxMessage)
				tooLong = false
			}
		} else if l := trimLine(line); len(l) > 0 {
			select {
			case lines <- append([]byte(nil), l...):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		line = line[:0]
		if err != nil {
			return err
		}
	}
}

func trimLine(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// lineWriter writes messages to stdout, one line each, one at a time: the
// answers of concurrent requests and the GET stream never interleave.
type lineWriter struct {
	mu     sync.Mutex
	w      io.Writer
	buf    []byte
	err    error
	failed func(error)
}

func (l *lineWriter) write(msg []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	l.buf = append(append(l.buf[:0], msg...), '\n')
	if _, err := l.w.Write(l.buf); err != nil {
		l.err = err
		l.failed(err)
	}
	if cap(l.buf) > 1<<20 {
		l.buf = nil
	}
}

// logf writes one line for people, made printable (a server's text cannot
// drive the terminal or forge lines).
func (b *bridge) logf(format string, args ...any) {
	line := oauth.Printable(fmt.Sprintf(format, args...))
	b.logMu.Lock()
	defer b.logMu.Unlock()
	fmt.Fprintf(b.cfg.Log, "tokend mcp: %s\n", line)
}

// session returns the session id and protocol version to send, and
// whether the server ended the session.
func (b *bridge) session() (id, version string, ended bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessionID, b.version, b.ended
}

// startSession takes the session id the server gave with its answer to
// initialize; a session the bridge had before is left (its GET stream
// stopped).
func (b *bridge) startSession(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopGET != nil {
		b.stopGET()
		b.stopGET = nil
	}
	b.sessionID, b.version, b.ended = id, "", false
}

func (b *bridge) setVersion(v string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.version = v
}

// sessionGone forgets session id, which the server answered 404 for: the
// client's next initialize starts a new one.
func (b *bridge) sessionGone(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sessionID != id {
		return
	}
	b.logf("the server ended the session (HTTP 404); the client must initialize a new one")
	if b.stopGET != nil {
		b.stopGET()
		b.stopGET = nil
	}
	b.sessionID, b.version, b.ended = "", "", true
}

func (b *bridge) dpopNonce() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nonce
}

func (b *bridge) setDPoPNonce(n string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nonce = n
}

// endSession stops the GET stream and deletes the session at the server
// (transport §"Session Management": a client that no longer needs it
// SHOULD). A 405 means the server does not let clients end sessions.
func (b *bridge) endSession() {
	b.mu.Lock()
	id, version := b.sessionID, b.version
	if b.stopGET != nil {
		b.stopGET()
		b.stopGET = nil
	}
	b.sessionID = ""
	b.mu.Unlock()
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
	defer cancel()
	h := http.Header{}
	h.Set(headerSessionID, id)
	if version != "" {
		h.Set(headerProtocolVersion, version)
	}
	resp, err := b.send(ctx, outgoing{method: http.MethodDelete, header: h})
	if err != nil {
		b.logf("ending the session: %v", err)
		return
	}
	drain(resp)
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
		b.logf("ending the session: the server answered HTTP %d", resp.StatusCode)
	}
}
