package daemon

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// The json sink is read long after it is written: besides expires_in
// (seconds left at write time) it carries expires_at, absolute, which
// stays true however late the file is read.
func TestJSONSinkCarriesAbsoluteExpiry(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	exp := now.Add(59*time.Minute + 30*time.Second)
	tok := &store.Token{AccessToken: "at-1", TokenType: "Bearer", Scope: "a b"}
	var got struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		ExpiresIn   int64     `json:"expires_in"`
		ExpiresAt   time.Time `json:"expires_at"`
		Scope       string    `json:"scope"`
	}
	body := sinkContent(config.SinkJSON, tok, exp, now)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !got.ExpiresAt.Equal(exp) || got.ExpiresIn != 3570 || got.AccessToken != "at-1" || got.TokenType != "Bearer" || got.Scope != "a b" {
		t.Errorf("json sink %s", body)
	}
}
