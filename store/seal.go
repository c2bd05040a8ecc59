package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// KeySize is the size of a store key in bytes (AES-256).
const KeySize = 32

// checkPlaintext is sealed into the meta bucket so that a wrong key fails
// at Open rather than later, with garbage, on the first record read.
const checkPlaintext = "tokend store key check v1"

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
		return nil, fmt.Errorf("store: key must be %d bytes, got %d (config.ParseKey reads a key file)", KeySize, len(key))
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
