package oauth

import (
	"strings"
	"testing"
)

func TestClientMetadataDocument(t *testing.T) {
	got, err := ClientMetadataDocument("https://conformance-test.local/client-metadata.json", "http://127.0.0.1:8785/callback", "tokend on host1")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "client_id": "https://conformance-test.local/client-metadata.json",
  "client_name": "tokend on host1",
  "redirect_uris": [
    "http://127.0.0.1:8785/callback"
  ],
  "grant_types": [
    "authorization_code",
    "refresh_token"
  ],
  "response_types": [
    "code"
  ],
  "token_endpoint_auth_method": "none",
  "application_type": "native"
}
`
	if string(got) != want {
		t.Errorf("document =\n%s\nwant\n%s", got, want)
	}
	got, err = ClientMetadataDocument("https://app.example.com/tokend.json?v=2", "https://app.example.com/cb", "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "client_name") || strings.Contains(string(got), "application_type") {
		t.Errorf("document =\n%s", got)
	}
}

func TestClientMetadataDocumentRefuses(t *testing.T) {
	for _, c := range []struct{ clientID, redirect, says string }{
		{"https://app.example.com", "http://127.0.0.1:8785/callback", "has no path"},
		{"https://app.example.com/", "http://127.0.0.1:8785/callback", "has no path"},
		{"https://app.example.com/a/../tokend.json", "http://127.0.0.1:8785/callback", `".." path segment`},
		{"https://app.example.com/./tokend.json", "http://127.0.0.1:8785/callback", `"." path segment`},
		{"https://app.example.com/tokend.json#x", "http://127.0.0.1:8785/callback", "has a fragment"},
		{"https://user:secret@app.example.com/tokend.json", "http://127.0.0.1:8785/callback", "has user information"},
		{"http://app.example.com/tokend.json", "http://127.0.0.1:8785/callback", "uses http to a non-loopback host"},
		{"app.example.com/tokend.json", "http://127.0.0.1:8785/callback", "is not an absolute https URL"},
		{"urn:tokend", "http://127.0.0.1:8785/callback", "is not an absolute https URL"},
		{"https://app.example.com/tokend.json", "/callback", "redirect URI"},
		{"https://app.example.com/tokend.json", "http://127.0.0.1:8785/callback#f", "redirect URI"},
	} {
		_, err := ClientMetadataDocument(c.clientID, c.redirect, "tokend")
		if err == nil || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "secret") {
			t.Errorf("ClientMetadataDocument(%q, %q) = %v, want it to say %q", c.clientID, c.redirect, err, c.says)
		}
	}
	// Loopback http is what local test servers use.
	if err := CheckClientIDMetadataURL("http://localhost:3000/client.json"); err != nil {
		t.Errorf("loopback: %v", err)
	}
}
