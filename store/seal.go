package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// KeySize is the size of a store key in bytes (AES-256).
const KeySize = 32

// checkPlaintext is sealed into the meta bucket so that a wrong key fails
// at Open rather than later, with garbage, on the first record read.
const checkPlaintext = "tokend store key check v1"

// ParseKey accepts a key file's contents: 32 raw bytes, 64 hex characters or
// base64 (standard or URL alphabet, padded or not) of 32 bytes. Surrounding
// whitespace is ignored for the textual forms. The error never includes the
// key material. It is safe for concurrent use.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		// Raw bytes are taken as they are: trimming could eat key bytes
		// that happen to be whitespace. 32 bytes are never a valid hex or
		// base64 form of a 32-byte key, so there is no ambiguity.
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*KeySize {
		k := make([]byte, KeySize)
		if _, err := hex.Decode(k, t); err == nil {
			return k, nil
		}
		// hex's error names the offending character: do not wrap it.
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.URLEncoding,
		base64.RawStdEncoding, base64.RawURLEncoding,
	} {
		if enc.DecodedLen(len(t)) < KeySize || enc.DecodedLen(len(t)) > KeySize+2 {
			continue
		}
		k := make([]byte, enc.DecodedLen(len(t)))
		n, err := enc.Decode(k, t)
		if err == nil && n == KeySize {
			return k[:n], nil
		}
	}
	if len(t) == 0 {
		return nil, errors.New("store: key is empty")
	}
	return nil, fmt.Errorf("store: key must be 32 raw bytes, 64 hex characters or base64 of 32 bytes (got %d bytes, not one of those forms)", len(b))
}

// sealer seals and opens secret fields with AES-256-GCM. A nil *sealer
// stores them as plain text. Values are nonce (12 random bytes) followed by
// the ciphertext and tag; the additional data binds a value to its bucket,
// record and field, so a sealed value copied to another record fails to open.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if key == nil {
		return nil, nil
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("store: key must be %d bytes, got %d (use ParseKey to read a key file)", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// additionalData is bucket NUL record NUL field. NUL cannot occur in a
// bucket or field name, so distinct triples never give the same bytes.
func additionalData(bucket string, record []byte, field string) []byte {
	ad := make([]byte, 0, len(bucket)+len(record)+len(field)+2)
	ad = append(ad, bucket...)
	ad = append(ad, 0)
	ad = append(ad, record...)
	ad = append(ad, 0)
	ad = append(ad, field...)
	return ad
}

// seal returns the at-rest form of a secret field: unchanged without a key,
// else base64(nonce || ciphertext). Empty values stay empty so that "no
// refresh token" survives a round trip without a key check.
func (s *sealer) seal(v string, bucket string, record []byte, field string) string {
	if s == nil || v == "" {
		return v
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(v)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		// crypto/rand.Read never returns an error on Linux (Go 1.24+).
		panic("store: crypto/rand: " + err.Error())
	}
	out := s.aead.Seal(nonce, nonce, []byte(v), additionalData(bucket, record, field))
	return base64.RawStdEncoding.EncodeToString(out)
}

// open reverses seal. Its errors never contain the value.
func (s *sealer) open(v string, bucket string, record []byte, field string) (string, error) {
	if s == nil || v == "" {
		return v, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return "", fmt.Errorf("sealed field %s is malformed", field)
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, raw[:n], raw[n:], additionalData(bucket, record, field))
	if err != nil {
		return "", fmt.Errorf("sealed field %s does not open with this key (moved from another record, or tampered with)", field)
	}
	return string(pt), nil
}
