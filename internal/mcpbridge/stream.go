package mcpbridge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// errSessionGone answers the messages of a session the server ended
// (transport §"Session Management": 404 for its id): the client must
// initialize a new one.
var errSessionGone = &deliveryError{msg: "tokend mcp: the MCP server ended the session (HTTP 404): initialize a new one", status: http.StatusNotFound}

// pending is what one client message is still owed: the ids of its
// requests the server has not answered yet.
type pending struct {
	ids    map[string]bool
	initID string
	// initialized: the initialize request among them was answered with a
	// result.
	initialized bool
}

func newPending(m *clientMessage) *pending {
	p := &pending{ids: map[string]bool{}, initID: m.initID}
	for _, id := range m.requests {
		p.ids[id] = true
	}
	return p
}

func (p *pending) done() bool { return p == nil || len(p.ids) == 0 }

// deliver sends one client message and forwards what the server answers;
// each of its requests left unanswered gets an error answer.
func (b *bridge) deliver(ctx context.Context, m *clientMessage) {
	defer m.markSent() // also when it could not be sent
	p := newPending(m)
	err := b.exchange(ctx, m, p)
	if p.initialized {
		b.listenAfterInitialize(ctx)
	}
	if p.done() {
		if err != nil {
			b.logf("%s: %v", describe(m), strings.TrimPrefix(err.Error(), "tokend mcp: "))
		}
		return
	}
	var de *deliveryError
	if err == nil {
		de = &deliveryError{msg: "tokend mcp: the MCP server's answer ended without a response to this request"}
	} else if !errors.As(err, &de) {
		de = &deliveryError{msg: "tokend mcp: " + strings.TrimPrefix(err.Error(), "tokend mcp: ")}
	}
	if ctx.Err() != nil {
		return // the client is gone or the bridge stops: nobody to answer
	}
	b.logf("%s: %v", describe(m), strings.TrimPrefix(de.msg, "tokend mcp: "))
	for _, id := range m.requests {
		if p.ids[id] {
			b.out.write(errorAnswer(id, codeUndelivered, de.msg, errorData{HTTPStatus: de.status, WWWAuthenticate: de.challenge}, de.rpcError))
		}
	}
}

func describe(m *clientMessage) string {
	if m.method != "" {
		return m.method
	}
	return "a response to the server"
}

// exchange POSTs the message and follows the answer.
func (b *bridge) exchange(ctx context.Context, m *clientMessage, p *pending) error {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	sid, version, ended := b.session()
	switch {
	case m.initID != "":
		// A new session: the server gives its id with the answer.
		sid, version = "", ""
	case ended:
		return errSessionGone
	}
	if sid != "" {
		h.Set(headerSessionID, sid)
	}
	if version != "" {
		h.Set(headerProtocolVersion, version)
	}
	resp, err := b.send(ctx, outgoing{method: http.MethodPost, body: m.raw, header: h, stepUp: len(m.requests) > 0, written: m.writtenOut})
	m.markSent() // the server has begun answering
	if err != nil {
		return err
	}
	if m.initID != "" && resp.StatusCode/100 == 2 {
		// Before the answer reaches the client, which then writes the
		// session's next messages.
		b.startSession(resp.Header.Get(headerSessionID))
	}
	return b.answer(ctx, resp, sid, p)
}

// answer follows the server's answer to a POST: JSON, an event stream,
// or nothing (202).
func (b *bridge) answer(ctx context.Context, resp *http.Response, sid string, p *pending) error {
	switch {
	case resp.StatusCode == http.StatusNotFound && sid != "":
		drain(resp)
		b.sessionGone(sid)
		return errSessionGone
	case resp.StatusCode/100 != 2:
		return httpFailure(resp)
	}
	switch mediaType(resp.Header) {
	case "text/event-stream":
		return b.followStream(ctx, resp.Body, sid, p)
	case "application/json":
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxMessage+1))
		if err != nil {
			return &deliveryError{msg: "tokend mcp: reading the MCP server's answer: " + err.Error()}
		}
		if len(body) > maxMessage {
			return &deliveryError{msg: "tokend mcp: the MCP server's answer is larger than the limit"}
		}
		if len(trimLine(body)) > 0 {
			b.forward(body, p)
		}
		return nil
	default:
		drain(resp)
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent && !p.done() {
			return &deliveryError{msg: "tokend mcp: the MCP server answered with neither JSON nor an event stream (Content-Type " + resp.Header.Get("Content-Type") + ")"}
		}
		return nil
	}
}

// followStream forwards the messages of the event stream answering a
// POST until the requests are answered. When the stream ends first, it
// resumes it with GET and Last-Event-ID after the server's retry delay
// (transport §"Resumability and Redelivery"); a stream that gave no event
// id cannot be resumed.
func (b *bridge) followStream(ctx context.Context, body io.ReadCloser, sid string, p *pending) error {
	lastID, retry := "", defaultRetry
	fruitless := 0
	for {
		got, err := b.consume(body, &lastID, &retry, p)
		if p.done() {
			closeSoon(body)
			return nil
		}
		body.Close()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, errEventTooLarge) {
			return &deliveryError{msg: "tokend mcp: " + err.Error()}
		}
		if lastID == "" {
			return &deliveryError{msg: "tokend mcp: the MCP server's event stream ended before the answer, with no event id to resume it from"}
		}
		if got {
			fruitless = 0
		}
		for body = nil; body == nil; {
			if fruitless >= maxFruitless {
				return &deliveryError{msg: "tokend mcp: resuming the MCP server's event stream failed " + strconv.Itoa(maxFruitless) + " times"}
			}
			fruitless++
			if err := b.cfg.Sleep(ctx, retry); err != nil {
				return context.Cause(ctx)
			}
			resp, err := b.openStream(ctx, sid, lastID)
			if err != nil {
				var de *deliveryError
				if errors.As(err, &de) && de.status >= 400 && de.status < 500 && de.status != http.StatusRequestTimeout && de.status != http.StatusTooManyRequests {
					// The session is gone (404), or the server will
					// not resume this stream: trying again will not help.
					if de != errSessionGone {
						de = &deliveryError{msg: "tokend mcp: the MCP server refused to resume its event stream (HTTP " + strconv.Itoa(de.status) + ")", status: de.status, challenge: de.challenge}
					}
					return de
				}
				b.logf("resuming the event stream: %v", strings.TrimPrefix(err.Error(), "tokend mcp: "))
				continue
			}
			body = resp.Body
		}
	}
}

// openStream GETs the server's event stream: resuming the one lastID
// belongs to, or, with none, the server's own stream. An answer that is
// not an event stream is a *deliveryError (405: the server offers none).
func (b *bridge) openStream(ctx context.Context, sid, lastID string) (*http.Response, error) {
	h := http.Header{}
	h.Set("Accept", "text/event-stream")
	_, version, _ := b.session()
	if sid != "" {
		h.Set(headerSessionID, sid)
	}
	if version != "" {
		h.Set(headerProtocolVersion, version)
	}
	if lastID != "" {
		h.Set(headerLastEventID, lastID)
	}
	resp, err := b.send(ctx, outgoing{method: http.MethodGet, header: h})
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && sid != "":
		drain(resp)
		b.sessionGone(sid)
		return nil, errSessionGone
	case resp.StatusCode/100 != 2:
		return nil, httpFailure(resp)
	case mediaType(resp.Header) != "text/event-stream":
		drain(resp)
		return nil, &deliveryError{msg: "tokend mcp: the MCP server answered a GET with " + resp.Header.Get("Content-Type") + ", not an event stream", status: resp.StatusCode}
	}
	return resp, nil
}

// consume forwards the messages of an event stream until it ends or the
// requests of p are answered, keeping the last event id and the server's
// retry delay. got says whether any event came.
func (b *bridge) consume(body io.Reader, lastID *string, retry *time.Duration, p *pending) (got bool, err error) {
	r := newSSEReader(body, maxMessage)
	for {
		ev, err := r.next()
		if err != nil {
			return got, err
		}
		got = true
		if ev.hasID {
			*lastID = ev.id
		}
		if ev.hasRetry {
			*retry = ev.retry
		}
		if len(ev.data) == 0 || (ev.name != "" && ev.name != "message") {
			continue // a priming event, or one that is not a message
		}
		b.forward(ev.data, p)
		if p != nil && p.done() {
			return got, nil
		}
	}
}

// forward writes a server's message to stdout, on one line, and marks the
// requests it answers; an initialize result gives the session's protocol
// version, kept before the client can read the answer.
func (b *bridge) forward(raw []byte, p *pending) {
	msg, err := compactMessage(raw)
	if err != nil {
		b.logf("dropping a message from the MCP server: %v", err)
		return
	}
	if p != nil && len(p.ids) > 0 {
		for _, e := range envelopes(msg) {
			if !e.isResponse() || !p.ids[string(e.ID)] {
				continue
			}
			delete(p.ids, string(e.ID))
			if string(e.ID) == p.initID && e.Result != nil {
				if v := protocolVersionOf(e.Result); v != "" {
					b.setVersion(v)
				}
				p.initialized = true
			}
		}
	}
	b.out.write(msg)
}

// listenAfterInitialize opens the server's GET stream for the session
// just initialized, for the requests and notifications the server sends
// on its own (transport §"Listening for Messages from the Server").
func (b *bridge) listenAfterInitialize(ctx context.Context) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopGET != nil {
		return
	}
	gctx, stop := context.WithCancel(ctx)
	b.stopGET = stop
	sid := b.sessionID
	b.listeners.Go(func() { b.listen(gctx, sid) })
}

// listen keeps the server's GET stream open until ctx ends: reconnecting
// (with Last-Event-ID when the stream gave one) when it drops, and giving
// up when the server has none (405), ended the session, or failed
// maxFruitless times in a row.
func (b *bridge) listen(ctx context.Context, sid string) {
	lastID, retry := "", defaultRetry
	fruitless := 0
	for {
		resp, err := b.openStream(ctx, sid, lastID)
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			return
		}
		var de *deliveryError
		switch {
		case err == nil:
			opened := b.cfg.Now()
			got, _ := b.consume(resp.Body, &lastID, &retry, nil)
			resp.Body.Close()
			if got || b.cfg.Now().Sub(opened) > 30*time.Second {
				fruitless = 0
			} else {
				fruitless++
			}
		case errors.As(err, &de) && de.status == http.StatusMethodNotAllowed:
			return // the server sends nothing on its own
		case errors.As(err, &de) && de.status == http.StatusNotFound:
			return
		case errors.As(err, &de) && de.status >= 400 && de.status < 500:
			b.logf("the MCP server refused its GET stream (HTTP %d): messages it sends on its own will not arrive", de.status)
			return
		default:
			fruitless++
			b.logf("the MCP server's GET stream: %v", strings.TrimPrefix(err.Error(), "tokend mcp: "))
		}
		if ctx.Err() != nil {
			return
		}
		if fruitless >= maxFruitless {
			b.logf("giving up on the MCP server's GET stream after %d failures in a row", fruitless)
			return
		}
		wait := retry << min(fruitless, 5)
		if err := b.cfg.Sleep(ctx, min(wait, 30*time.Second)); err != nil {
			return
		}
	}
}
