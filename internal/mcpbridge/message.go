package mcpbridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// envelope is what the bridge reads of a JSON-RPC message: enough to tell
// requests, notifications and responses apart and to match a response to
// its request. ID is the id as it was written (compacted), so it is
// echoed byte for byte.
type envelope struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
}

func (e envelope) isRequest() bool  { return e.Method != "" && e.ID != nil }
func (e envelope) isResponse() bool { return e.Method == "" && e.ID != nil }

// compactMessage checks that b is one JSON value, an object or an array
// (a batch), and returns it on one line.
func compactMessage(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b))
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	if len(out) == 0 || (out[0] != '{' && out[0] != '[') {
		return nil, errors.New("not a JSON-RPC message (an object or an array)")
	}
	return out, nil
}

// envelopes reads the envelopes of a compacted message. A malformed
// member reads as an empty envelope.
func envelopes(msg []byte) []envelope {
	if len(msg) > 0 && msg[0] == '[' {
		var batch []envelope
		_ = json.Unmarshal(msg, &batch)
		return batch
	}
	var e envelope
	_ = json.Unmarshal(msg, &e)
	return []envelope{e}
}

// clientMessage is one line the client wrote: the message, compacted, and
// the ids of the requests in it, which are owed an answer.
type clientMessage struct {
	raw      []byte
	requests []string
	method   string // the first member's, for messages to people
	// initID is the id of an initialize request in it, "" if none.
	initID string
	// sent is closed once the server has begun answering the message,
	// or orderGrace after it was written out, or when it will not be
	// sent: the client's next message goes after it.
	sent     chan struct{}
	sentOnce sync.Once
}

// orderGrace is how long after writing a request out the bridge waits for
// the server to begin answering before it sends the client's next
// message. Two HTTP requests on two connections can be taken in either
// order; a server that answers with an event stream begins at once, and
// one that answers JSON only when done would otherwise hold up the next
// message for the whole request.
const orderGrace = 50 * time.Millisecond

func (m *clientMessage) markSent() { m.sentOnce.Do(func() { close(m.sent) }) }

// writtenOut starts the grace after which the next message goes even
// though the server has not begun answering this one.
func (m *clientMessage) writtenOut() { time.AfterFunc(orderGrace, m.markSent) }

func parseClientMessage(line []byte) (*clientMessage, error) {
	raw, err := compactMessage(line)
	if err != nil {
		return nil, err
	}
	m := &clientMessage{raw: raw, sent: make(chan struct{})}
	for i, e := range envelopes(raw) {
		if i == 0 {
			m.method = e.Method
		}
		if e.isRequest() {
			m.requests = append(m.requests, string(e.ID))
			if e.Method == "initialize" {
				m.initID = string(e.ID)
			}
		}
	}
	return m, nil
}

// protocolVersionOf reads protocolVersion from an initialize result.
func protocolVersionOf(result json.RawMessage) string {
	var r struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	_ = json.Unmarshal(result, &r)
	return r.ProtocolVersion
}

// JSON-RPC error codes of the answers the bridge writes itself.
const (
	// codeParseError: the client wrote a line that is not JSON.
	codeParseError = -32700
	// codeUndelivered: the request did not reach the server or its answer
	// did not come back (an HTTP error, a session the server ended, a
	// token the daemon could not give, a stream that could not be
	// resumed). The message says which; data carries the HTTP status and
	// challenge when there was one.
	codeUndelivered = -32000
)

// errorData is the data of the bridge's error answers.
type errorData struct {
	HTTPStatus      int    `json:"http_status,omitempty"`
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
}

// errorAnswer is a JSON-RPC error response to the request with the given
// (raw) id. rpcError, when the server's HTTP answer carried a JSON-RPC
// error object, is used as it is.
func errorAnswer(id string, code int, message string, data errorData, rpcError json.RawMessage) []byte {
	type rpcErr struct {
		Code    int        `json:"code"`
		Message string     `json:"message"`
		Data    *errorData `json:"data,omitempty"`
	}
	out := struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   any             `json:"error"`
	}{JSONRPC: "2.0", ID: json.RawMessage(id)}
	if rpcError != nil {
		out.Error = rpcError
	} else {
		e := rpcErr{Code: code, Message: message}
		if data != (errorData{}) {
			e.Data = &data
		}
		out.Error = e
	}
	b, err := json.Marshal(out)
	if err != nil {
		// Only an id that is not JSON could fail; the id came from a
		// compacted message.
		b, _ = json.Marshal(struct {
			JSONRPC string `json:"jsonrpc"`
			ID      any    `json:"id"`
			Error   rpcErr `json:"error"`
		}{"2.0", nil, rpcErr{Code: code, Message: message}})
	}
	return b
}
