package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Records. Each is a JSON object with explicit field names, decoupled
// from the Go names of the exported types so a rename in Go does not
// change the format. With a key, the whole JSON object is sealed as one
// value (sealer.sealRecord), bound to its kind and key: see "Record
// format" in the package doc. Without a key it is stored as it is.

// Record kinds: the bbolt bucket names, and for records the bbolt file
// does not hold, the etcd key's first segment. They are part of every
// sealed record's additional data.
const (
	kindTokens    = bucketTokens
	kindHistory   = bucketHistory
	kindClients   = bucketClients
	kindPending   = bucketPending
	kindProviders = bucketProviders
	kindStarts    = "starts"
	kindDefs      = "defs"
)

type tokenRecord struct {
	AccessToken   string    `json:"access_token,omitempty"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
	IDToken       string    `json:"id_token,omitempty"`
	DPoPKey       string    `json:"dpop_key,omitempty"`
	TokenType     string    `json:"token_type,omitempty"`
	Scope         string    `json:"scope,omitempty"`
	Obtained      time.Time `json:"obtained"`
	Expiry        time.Time `json:"expiry"`
	RefreshExpiry time.Time `json:"refresh_expiry"`
	RefreshIssued time.Time `json:"refresh_issued"`
	Generation    uint64    `json:"generation,omitempty"`
	State         string    `json:"state,omitempty"`
	StateSince    time.Time `json:"state_since"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorCode string    `json:"last_error_code,omitempty"`
	LastAttempt   time.Time `json:"last_attempt"`
	LastSuccess   time.Time `json:"last_success"`
	Failures      int       `json:"failures,omitempty"`
	Auth          string    `json:"auth,omitempty"`
	AuthAt        time.Time `json:"auth_at"`
	// Writer and Written: the fleet instance that wrote the record and
	// when (etcd only; empty in the bbolt file). Inside the sealed
	// record, so they are authenticated with the rest.
	Writer  string    `json:"writer,omitempty"`
	Written time.Time `json:"written,omitzero"`
}

func (r *tokenRecord) token(grant string) Token {
	return Token{
		Grant:         grant,
		AccessToken:   r.AccessToken,
		RefreshToken:  r.RefreshToken,
		IDToken:       r.IDToken,
		DPoPKey:       r.DPoPKey,
		TokenType:     r.TokenType,
		Scope:         r.Scope,
		Obtained:      utc(r.Obtained),
		Expiry:        utc(r.Expiry),
		RefreshExpiry: utc(r.RefreshExpiry),
		RefreshIssued: utc(r.RefreshIssued),
		Generation:    r.Generation,
		State:         r.State,
		StateSince:    utc(r.StateSince),
		LastError:     r.LastError,
		LastErrorCode: r.LastErrorCode,
		LastAttempt:   utc(r.LastAttempt),
		LastSuccess:   utc(r.LastSuccess),
		Failures:      r.Failures,
		Auth:          r.Auth,
		AuthAt:        utc(r.AuthAt),
	}
}

type attemptRecord struct {
	At      time.Time     `json:"at"`
	Result  string        `json:"result,omitempty"`
	Latency time.Duration `json:"latency_ns,omitempty"`
	Error   string        `json:"error,omitempty"`
	Reason  string        `json:"reason,omitempty"`
}

type clientRecord struct {
	Provider                string    `json:"provider,omitempty"`
	ClientID                string    `json:"client_id,omitempty"`
	ClientSecret            string    `json:"client_secret,omitempty"`
	AuthMethod              string    `json:"auth_method,omitempty"`
	RedirectURI             string    `json:"redirect_uri,omitempty"`
	RegistrationAccessToken string    `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string    `json:"registration_client_uri,omitempty"`
	SecretExpiresAt         time.Time `json:"secret_expires_at"`
	Registered              time.Time `json:"registered"`
}

func (r *clientRecord) client(name string) Client {
	return Client{
		Name:                    name,
		Provider:                r.Provider,
		ClientID:                r.ClientID,
		ClientSecret:            r.ClientSecret,
		AuthMethod:              r.AuthMethod,
		RedirectURI:             r.RedirectURI,
		RegistrationAccessToken: r.RegistrationAccessToken,
		RegistrationClientURI:   r.RegistrationClientURI,
		SecretExpiresAt:         utc(r.SecretExpiresAt),
		Registered:              utc(r.Registered),
	}
}

// pendingRecord has no state: the record's key is a hash of it.
type pendingRecord struct {
	Grant       string    `json:"grant"`
	Kind        string    `json:"kind,omitempty"`
	Verifier    string    `json:"verifier,omitempty"`
	Nonce       string    `json:"nonce,omitempty"`
	RedirectURI string    `json:"redirect_uri,omitempty"`
	Created     time.Time `json:"created"`
	Deadline    time.Time `json:"deadline"`
	DeviceCode  string    `json:"device_code,omitempty"`
	StartHash   string    `json:"start_hash,omitempty"`
	BindingHash string    `json:"binding_hash,omitempty"`
}

// startRecord is a StartPage at rest.
type startRecord struct {
	State    string    `json:"state"`
	AuthURL  string    `json:"auth_url"`
	Secure   bool      `json:"secure,omitempty"`
	Deadline time.Time `json:"deadline"`
}

// defRecord is a fleet's definition of a grant (etcd's defs/<grant>).
type defRecord struct {
	Fingerprint string `json:"fingerprint"`
	By          string `json:"by"`
}

// KindAuthorizationCode is Pending.Kind of an authorization-code flow.
// Such a record always carries the PKCE verifier tokend made for it; one
// without is refused as forged.
const KindAuthorizationCode = "authorization_code"

// utc drops the monotonic reading and the location, so what is written is
// exactly what is read back.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// wrapRecord is the stored form of a record's JSON: sealed whole with a
// key, as it is without.
func wrapRecord(s *sealer, kind string, key, plain []byte) []byte {
	if s == nil {
		return plain
	}
	return s.sealRecord(plain, recordAD(kind, key))
}

// unwrapRecord returns a record's JSON. With a key the record must be
// sealed and open under kind and key: a record written without the key,
// in the format before schema 2, altered, or moved from another key is
// ErrCorrupt. The errors name the record and never carry its content.
func unwrapRecord(s *sealer, kind string, key, v []byte) ([]byte, error) {
	return unwrapRecordTo(s, kind, key, v, nil)
}

// unwrapRecordTo is unwrapRecord with reusable buffers (nil: fresh ones):
// buf's ad holds the additional data, its pt the plaintext of a sealed
// record, which is valid until buf's next use. Without a key the record
// is returned as it is.
func unwrapRecordTo(s *sealer, kind string, key, v []byte, buf *recordBuf) ([]byte, error) {
	sealed := bytes.HasPrefix(v, []byte(recordMagic))
	switch {
	case s == nil && sealed:
		return nil, newError(ErrCorrupt, nil, fmt.Sprintf("store: record %s/%q is sealed and no key was given", kind, key))
	case s == nil:
		return v, nil
	case !sealed:
		return nil, newError(ErrCorrupt, nil, fmt.Sprintf("store: record %s/%q is not sealed with the store key (written without the key, or in an older format): refused", kind, key))
	}
	var pt []byte
	var err error
	if buf == nil {
		pt, err = s.openRecord(v, recordAD(kind, key))
	} else {
		buf.ad = appendRecordAD(buf.ad[:0], kind, key)
		buf.pt, err = s.openRecordTo(buf.pt[:0], v, buf.ad)
		pt = buf.pt
	}
	if err != nil {
		return nil, newError(ErrCorrupt, nil, fmt.Sprintf("store: record %s/%q does not authenticate with the store key (altered, moved from another record, or sealed with another key): refused", kind, key))
	}
	return pt, nil
}

// decodeRecord unwraps v and decodes its JSON into r.
func decodeRecord(s *sealer, kind string, key, v []byte, r any) error {
	pt, err := unwrapRecord(s, kind, key, v)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(pt, r); err != nil {
		return recordError(kind, key, err)
	}
	return nil
}

func encodeRecord(s *sealer, kind string, key []byte, r any) ([]byte, error) {
	plain, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return wrapRecord(s, kind, key, plain), nil
}

func tokenRecordOf(t Token, writer string, at time.Time) tokenRecord {
	return tokenRecord{
		AccessToken:   t.AccessToken,
		RefreshToken:  t.RefreshToken,
		IDToken:       t.IDToken,
		DPoPKey:       t.DPoPKey,
		TokenType:     t.TokenType,
		Scope:         t.Scope,
		Obtained:      utc(t.Obtained),
		Expiry:        utc(t.Expiry),
		RefreshExpiry: utc(t.RefreshExpiry),
		RefreshIssued: utc(t.RefreshIssued),
		Generation:    t.Generation,
		State:         t.State,
		StateSince:    utc(t.StateSince),
		LastError:     t.LastError,
		LastErrorCode: t.LastErrorCode,
		LastAttempt:   utc(t.LastAttempt),
		LastSuccess:   utc(t.LastSuccess),
		Failures:      t.Failures,
		Auth:          t.Auth,
		AuthAt:        utc(t.AuthAt),
		Writer:        writer,
		Written:       utc(at),
	}
}

func encodeToken(s *sealer, t Token) ([]byte, error) {
	return encodeRecord(s, kindTokens, []byte(t.Grant), tokenRecordOf(t, "", time.Time{}))
}

func decodeToken(s *sealer, key, v []byte) (Token, error) {
	t, _, err := decodeTokenOrigin(s, key, v)
	return t, err
}

func decodeTokenOrigin(s *sealer, key, v []byte) (Token, Origin, error) {
	return newTokenDecoder(s).decode(key, v)
}

// recordBuf holds the buffers of unwrapRecordTo.
type recordBuf struct {
	ad, pt []byte
}

// tokenDecoder decodes token records one after another with the checks
// and errors of decodeToken, reusing its buffers: the additional data, the
// plaintext and the record the JSON is decoded into. A walk of every
// token (EachToken at start-up) otherwise leaves about 1 KiB of garbage
// per record, 100 MB at 100,000 grants, that the heap grows to hold. The
// Token returned shares nothing with the buffers (encoding/json copies
// every string). Not safe for concurrent use.
type tokenDecoder struct {
	seal *sealer
	buf  recordBuf
	rec  tokenRecord
}

func newTokenDecoder(s *sealer) *tokenDecoder { return &tokenDecoder{seal: s} }

func (d *tokenDecoder) decode(key, v []byte) (Token, Origin, error) {
	pt, err := unwrapRecordTo(d.seal, kindTokens, key, v, &d.buf)
	if err != nil {
		return Token{}, Origin{}, err
	}
	r := &d.rec
	*r = tokenRecord{}
	if err := json.Unmarshal(pt, r); err != nil {
		return Token{}, Origin{}, recordError(kindTokens, key, err)
	}
	return r.token(string(key)), Origin{Writer: r.Writer, At: utc(r.Written)}, nil
}

func attemptRecordOf(a Attempt) attemptRecord {
	return attemptRecord{At: utc(a.At), Result: a.Result, Latency: a.Latency, Error: a.Error, Reason: a.Reason}
}

func (r *attemptRecord) attempt() Attempt {
	return Attempt{At: utc(r.At), Result: r.Result, Latency: r.Latency, Error: r.Error, Reason: r.Reason}
}

// encodeAttempt encodes one attempt of grant's history; in the bbolt file
// each attempt is a record of its own, sealed under the grant's name.
func encodeAttempt(s *sealer, grant []byte, a Attempt) ([]byte, error) {
	return encodeRecord(s, kindHistory, grant, attemptRecordOf(a))
}

func decodeAttempt(s *sealer, grant, v []byte) (Attempt, error) {
	var r attemptRecord
	if err := decodeRecord(s, kindHistory, grant, v, &r); err != nil {
		return Attempt{}, err
	}
	return r.attempt(), nil
}

func encodeClient(s *sealer, c Client) ([]byte, error) {
	return encodeRecord(s, kindClients, []byte(c.Name), clientRecord{
		Provider:                c.Provider,
		ClientID:                c.ClientID,
		ClientSecret:            c.ClientSecret,
		AuthMethod:              c.AuthMethod,
		RedirectURI:             c.RedirectURI,
		RegistrationAccessToken: c.RegistrationAccessToken,
		RegistrationClientURI:   c.RegistrationClientURI,
		SecretExpiresAt:         utc(c.SecretExpiresAt),
		Registered:              utc(c.Registered),
	})
}

func decodeClient(s *sealer, key, v []byte) (Client, error) {
	var r clientRecord
	if err := decodeRecord(s, kindClients, key, v, &r); err != nil {
		return Client{}, err
	}
	return r.client(string(key)), nil
}

// encodePending encodes p under key (the hash of p.State).
func encodePending(s *sealer, key []byte, p Pending) ([]byte, error) {
	return encodeRecord(s, kindPending, key, pendingRecord{
		Grant:       p.Grant,
		Kind:        p.Kind,
		Verifier:    p.Verifier,
		Nonce:       p.Nonce,
		RedirectURI: p.RedirectURI,
		Created:     utc(p.Created),
		Deadline:    utc(p.Deadline),
		DeviceCode:  p.DeviceCode,
		StartHash:   p.StartHash,
		BindingHash: p.BindingHash,
	})
}

// decodePending returns the record with State empty: it is not stored. An
// authorization-code record without a PKCE verifier is refused: tokend
// always makes one, so such a record was not written by tokend.
func decodePending(s *sealer, key, v []byte) (Pending, error) {
	var r pendingRecord
	if err := decodeRecord(s, kindPending, key, v, &r); err != nil {
		return Pending{}, err
	}
	if r.Kind == KindAuthorizationCode && r.Verifier == "" {
		return Pending{}, newError(ErrCorrupt, nil, fmt.Sprintf("store: record %s/%q: an authorization-code flow without a PKCE verifier, which tokend never writes: refused", kindPending, key))
	}
	return Pending{
		Grant:       r.Grant,
		Kind:        r.Kind,
		Verifier:    r.Verifier,
		Nonce:       r.Nonce,
		RedirectURI: r.RedirectURI,
		Created:     utc(r.Created),
		Deadline:    utc(r.Deadline),
		DeviceCode:  r.DeviceCode,
		StartHash:   r.StartHash,
		BindingHash: r.BindingHash,
	}, nil
}

// encodeProvider seals cached provider metadata (raw JSON) under the
// provider's name; the issuer it names is inside, authenticated with it.
func encodeProvider(s *sealer, name, meta []byte) []byte {
	if meta == nil {
		meta = []byte{}
	}
	return wrapRecord(s, kindProviders, name, bytes.Clone(meta))
}

func decodeProvider(s *sealer, name, v []byte) ([]byte, error) {
	pt, err := unwrapRecord(s, kindProviders, name, v)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(pt), nil
}

// recordError reports a record that does not decode. A JSON syntax error
// can quote a character of the record, which may be part of an unsealed
// secret, so only its offset is kept.
func recordError(bucket string, key []byte, err error) error {
	if se, ok := err.(*json.SyntaxError); ok {
		err = fmt.Errorf("invalid JSON at offset %d", se.Offset)
	} else if _, ok := err.(*json.UnmarshalTypeError); ok {
		err = fmt.Errorf("a field of the wrong type")
	}
	return newError(ErrCorrupt, err, fmt.Sprintf("store: record %s/%q does not decode", bucket, key))
}
