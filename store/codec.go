package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Codec encodes and decodes records exactly as the bbolt file holds them,
// secrets sealed with the same key and the same additional data, for
// another backend (the etcd store of fleet mode): a record copied between
// backends opens with the same key, and the other backend never sees a
// plaintext secret. A nil key encodes secrets unsealed, as Open does.
type Codec struct {
	seal *sealer
}

// NewCodec returns a Codec sealing with key (KeySize bytes; nil: unsealed).
func NewCodec(key []byte) (*Codec, error) {
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	return &Codec{seal: s}, nil
}

// Sealed reports whether the codec seals secrets.
func (c *Codec) Sealed() bool { return c.seal != nil }

// Check returns a sealed check value, for the backend to keep so that a
// wrong key is refused at open rather than on the first record read; ""
// when unsealed.
func (c *Codec) Check() string {
	if c.seal == nil {
		return ""
	}
	return c.seal.seal(checkPlaintext, bucketMeta, keyCheck, "check")
}

// VerifyCheck opens a check value written by Check. An empty check with a
// key is ErrNotEncrypted's case and a non-empty one without a key
// ErrKeyRequired's; a check that does not open is ErrWrongKey. The
// errors name where (what the backend calls itself).
func (c *Codec) VerifyCheck(check, where string) error {
	switch {
	case check == "" && c.seal == nil:
		return nil
	case check == "":
		return newError(ErrNotEncrypted, nil, fmt.Sprintf("store: %s holds unsealed records and a key was given", where))
	case c.seal == nil:
		return newError(ErrKeyRequired, nil, fmt.Sprintf("store: %s is encrypted and no key was given", where))
	}
	pt, err := c.seal.open(check, bucketMeta, keyCheck, "check")
	if err != nil || pt != checkPlaintext {
		return newError(ErrWrongKey, nil, fmt.Sprintf("store: %s was sealed with another key", where))
	}
	return nil
}

// EncodeToken encodes t, its secrets sealed; t.Grant is the record's name.
func (c *Codec) EncodeToken(t Token) ([]byte, error) { return encodeToken(c.seal, t) }

// DecodeToken decodes the token record of grant.
func (c *Codec) DecodeToken(grant string, v []byte) (Token, error) {
	return decodeToken(c.seal, []byte(grant), v)
}

// EncodeAttempt encodes one history attempt (nothing in it is secret).
func (c *Codec) EncodeAttempt(a Attempt) ([]byte, error) { return encodeAttempt(a) }

// DecodeAttempt decodes one attempt of grant's history.
func (c *Codec) DecodeAttempt(grant string, v []byte) (Attempt, error) {
	return decodeAttempt([]byte(grant), v)
}

// EncodeClient encodes cl, its secrets sealed; cl.Name is the record's name.
func (c *Codec) EncodeClient(cl Client) ([]byte, error) { return encodeClient(c.seal, cl) }

// DecodeClient decodes the client record of name.
func (c *Codec) DecodeClient(name string, v []byte) (Client, error) {
	return decodeClient(c.seal, []byte(name), v)
}

// PendingKey is the record name of the pending authorization of state:
// the hex SHA-256 of it, so the state (what redeems it) is not stored.
func PendingKey(state string) string { return string(pendingKey(state)) }

// EncodePending encodes p (p.State is not kept) under its PendingKey.
func (c *Codec) EncodePending(p Pending) ([]byte, error) {
	return encodePending(c.seal, pendingKey(p.State), p)
}

// DecodePending decodes the pending authorization stored under key (a
// PendingKey); its State is empty.
func (c *Codec) DecodePending(key string, v []byte) (Pending, error) {
	return decodePending(c.seal, []byte(key), v)
}

// PendingExpired reports whether p is past its deadline at now (a zero
// Deadline never expires), as the bbolt store decides it.
func PendingExpired(p Pending, now time.Time) bool { return pendingExpired(p, now) }

// SameHash compares a stored hex hash with a given one in constant time;
// an empty stored hash matches nothing.
func SameHash(stored, given string) bool { return sameHash(stored, given) }

// WithoutSecrets is what a refused redemption returns: the record without
// Verifier and DeviceCode.
func WithoutSecrets(p Pending) Pending { return withoutSecrets(p) }

// NewError returns an error with message msg that matches sentinel with
// errors.Is and wraps cause (nil, or an error free of secrets).
func NewError(sentinel, cause error, msg string) error { return newError(sentinel, cause, msg) }

// recordStarts is the "bucket" of start pages in the additional data of
// their sealed fields; no bbolt bucket has this name.
const recordStarts = "starts"

// startRecord is a StartPage at rest: State and AuthURL sealed under the
// start hash, the deadline in the clear (for pruning).
type startRecord struct {
	State    string    `json:"state"`
	AuthURL  string    `json:"auth_url"`
	Secure   bool      `json:"secure,omitempty"`
	Deadline time.Time `json:"deadline"`
}

// EncodeStart encodes the start page p stored under startHash (the hex
// SHA-256 of its id), State and AuthURL sealed. The record carries
// "deadline" in the clear, as a pending authorization does.
func (c *Codec) EncodeStart(startHash string, p StartPage) ([]byte, error) {
	k := []byte(startHash)
	return json.Marshal(startRecord{
		State:    c.seal.seal(p.State, recordStarts, k, "state"),
		AuthURL:  c.seal.seal(p.AuthURL, recordStarts, k, "auth_url"),
		Secure:   p.Secure,
		Deadline: utc(p.Deadline),
	})
}

// DecodeStart decodes the start page stored under startHash.
func (c *Codec) DecodeStart(startHash string, v []byte) (StartPage, error) {
	k := []byte(startHash)
	var r startRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return StartPage{}, recordError(recordStarts, k, err)
	}
	p := StartPage{Secure: r.Secure, Deadline: utc(r.Deadline)}
	var err error
	if p.State, err = c.seal.open(r.State, recordStarts, k, "state"); err != nil {
		return StartPage{}, recordError(recordStarts, k, err)
	}
	if p.AuthURL, err = c.seal.open(r.AuthURL, recordStarts, k, "auth_url"); err != nil {
		return StartPage{}, recordError(recordStarts, k, err)
	}
	return p, nil
}
