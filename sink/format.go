package sink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
)

// Content renders t in format (config.SinkRaw, SinkHeader, SinkJSON or
// SinkEnv) as of now.
func Content(format string, t *Token, now time.Time) []byte {
	typ := t.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	switch format {
	case config.SinkHeader:
		return []byte("Authorization: " + typ + " " + t.AccessToken + "\n")
	case config.SinkJSON:
		return tokenJSON(t, now)
	case config.SinkEnv:
		var b bytes.Buffer
		fmt.Fprintf(&b, "TOKEND_ACCESS_TOKEN=%s\nTOKEND_TOKEN_TYPE=%s\nTOKEND_EXPIRES_AT=%s\n",
			shellQuote(t.AccessToken), shellQuote(typ), t.ExpiresAt.UTC().Format(time.RFC3339))
		return b.Bytes()
	}
	// raw: the token alone, no newline (Prometheus and most readers trim
	// nothing).
	return []byte(t.AccessToken)
}

// tokenJSON is t as the socket API answers a fetch: an api.TokenResponse
// and a newline.
func tokenJSON(t *Token, now time.Time) []byte {
	var b bytes.Buffer
	// An api.TokenResponse of strings, an integer and a time always encodes.
	_ = json.NewEncoder(&b).Encode(api.TokenResponse{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		ExpiresIn:   int64(t.ExpiresAt.Sub(now) / time.Second),
		ExpiresAt:   t.ExpiresAt.UTC(),
		Scope:       t.Scope,
	})
	return b.Bytes()
}

// shellQuote quotes s for a POSIX shell's ". file" and for systemd's
// EnvironmentFile=, when it needs quoting at all.
func shellQuote(s string) string {
	plain := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~+/=:@%,", c)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
