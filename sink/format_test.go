package sink

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
)

func TestShellQuote(t *testing.T) {
	if got := shellQuote("a'b c"); got != `'a'\''b c'` {
		t.Errorf("shellQuote = %s", got)
	}
	if got := shellQuote("abc.DEF-123_~+/="); got != "abc.DEF-123_~+/=" {
		t.Errorf("shellQuote = %s", got)
	}
}

func TestContentFormats(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tok := &Token{AccessToken: "at it's", ExpiresAt: now.Add(time.Hour)}
	for format, want := range map[string]string{
		config.SinkRaw:    "at it's",
		config.SinkHeader: "Authorization: Bearer at it's\n",
		config.SinkEnv:    "TOKEND_ACCESS_TOKEN='at it'\\''s'\nTOKEND_TOKEN_TYPE=Bearer\nTOKEND_EXPIRES_AT=2026-12-07T11:00:00Z\n",
	} {
		if got := string(Content(format, tok, now)); got != want {
			t.Errorf("%s: got %q, want %q", format, got, want)
		}
	}
}

// The json sink is read long after it is written: besides expires_in
// (seconds left at write time) it carries expires_at, absolute, which
// stays true however late the file is read.
func TestJSONSinkCarriesAbsoluteExpiry(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	exp := now.Add(59*time.Minute + 30*time.Second)
	tok := &Token{AccessToken: "at-1", TokenType: "Bearer", Scope: "a b", ExpiresAt: exp}
	var got struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		ExpiresIn   int64     `json:"expires_in"`
		ExpiresAt   time.Time `json:"expires_at"`
		Scope       string    `json:"scope"`
	}
	body := Content(config.SinkJSON, tok, now)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !got.ExpiresAt.Equal(exp) || got.ExpiresIn != 3570 || got.AccessToken != "at-1" || got.TokenType != "Bearer" || got.Scope != "a b" {
		t.Errorf("json sink %s", body)
	}
}
