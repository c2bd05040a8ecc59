package store

import (
	"encoding/json"
	"fmt"
	"time"
)

// On-disk records. They are JSON with explicit field names, decoupled from
// the Go names of the exported types so a rename in Go does not change the
// file format. Secret fields hold the output of sealer.seal.

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

// utc drops the monotonic reading and the location, so what is written is
// exactly what is read back.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func encodeToken(s *sealer, t Token) ([]byte, error) {
	k := []byte(t.Grant)
	return json.Marshal(tokenRecord{
		AccessToken:   s.seal(t.AccessToken, bucketTokens, k, "access_token"),
		RefreshToken:  s.seal(t.RefreshToken, bucketTokens, k, "refresh_token"),
		IDToken:       s.seal(t.IDToken, bucketTokens, k, "id_token"),
		DPoPKey:       s.seal(t.DPoPKey, bucketTokens, k, "dpop_key"),
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
	})
}

func decodeToken(s *sealer, key, v []byte) (Token, error) {
	var r tokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	t := Token{
		Grant:         string(key),
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
	var err error
	if t.AccessToken, err = s.open(r.AccessToken, bucketTokens, key, "access_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.RefreshToken, err = s.open(r.RefreshToken, bucketTokens, key, "refresh_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.IDToken, err = s.open(r.IDToken, bucketTokens, key, "id_token"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	if t.DPoPKey, err = s.open(r.DPoPKey, bucketTokens, key, "dpop_key"); err != nil {
		return Token{}, recordError(bucketTokens, key, err)
	}
	return t, nil
}

func encodeAttempt(a Attempt) ([]byte, error) {
	return json.Marshal(attemptRecord{
		At: utc(a.At), Result: a.Result, Latency: a.Latency, Error: a.Error, Reason: a.Reason,
	})
}

func decodeAttempt(key, v []byte) (Attempt, error) {
	var r attemptRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Attempt{}, recordError(bucketHistory, key, err)
	}
	return Attempt{At: utc(r.At), Result: r.Result, Latency: r.Latency, Error: r.Error, Reason: r.Reason}, nil
}

func encodeClient(s *sealer, c Client) ([]byte, error) {
	k := []byte(c.Name)
	return json.Marshal(clientRecord{
		Provider:                c.Provider,
		ClientID:                c.ClientID,
		ClientSecret:            s.seal(c.ClientSecret, bucketClients, k, "client_secret"),
		AuthMethod:              c.AuthMethod,
		RedirectURI:             c.RedirectURI,
		RegistrationAccessToken: s.seal(c.RegistrationAccessToken, bucketClients, k, "registration_access_token"),
		RegistrationClientURI:   c.RegistrationClientURI,
		SecretExpiresAt:         utc(c.SecretExpiresAt),
		Registered:              utc(c.Registered),
	})
}

func decodeClient(s *sealer, key, v []byte) (Client, error) {
	var r clientRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	c := Client{
		Name:                  string(key),
		Provider:              r.Provider,
		ClientID:              r.ClientID,
		AuthMethod:            r.AuthMethod,
		RedirectURI:           r.RedirectURI,
		RegistrationClientURI: r.RegistrationClientURI,
		SecretExpiresAt:       utc(r.SecretExpiresAt),
		Registered:            utc(r.Registered),
	}
	var err error
	if c.ClientSecret, err = s.open(r.ClientSecret, bucketClients, key, "client_secret"); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	if c.RegistrationAccessToken, err = s.open(r.RegistrationAccessToken, bucketClients, key, "registration_access_token"); err != nil {
		return Client{}, recordError(bucketClients, key, err)
	}
	return c, nil
}

// encodePending encodes p under key (the hash of p.State).
func encodePending(s *sealer, key []byte, p Pending) ([]byte, error) {
	return json.Marshal(pendingRecord{
		Grant:       p.Grant,
		Kind:        p.Kind,
		Verifier:    s.seal(p.Verifier, bucketPending, key, "verifier"),
		Nonce:       p.Nonce,
		RedirectURI: p.RedirectURI,
		Created:     utc(p.Created),
		Deadline:    utc(p.Deadline),
		DeviceCode:  s.seal(p.DeviceCode, bucketPending, key, "device_code"),
		StartHash:   p.StartHash,
		BindingHash: p.BindingHash,
	})
}

// decodePending returns the record with State empty: it is not stored.
func decodePending(s *sealer, key, v []byte) (Pending, error) {
	var r pendingRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return Pending{}, recordError(bucketPending, key, err)
	}
	p := Pending{
		Grant:       r.Grant,
		Kind:        r.Kind,
		Nonce:       r.Nonce,
		RedirectURI: r.RedirectURI,
		Created:     utc(r.Created),
		Deadline:    utc(r.Deadline),
		StartHash:   r.StartHash,
		BindingHash: r.BindingHash,
	}
	var err error
	if p.Verifier, err = s.open(r.Verifier, bucketPending, key, "verifier"); err != nil {
		return Pending{}, recordError(bucketPending, key, err)
	}
	if p.DeviceCode, err = s.open(r.DeviceCode, bucketPending, key, "device_code"); err != nil {
		return Pending{}, recordError(bucketPending, key, err)
	}
	return p, nil
}

func jsonUnmarshal(v []byte, p any) error { return json.Unmarshal(v, p) }

// recordError reports a record that does not decode. A JSON syntax error
// can quote a character of the record, which may be part of an unsealed
// secret, so only its offset is kept.
func recordError(bucket string, key []byte, err error) error {
	if se, ok := err.(*json.SyntaxError); ok {
		err = fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	return newError(ErrCorrupt, err, fmt.Sprintf("store: record %s/%q does not decode", bucket, key))
}
