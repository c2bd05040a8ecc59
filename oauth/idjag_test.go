package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The request for an ID-JAG is a token exchange for the id-jag type,
// addressed to the authorization server that will take it; the answer
// (token_type N_A) must say it issued an ID-JAG.
func TestIdentityAssertionRequestAndAnswer(t *testing.T) {
	var got url.Values
	answer := map[string]any{"access_token": "id.jag.jwt", "token_type": "N_A", "issued_token_type": TokenTypeIDJAG, "expires_in": 300}
	srv := formServer(t, &got, answer)
	p := newTestProvider(srv, AuthNone, newClock())
	ctx := context.Background()

	jag, err := p.IdentityAssertion(ctx, IdentityAssertionRequest{
		SubjectToken: NewSecret("the.id.token"), Audience: "https://as.example.com",
		Resource: []string{"https://mcp.example.com/mcp"}, Scopes: []string{"read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if jag.Reveal() != "id.jag.jwt" {
		t.Errorf("ID-JAG = %q", jag.Reveal())
	}
	want := url.Values{
		"grant_type":    {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {"the.id.token"}, "subject_token_type": {TokenTypeID},
		"requested_token_type": {TokenTypeIDJAG},
		"audience":             {"https://as.example.com"}, "resource": {"https://mcp.example.com/mcp"},
		"scope": {"read"}, "client_id": {testClientID},
	}
	if got.Encode() != want.Encode() {
		t.Errorf("body =\n %v\nwant\n %v", got, want)
	}

	// Another type of token is not an ID-JAG, whatever it holds.
	for _, issued := range []string{TokenTypeAccess, TokenTypeJWT, ""} {
		answer["issued_token_type"] = issued
		if issued == "" {
			delete(answer, "issued_token_type")
		}
		_, err := p.IdentityAssertion(ctx, IdentityAssertionRequest{SubjectToken: NewSecret("the.id.token"), Audience: "https://as.example.com"})
		if !errors.Is(err, ErrUnservable) || ClassOf(err) != Configuration {
			t.Errorf("issued %q: err = %v, want ErrUnservable", issued, err)
		}
	}

	// A refusal names the operation and never echoes the subject token.
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": "expired: the.id.token"})
	})
	_, err = p.IdentityAssertion(ctx, IdentityAssertionRequest{SubjectToken: NewSecret("the.id.token"), Audience: "https://as.example.com"})
	if err == nil || strings.Contains(err.Error(), "the.id.token") || !strings.Contains(err.Error(), "identity_assertion") {
		t.Errorf("refusal: %v", err)
	}

	for _, r := range []IdentityAssertionRequest{{Audience: "https://as.example.com"}, {SubjectToken: NewSecret("x")}} {
		if _, err := p.IdentityAssertion(ctx, r); ClassOf(err) != Configuration {
			t.Errorf("%+v: %v, want a configuration error", r, err)
		}
	}
}
