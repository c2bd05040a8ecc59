package mcpbridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
)

// Headers of the Streamable HTTP transport.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "MCP-Protocol-Version"
	headerLastEventID     = "Last-Event-ID"
)

// outgoing is one request to the server before its credentials: it is
// built anew for each attempt.
type outgoing struct {
	method string
	body   []byte
	header http.Header
	// stepUp allows waiting for a step-up authorization (POSTs of the
	// client's requests): not for streams and the final DELETE.
	stepUp bool
	// written, if set, is called when the body has been written out.
	written func()
}

func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxInFlight
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// deliveryError is a message the bridge could not deliver or whose answer
// did not come back; it becomes the JSON-RPC error answer of the
// message's requests.
type deliveryError struct {
	msg       string
	status    int
	challenge string
	// rpcError is the JSON-RPC error object the server's HTTP error
	// answer carried, if any: the client gets it as the server wrote it.
	rpcError json.RawMessage
}

func (e *deliveryError) Error() string { return e.msg }

// send sends o with the grant's credentials and returns the server's
// answer, whatever its status, once the authorization rules are done
// with: a 401 is reported to the daemon once (which answers a token other
// than the refused one) and the request sent again; a DPoP server asking
// for a nonce gets the request again with it; a 403 insufficient_scope
// with scopes is recorded as a step-up, and the request is sent again
// once a token with those scopes has come, at most maxStepUps times.
// Errors are *deliveryError.
func (b *bridge) send(ctx context.Context, o outgoing) (*http.Response, error) {
	var (
		override   string // the token the daemon answered a rejection with
		rejected   bool
		nonceRetry bool
		stepUps    int
	)
	for {
		req, err := http.NewRequestWithContext(ctx, o.method, b.cfg.URL, nil)
		if err != nil {
			return nil, &deliveryError{msg: "tokend mcp: " + err.Error()}
		}
		if o.body != nil {
			req.Body = &writtenReader{r: bytes.NewReader(o.body), written: o.written}
			req.ContentLength = int64(len(o.body))
			req.GetBody = func() (io.ReadCloser, error) {
				return &writtenReader{r: bytes.NewReader(o.body), written: o.written}, nil
			}
		}
		req.Header = o.header.Clone()
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header.Set("User-Agent", "tokend-mcp")
		used, err := b.authorize(ctx, req, override)
		if err != nil {
			return nil, err
		}
		resp, err := b.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, &deliveryError{msg: "tokend mcp: " + context.Cause(ctx).Error()}
			}
			return nil, &deliveryError{msg: "tokend mcp: sending to the MCP server: " + err.Error()}
		}
		if b.cfg.DPoP {
			if n := resp.Header.Get("DPoP-Nonce"); n != "" {
				b.setDPoPNonce(n)
			}
		}
		chal := wwwAuthenticate(resp.Header)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if b.cfg.DPoP && !nonceRetry && asksDPoPNonce(resp.Header) {
				nonceRetry = true
				drain(resp)
				continue
			}
			if rejected {
				return resp, nil
			}
			rejected = true
			drain(resp)
			dctx, cancel := context.WithTimeout(ctx, daemonTimeout)
			t, err := b.cfg.Daemon.Rejected(dctx, b.cfg.Grant, api.RejectedRequest{AccessToken: used, Challenge: chal})
			cancel()
			if err != nil {
				return nil, b.daemonError("the MCP server refused the grant's token (HTTP 401) and the daemon has no other", err)
			}
			if !b.cfg.DPoP {
				override = t.AccessToken
			}
			b.logf("the MCP server refused the grant's token (HTTP 401); sending again with the token the daemon gave")
			continue
		case http.StatusForbidden:
			scope := insufficientScope(resp.Header)
			if scope == "" || !o.stepUp {
				return resp, nil
			}
			refused := httpFailure(resp)
			if stepUps >= maxStepUps {
				refused.msg = fmt.Sprintf("tokend mcp: the MCP server still asks for more scopes (%s) after %d step-ups of grant %s: giving up on this request", scope, maxStepUps, b.cfg.Grant)
				b.logf("%s", strings.TrimPrefix(refused.msg, "tokend mcp: "))
				return nil, refused
			}
			stepUps++
			if err := b.stepUp(ctx, scope, chal, used); err != nil {
				refused.msg = "tokend mcp: the MCP server asks for scopes " + scope + " (HTTP 403 insufficient_scope): " + err.Error()
				return nil, refused
			}
			override = ""
			continue
		}
		return resp, nil
	}
}

// writtenReader is a request's body that tells when the transport has
// read it all, that is written it to the connection.
type writtenReader struct {
	r       *bytes.Reader
	written func()
}

func (w *writtenReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err == io.EOF && w.written != nil {
		w.written()
	}
	return n, err
}

func (w *writtenReader) Close() error { return nil }

// authorize sets the request's credentials from the daemon: the token
// given (the answer to a rejection), else the grant's current one; a fresh
// proof for each request of a DPoP grant. It returns the token sent.
func (b *bridge) authorize(ctx context.Context, req *http.Request, override string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, daemonTimeout)
	defer cancel()
	if b.cfg.DPoP {
		d, err := b.cfg.Daemon.DPoP(ctx, b.cfg.Grant, api.DPoPRequest{Method: req.Method, URL: b.cfg.URL, Nonce: b.dpopNonce()})
		if err != nil {
			return "", b.daemonError("no DPoP proof for the request", err)
		}
		req.Header.Set("Authorization", "DPoP "+d.AccessToken)
		req.Header.Set("DPoP", d.DPoP)
		return d.AccessToken, nil
	}
	tok := override
	if tok == "" {
		t, err := b.cfg.Daemon.Token(ctx, b.cfg.Grant)
		if err != nil {
			return "", b.daemonError("no token for the request", err)
		}
		tok = t.AccessToken
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return tok, nil
}

// daemonError is the delivery error for a failed call to the daemon; its
// text (which names the command a person must run, when one must) goes to
// stderr too.
func (b *bridge) daemonError(what string, err error) *deliveryError {
	e := &deliveryError{msg: fmt.Sprintf("tokend mcp: grant %s: %s: %v", b.cfg.Grant, what, err)}
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == http.StatusConflict && !strings.Contains(err.Error(), "tokend authorize") {
		e.msg += fmt.Sprintf(" (a person must run: tokend authorize %s)", b.cfg.Grant)
	}
	b.logf("%s", strings.TrimPrefix(e.msg, "tokend mcp: "))
	return e
}

// stepUpWait is one step-up being waited for; the requests refused for
// the same scopes meanwhile wait for it too rather than record their own
// (the daemon bounds step-ups per grant: parallel tool calls refused at
// once must not use up that bound).
type stepUpWait struct {
	done chan struct{}
	err  error
}

// stepUp records the scopes the server asked for and waits for a token
// that has them, or joins the wait already under way for them.
func (b *bridge) stepUp(ctx context.Context, scope, chal, refused string) error {
	b.mu.Lock()
	w, joined := b.stepUps[scope]
	if !joined {
		w = &stepUpWait{done: make(chan struct{})}
		if b.stepUps == nil {
			b.stepUps = map[string]*stepUpWait{}
		}
		b.stepUps[scope] = w
	}
	b.mu.Unlock()
	if joined {
		select {
		case <-w.done:
			return w.err
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	w.err = b.awaitStepUp(ctx, scope, chal, refused)
	b.mu.Lock()
	delete(b.stepUps, scope)
	b.mu.Unlock()
	close(w.done)
	return w.err
}

// awaitStepUp records the scopes the server asked for and waits, bounded
// by StepUpWait, for a token that has them: a token whose scope covers
// them, or, when the daemon names no scope, a token other than the
// refused one.
func (b *bridge) awaitStepUp(ctx context.Context, scope, chal, refused string) error {
	dctx, cancel := context.WithTimeout(ctx, daemonTimeout)
	_, err := b.cfg.Daemon.StepUp(dctx, b.cfg.Grant, api.StepUpRequest{Scope: scope, Challenge: chal})
	cancel()
	if err != nil {
		b.logf("grant %s: the MCP server asks for scopes %s; recording the step-up failed: %v", b.cfg.Grant, scope, err)
		return fmt.Errorf("recording the step-up failed: %w", err)
	}
	want := strings.Fields(scope)
	deadline := b.cfg.Now().Add(b.cfg.StepUpWait)
	told := false
	for {
		dctx, cancel := context.WithTimeout(ctx, daemonTimeout)
		t, err := b.cfg.Daemon.Token(dctx, b.cfg.Grant)
		cancel()
		if err == nil && covers(t, want, refused) {
			if told {
				b.logf("grant %s: authorized for %s; sending the request again", b.cfg.Grant, scope)
			}
			return nil
		}
		if !told {
			b.logf("grant %s: the MCP server asks for scopes %s; waiting up to %s for a person to run: tokend authorize %s", b.cfg.Grant, scope, b.cfg.StepUpWait, b.cfg.Grant)
			told = true
		}
		if !b.cfg.Now().Before(deadline) {
			b.logf("grant %s: no authorization for scopes %s within %s", b.cfg.Grant, scope, b.cfg.StepUpWait)
			return fmt.Errorf("no authorization for them came within %s (tokend authorize %s)", b.cfg.StepUpWait, b.cfg.Grant)
		}
		if err := b.cfg.Sleep(ctx, b.cfg.StepUpPoll); err != nil {
			return err
		}
	}
}

// covers reports whether t has every scope in want: by its scope when
// the daemon names one; else a token other than the refused one is taken
// as the new authorization's.
func covers(t *api.TokenResponse, want []string, refused string) bool {
	if t.Scope == "" {
		return t.AccessToken != refused
	}
	have := map[string]bool{}
	for _, s := range strings.Fields(t.Scope) {
		have[s] = true
	}
	for _, s := range want {
		if !have[s] {
			return false
		}
	}
	return true
}

// httpFailure reads an answer that is not a success into a delivery
// error (closing its body): the server's JSON-RPC error if it wrote one,
// else a message naming the status.
func httpFailure(resp *http.Response) *deliveryError {
	defer resp.Body.Close()
	e := &deliveryError{status: resp.StatusCode, challenge: wwwAuthenticate(resp.Header)}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if isJSON(resp) {
		var m struct {
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(body, &m) == nil && len(m.Error) > 0 && m.Error[0] == '{' {
			var c bytes.Buffer
			if json.Compact(&c, m.Error) == nil {
				e.rpcError = c.Bytes()
			}
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		e.msg = "tokend mcp: the MCP server refused the grant's token (HTTP 401) even after the daemon gave another"
		e.rpcError = nil
	case http.StatusForbidden:
		e.msg = "tokend mcp: the MCP server refused the request (HTTP 403)"
		e.rpcError = nil
	default:
		e.msg = fmt.Sprintf("tokend mcp: the MCP server answered HTTP %d", resp.StatusCode)
	}
	return e
}

func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return strings.ToLower(mt)
}

func isJSON(resp *http.Response) bool { return mediaType(resp.Header) == "application/json" }

// drain reads a little of a body that is not used, so its connection can
// be used again, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// closeSoon closes a stream whose reader is done with it (its request is
// answered): the server should end it, and reading it to the end lets its
// connection be used again; one that does not end within a second is cut.
func closeSoon(body io.ReadCloser) {
	t := time.AfterFunc(time.Second, func() { body.Close() })
	go func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<20))
		t.Stop()
		body.Close()
	}()
}
