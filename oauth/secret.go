package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"

	"golang.org/x/oauth2"
)

const redacted = "[REDACTED]"

// Secret holds a secret string. It prints as [REDACTED] through fmt, slog
// and encoding/json, does not compare with ==, and is revealed only by
// Reveal. The value sits behind a pointer so that a Secret inside an
// unexported struct field, which fmt prints by reflection without calling
// methods, prints as an address and not as the value. Secrets are
// immutable and safe for concurrent use.
type Secret struct{ p *string }

// NewSecret wraps s. The empty string gives a zero Secret.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{p: &s}
}

// Reveal returns the secret value; the only way to get it. Call it where the
// value leaves the process on purpose (a request, the sealed store).
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.p == nil || *s.p == "" }

func (s Secret) redacted() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// String returns "[REDACTED]", or "" for a zero Secret.
func (s Secret) String() string { return s.redacted() }

// GoString returns "[REDACTED]", or "" for a zero Secret, for %#v.
func (s Secret) GoString() string { return s.redacted() }

// Format prints "[REDACTED]" (or "" for a zero Secret) for every verb, so
// that %x or %d cannot reveal the bytes either. %q quotes it.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.redacted())
		return
	}
	fmt.Fprint(f, s.redacted())
}

// LogValue makes log/slog print "[REDACTED]" (or "" for a zero Secret).
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

// MarshalJSON encodes "[REDACTED]" (or "" for a zero Secret): a Secret never
// leaves the process through encoding/json. Stores seal Reveal() instead.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// NewState returns a random state value of 256 bits, base64url without
// padding. It is safe for concurrent use.
func NewState() string {
	b := make([]byte, 32)
	// crypto/rand.Read never returns an error (it crashes the program
	// irrecoverably instead), as documented since Go 1.24.
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewVerifier returns a PKCE verifier (RFC 7636 §4.1: 32 random octets,
// base64url, 43 characters). It is safe for concurrent use.
func NewVerifier() Secret { return NewSecret(oauth2.GenerateVerifier()) }
