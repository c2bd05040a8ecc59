package oauth

// DPoP (RFC 9449): a grant's key pair, its proofs, the nonces servers give,
// and the errors of a provider that does not bind tokens as asked.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DPoPKey is a grant's DPoP key pair (ES256) and the nonces servers gave
// it. Safe for concurrent use. It prints redacted.
type DPoPKey struct {
	signer *ecdsa.PrivateKey
	jose   jose.Signer // typ dpop+jwt, alg ES256, the public key as jwk header
	jkt    string

	mu     sync.Mutex
	nonces map[string]string // origin → last DPoP-Nonce
}

// opDPoP is the Op of errors about DPoP keys and proofs.
const opDPoP = "dpop"

func newDPoPKey(priv *ecdsa.PrivateKey) (*DPoPKey, error) {
	if priv.Curve != elliptic.P256() {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not an ES256 (P-256) key")}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot sign with the DPoP key")}
	}
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot compute the DPoP key's thumbprint")}
	}
	return &DPoPKey{signer: priv, jose: s, jkt: base64.RawURLEncoding.EncodeToString(tp), nonces: map[string]string{}}, nil
}

// NewDPoPKey generates a fresh ES256 key.
func NewDPoPKey() (*DPoPKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Transient, Err: err}
	}
	return newDPoPKey(priv)
}

// ParseDPoPKey reads a key written by Marshal. Errors never contain key
// material.
func ParseDPoPKey(b []byte) (*DPoPKey, error) {
	var jwk jose.JSONWebKey
	if json.Unmarshal(b, &jwk) != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not a valid JWK")}
	}
	priv, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP key is not an EC private key")}
	}
	return newDPoPKey(priv)
}

// Marshal returns the private key for sealed storage (a private JWK).
func (k *DPoPKey) Marshal() ([]byte, error) {
	b, err := json.Marshal(jose.JSONWebKey{Key: k.signer, Algorithm: string(jose.ES256), Use: "sig"})
	if err != nil {
		return nil, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("cannot encode the DPoP key")}
	}
	return b, nil
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key (jkt).
func (k *DPoPKey) Thumbprint() string { return k.jkt }

func (k *DPoPKey) describe() string {
	if k == nil {
		return "DPoPKey{}"
	}
	return "DPoPKey{ES256 jkt=" + k.jkt + " " + redacted + "}"
}

// String describes the key by its thumbprint, with the private key redacted.
func (k *DPoPKey) String() string { return k.describe() }

// GoString is String, for %#v.
func (k *DPoPKey) GoString() string { return k.describe() }

// Format prints String for every verb.
func (k *DPoPKey) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", k.describe())
		return
	}
	fmt.Fprint(f, k.describe())
}

// LogValue makes log/slog print String.
func (k *DPoPKey) LogValue() slog.Value { return slog.StringValue(k.describe()) }

// MarshalJSON encodes String; Marshal is the way to store the key.
func (k *DPoPKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.describe()) }

// htu returns target without query and fragment (RFC 9449 §4.2), and its
// origin (scheme://host) for the nonce memory.
func htu(target string) (htu, origin string, err error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", "", &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP target is not an absolute http(s) URL")}
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, scheme + "://" + host, nil
}

// Proof returns a DPoP proof JWT for one request: htm=method, htu=target
// without query and fragment, iat=now, a unique jti, nonce when not empty,
// and ath (base64url SHA-256 of accessToken) when accessToken is not zero.
func (k *DPoPKey) Proof(method, target string, accessToken Secret, nonce string, now time.Time) (Secret, error) {
	u, _, err := htu(target)
	if err != nil {
		return Secret{}, err
	}
	if method == "" || !isHTTPToken(method) {
		return Secret{}, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("DPoP method is not an HTTP method")}
	}
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce,omitempty"`
		ATH   string `json:"ath,omitempty"`
	}{JTI: newJTI(), HTM: method, HTU: u, IAT: now.Unix(), Nonce: nonce}
	if !accessToken.IsZero() {
		h := sha256.Sum256([]byte(accessToken.Reveal()))
		claims.ATH = base64.RawURLEncoding.EncodeToString(h[:])
	}
	jwt, err := sign(k.jose, claims)
	if err != nil {
		return Secret{}, &Error{Op: opDPoP, Class: Configuration, Err: errors.New("signing the DPoP proof failed")}
	}
	return NewSecret(jwt), nil
}

// Nonce returns the last DPoP-Nonce the origin of target gave this key ("" if none).
func (k *DPoPKey) Nonce(target string) string {
	_, origin, err := htu(target)
	if err != nil {
		return ""
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nonces[origin]
}

// SetNonce remembers a DPoP-Nonce the origin of target gave (RFC 9449 §8):
// for a resource server's answers, which this package does not see. A
// nonce over MaxDPoPNonce bytes, or with characters other than visible
// ASCII, is not kept.
func (k *DPoPKey) SetNonce(target, nonce string) {
	_, origin, err := htu(target)
	if err != nil || nonce == "" || len(nonce) > MaxDPoPNonce || !isVisibleASCII(nonce) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nonces[origin] = nonce
}

// WithDPoP returns a copy of p that sends a DPoP proof made with k with every
// token-endpoint request (token, refresh, exchange, jwt-bearer, device
// polling), retries once on error use_dpop_nonce with the DPoP-Nonce the
// server sent, remembers nonces per origin in k, and refuses an answer whose
// token_type is not DPoP: a Configuration error wrapping ErrDPoPDowngrade,
// never a silent Bearer token. A nil k returns a copy without DPoP.
func (p *Provider) WithDPoP(k *DPoPKey) *Provider {
	q := *p
	q.dpop = k
	return &q
}

// ErrDPoPDowngrade is the cause of a refused answer: DPoP was asked for and
// the provider returned another token_type.
var ErrDPoPDowngrade = errors.New("provider returned a token that is not DPoP-bound although dpop is set")

// MaxDPoPNonce bounds the DPoP-Nonce a server may give (bytes): a longer
// one is not kept, and a demand for one is ErrDPoPNonceTooLong.
const MaxDPoPNonce = 1 << 10

// ErrDPoPNonceTooLong is the cause of a failure where the token endpoint
// demanded a DPoP nonce longer than MaxDPoPNonce (a Configuration error).
var ErrDPoPNonceTooLong = errors.New("DPoP-Nonce over the 1 KiB bound")

// ErrDPoPNonceLoop is the cause of a failure where the server demanded a
// new DPoP nonce again after the retry that carried the nonce it gave.
var ErrDPoPNonceLoop = errors.New("the server keeps demanding a new DPoP nonce (nonce loop)")
