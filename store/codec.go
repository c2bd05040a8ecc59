package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// Codec encodes and decodes records exactly as the bbolt file holds them,
// sealed whole with the same key and bound to the same kind and key, for
// another backend (the etcd store of fleet mode): a record copied between
// backends opens with the same key, and the other backend never sees a
// plaintext secret nor can alter a record. A nil key encodes records
// unsealed, as Open does. See "Record format" in the package doc. Safe
// for concurrent use.
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

// Sealed reports whether the codec seals records.
func (c *Codec) Sealed() bool { return c.seal != nil }

// Check returns the check value of RecordSchema, for the backend to keep
// so that a wrong key is refused at open rather than on the first record
// read; "" when unsealed.
func (c *Codec) Check() string { return c.CheckAt(RecordSchema) }

// CheckAt returns the check value of a store at schema; "" when unsealed.
func (c *Codec) CheckAt(schema int) string {
	if c.seal == nil {
		return ""
	}
	return c.seal.checkValue(schema)
}

// VerifyCheck opens a check value written by Check (RecordSchema).
func (c *Codec) VerifyCheck(check, where string) error {
	return c.VerifyCheckAt(check, RecordSchema, where)
}

// VerifyCheckAt opens the check value of a store at schema. An empty
// check with a key is ErrNotEncrypted's case and a non-empty one without
// a key ErrKeyRequired's; a check that does not open is ErrWrongKey. The
// errors name where (what the backend calls itself).
func (c *Codec) VerifyCheckAt(check string, schema int, where string) error {
	switch {
	case check == "" && c.seal == nil:
		return nil
	case check == "":
		return newError(ErrNotEncrypted, nil, fmt.Sprintf("store: %s holds unsealed records and a key was given", where))
	case c.seal == nil:
		return newError(ErrKeyRequired, nil, fmt.Sprintf("store: %s is encrypted and no key was given", where))
	}
	if !c.seal.checkOpens(check, schema) {
		return newError(ErrWrongKey, nil, fmt.Sprintf("store: %s was sealed with another key (or its meta record was altered)", where))
	}
	return nil
}

// Origin is who wrote a token record and when: the fleet instance and its
// clock. It is part of the sealed record, authenticated with it.
type Origin struct {
	Writer string
	At     time.Time
}

// EncodeToken encodes t; t.Grant is the record's key.
func (c *Codec) EncodeToken(t Token) ([]byte, error) { return encodeToken(c.seal, t) }

// EncodeTokenFrom encodes t with its origin inside the sealed record.
func (c *Codec) EncodeTokenFrom(t Token, o Origin) ([]byte, error) {
	return encodeRecord(c.seal, kindTokens, []byte(t.Grant), tokenRecordOf(t, o.Writer, o.At))
}

// DecodeToken decodes the token record of grant.
func (c *Codec) DecodeToken(grant string, v []byte) (Token, error) {
	return decodeToken(c.seal, []byte(grant), v)
}

// DecodeTokenFrom decodes the token record of grant and its origin.
func (c *Codec) DecodeTokenFrom(grant string, v []byte) (Token, Origin, error) {
	return decodeTokenOrigin(c.seal, []byte(grant), v)
}

// EncodeAttempt encodes one history attempt as plain JSON: an element of
// the history record EncodeHistory seals.
func (c *Codec) EncodeAttempt(a Attempt) ([]byte, error) { return json.Marshal(attemptRecordOf(a)) }

// DecodeAttempt decodes one element of grant's history record, as
// DecodeHistory returns them.
func (c *Codec) DecodeAttempt(grant string, v []byte) (Attempt, error) {
	var r attemptRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Attempt{}, recordError(kindHistory, []byte(grant), err)
	}
	return r.attempt(), nil
}

// EncodeHistory encodes grant's history, its attempts (EncodeAttempt's)
// newest first, as one record.
func (c *Codec) EncodeHistory(grant string, attempts []json.RawMessage) ([]byte, error) {
	if attempts == nil {
		attempts = []json.RawMessage{}
	}
	return encodeRecord(c.seal, kindHistory, []byte(grant), attempts)
}

// DecodeHistory decodes grant's history record into its attempts.
func (c *Codec) DecodeHistory(grant string, v []byte) ([]json.RawMessage, error) {
	var as []json.RawMessage
	if err := decodeRecord(c.seal, kindHistory, []byte(grant), v, &as); err != nil {
		return nil, err
	}
	return as, nil
}

// EncodeClient encodes cl; cl.Name is the record's key.
func (c *Codec) EncodeClient(cl Client) ([]byte, error) { return encodeClient(c.seal, cl) }

// DecodeClient decodes the client record of name.
func (c *Codec) DecodeClient(name string, v []byte) (Client, error) {
	return decodeClient(c.seal, []byte(name), v)
}

// EncodeProvider encodes the cached metadata (raw JSON) of provider name.
func (c *Codec) EncodeProvider(name string, meta []byte) []byte {
	return encodeProvider(c.seal, []byte(name), meta)
}

// DecodeProvider decodes the cached metadata of provider name.
func (c *Codec) DecodeProvider(name string, v []byte) ([]byte, error) {
	return decodeProvider(c.seal, []byte(name), v)
}

// PendingKey is the record name of the pending authorization of state:
// the hex SHA-256 of it, so the state (what redeems it) is not stored.
func PendingKey(state string) string { return string(pendingKey(state)) }

// EncodePending encodes p (p.State is not kept) under its PendingKey.
func (c *Codec) EncodePending(p Pending) ([]byte, error) {
	return encodePending(c.seal, pendingKey(p.State), p)
}

// DecodePending decodes the pending authorization stored under key (a
// PendingKey); its State is empty. An authorization-code record without
// a PKCE verifier is refused (ErrCorrupt).
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

// EncodeStart encodes the start page p stored under startHash (the hex
// SHA-256 of its id).
func (c *Codec) EncodeStart(startHash string, p StartPage) ([]byte, error) {
	return encodeRecord(c.seal, kindStarts, []byte(startHash), startRecord{
		State:    p.State,
		AuthURL:  p.AuthURL,
		Secure:   p.Secure,
		Deadline: utc(p.Deadline),
	})
}

// DecodeStart decodes the start page stored under startHash.
func (c *Codec) DecodeStart(startHash string, v []byte) (StartPage, error) {
	var r startRecord
	if err := decodeRecord(c.seal, kindStarts, []byte(startHash), v, &r); err != nil {
		return StartPage{}, err
	}
	return StartPage{State: r.State, AuthURL: r.AuthURL, Secure: r.Secure, Deadline: utc(r.Deadline)}, nil
}

// EncodeDef encodes a fleet's definition of grant: the fingerprint of
// its configuration and the instance that recorded it.
func (c *Codec) EncodeDef(grant, fingerprint, by string) ([]byte, error) {
	return encodeRecord(c.seal, kindDefs, []byte(grant), defRecord{Fingerprint: fingerprint, By: by})
}

// DecodeDef decodes the fleet's definition of grant.
func (c *Codec) DecodeDef(grant string, v []byte) (fingerprint, by string, err error) {
	var r defRecord
	if err := decodeRecord(c.seal, kindDefs, []byte(grant), v, &r); err != nil {
		return "", "", err
	}
	return r.Fingerprint, r.By, nil
}

// DecodeTokenFields decodes a token record of schema 1, whose secret
// fields alone were sealed: for a backend's migration to RecordSchema,
// never for reading a store at RecordSchema.
func (c *Codec) DecodeTokenFields(grant string, v []byte) (Token, error) {
	return decodeTokenFields(c.seal, []byte(grant), v)
}

// DecodeClientFields decodes a client record of schema 1, as
// DecodeTokenFields does.
func (c *Codec) DecodeClientFields(name string, v []byte) (Client, error) {
	return decodeClientFields(c.seal, []byte(name), v)
}
