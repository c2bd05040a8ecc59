package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
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

// recordMagic begins a record sealed whole (schema 2, with a key). A JSON
// record begins with '{' or '[', so the two are never confused.
const recordMagic = "tokend-aead-1:"

// recordAD is the additional data of a record sealed whole: a domain
// string, then the record's kind and key, each preceded by its length, so
// distinct (kind, key) pairs never give the same bytes and none equals the
// additional data of a sealed field (additionalData).
func recordAD(kind string, key []byte) []byte {
	return appendRecordAD(make([]byte, 0, 32+len(kind)+len(key)), kind, key)
}

// appendRecordAD appends recordAD(kind, key) to ad.
func appendRecordAD(ad []byte, kind string, key []byte) []byte {
	ad = append(ad, "tokend record\x00"...)
	ad = binary.AppendUvarint(ad, uint64(len(kind)))
	ad = append(ad, kind...)
	ad = binary.AppendUvarint(ad, uint64(len(key)))
	ad = append(ad, key...)
	return ad
}

// sealRecord returns recordMagic, a random 96-bit nonce, and the
// ciphertext and tag of pt under ad.
func (s *sealer) sealRecord(pt, ad []byte) []byte {
	ns := s.aead.NonceSize()
	out := make([]byte, len(recordMagic)+ns, len(recordMagic)+ns+len(pt)+s.aead.Overhead())
	copy(out, recordMagic)
	if _, err := rand.Read(out[len(recordMagic):]); err != nil {
		// crypto/rand.Read never returns an error on Linux (Go 1.24+).
		panic("store: crypto/rand: " + err.Error())
	}
	nonce := out[len(recordMagic):]
	return s.aead.Seal(out, nonce, pt, ad)
}

// openRecord reverses sealRecord. Its error never contains the record.
func (s *sealer) openRecord(v, ad []byte) ([]byte, error) {
	return s.openRecordTo(nil, v, ad)
}

// openRecordTo is openRecord appending the plaintext to dst (which may be
// a buffer reused from record to record: dst[:0]).
func (s *sealer) openRecordTo(dst, v, ad []byte) ([]byte, error) {
	raw, ok := bytes.CutPrefix(v, []byte(recordMagic))
	ns := s.aead.NonceSize()
	if !ok || len(raw) < ns+s.aead.Overhead() {
		return nil, errors.New("sealed record is malformed")
	}
	pt, err := s.aead.Open(dst, raw[:ns], raw[ns:], ad)
	if err != nil {
		return nil, errors.New("sealed record does not open with this key")
	}
	return pt, nil
}

// RecordSchema is the first schema version whose records are sealed
// whole; the bbolt file's schema and the etcd store's are both at it.
const RecordSchema = 2

// checkValue is the meta record's check at schema: from RecordSchema on,
// checkPlaintext sealed as a record whose key names the schema, so the
// schema a store claims is authenticated too (a store set back to an
// older schema by someone without the key fails its check); before it,
// the sealed field of schema 1.
func (s *sealer) checkValue(schema int) string {
	if schema < RecordSchema {
		return s.seal(checkPlaintext, bucketMeta, keyCheck, "check")
	}
	return base64.RawStdEncoding.EncodeToString(s.sealRecord([]byte(checkPlaintext), checkAD(schema)))
}

// checkOpens reports whether v is the check value of schema under this key.
func (s *sealer) checkOpens(v string, schema int) bool {
	if schema < RecordSchema {
		pt, err := s.open(v, bucketMeta, keyCheck, "check")
		return err == nil && pt == checkPlaintext
	}
	raw, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil {
		return false
	}
	pt, err := s.openRecord(raw, checkAD(schema))
	return err == nil && string(pt) == checkPlaintext
}

func checkAD(schema int) []byte {
	return recordAD(bucketMeta, fmt.Appendf(nil, "check schema %d", schema))
}
