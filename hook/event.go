// Package hook tells commands and webhooks about grant events: it owns
// the configured hooks' runners ([Set]), their bounded queues, running a
// command (through internal/childproc) or posting a signed webhook request
// ([Sign]) with retries, and counting deliveries ([Metrics]).
//
// Emitting never blocks a refresh, an authorization or a fetch: an event
// goes into its hook's bounded queue (the oldest is dropped and counted
// when it is full) and the hook's one worker delivers the queue in order,
// so events of one grant arrive in the order they happened. A command or
// request that outlives the hook's timeout is killed; a webhook is retried
// with backoff on network errors, 429 and 5xx. Neither ever sees a token:
// an [Event] carries the grant's name, state, error and times.
//
// Which event fires when is the engine's decision; this package never
// imports it.
package hook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Webhook headers: the signature is "sha256=" and the hex of
// HMAC-SHA256(secret, timestamp + "." + body).
const (
	HeaderSignature = "X-Tokend-Signature"
	HeaderTimestamp = "X-Tokend-Timestamp"
	HeaderEvent     = "X-Tokend-Event"
	HeaderDelivery  = "X-Tokend-Delivery"
)

// Event is what a hook is told: the JSON body of a webhook, and the
// TOKEND_EVENT_* variables of a command. It never holds a token.
type Event struct {
	ID         string    `json:"id"`    // unique per event; the same in every retry
	Event      string    `json:"event"` // config.HookEvents
	Grant      string    `json:"grant"`
	State      string    `json:"state"` // the grant's state after the event
	Error      string    `json:"error,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Time       time.Time `json:"time"`                 // when it happened
	ExpiresAt  time.Time `json:"expires_at,omitzero"`  // the current access token's expiry, if any
	Generation uint64    `json:"generation,omitempty"` // the token set's generation

	queued time.Time // wall clock at emit, for the latency metric
}

// Sign returns the X-Tokend-Signature value of a webhook request:
// "sha256=" and the hex of HMAC-SHA256(secret, timestamp "." body), where
// timestamp is the X-Tokend-Timestamp header (Unix seconds). A receiver
// recomputes it, compares in constant time and refuses a timestamp far
// from its clock (replays).
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
