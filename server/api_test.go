package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// The hand-built token body is byte for byte what encoding/json writes.
func TestTokenJSONMatchesEncodingJSON(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	for _, tok := range []api.TokenResponse{
		{AccessToken: "at_ABC.def-123~", TokenType: "Bearer", Scope: "read write"},
		{AccessToken: "eyJhbGciOi.eyJzdWIi.sig_-", TokenType: "Bearer"},
		{AccessToken: "odd\"quote\\and<tag>&\u00e9\x01", TokenType: "bearer", Scope: "ü"},
	} {
		exp := now.Add(90*time.Minute + 500*time.Millisecond).In(time.FixedZone("x", 3600))
		tok.ExpiresIn, tok.ExpiresAt = int64(exp.Sub(now)/time.Second), exp.UTC()
		var want bytes.Buffer
		_ = json.NewEncoder(&want).Encode(tok)
		if got := appendTokenJSON(nil, &tok); string(got) != want.String() {
			t.Errorf("got  %s\nwant %s", got, want.String())
		}
	}
}

// A reader's nonce is bounded as a server's is: 1 KiB.
func TestProofRequestNonceBound(t *testing.T) {
	body := func(n int) *strings.Reader {
		return strings.NewReader(`{"method":"GET","url":"https://api.example/x","nonce":"` + strings.Repeat("n", n) + `"}`)
	}
	if _, err := parseDPoPRequest(body(oauth.MaxDPoPNonce)); err != nil {
		t.Fatal(err)
	}
	if _, err := parseDPoPRequest(body(oauth.MaxDPoPNonce + 1)); err == nil || !strings.Contains(err.Error(), "1024 bytes") {
		t.Fatalf("err = %v", err)
	}
}
