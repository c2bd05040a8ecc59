package mcpbridge

import (
	"net/http"
	"strings"
	"testing"
)

func TestInsufficientScope(t *testing.T) {
	for chal, want := range map[string]string{
		`Bearer error="insufficient_scope", scope="read  admin"`:                                                                                "read admin",
		`Bearer realm="x", error="insufficient_scope", scope="files:write", resource_metadata="https://r/.well-known/oauth-protected-resource"`: "files:write",
		`Basic realm="a, b", Bearer error="insufficient_scope", scope="x"`:                                                                      "x",
		`Bearer scope="read admin", resource_metadata="https://r/x"`:                                                                            "read admin",
		`Bearer error="insufficient_scope"`:                                                                                                     "",
		`Bearer error="invalid_token", scope="x"`:                                                                                               "",
		`Newauth error="insufficient_scope", scope="x"`:                                                                                         "",
		`Bearer error="insufficient_scope", scope="unterminated`:                                                                                "",
		`=== garbage`: "",
		``:            "",
	} {
		h := http.Header{}
		h.Set("WWW-Authenticate", chal)
		if got := insufficientScope(h); got != want {
			t.Errorf("insufficientScope(%q) = %q, want %q", chal, got, want)
		}
	}
}

func TestAsksDPoPNonce(t *testing.T) {
	h := http.Header{}
	h.Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
	if asksDPoPNonce(h) {
		t.Error("use_dpop_nonce without a DPoP-Nonce taken as a nonce request")
	}
	h.Set("DPoP-Nonce", "n")
	if !asksDPoPNonce(h) {
		t.Error("use_dpop_nonce not seen")
	}
	h.Set("WWW-Authenticate", `DPoP error="invalid_token"`)
	if asksDPoPNonce(h) {
		t.Error("use_dpop_nonce seen where it is not")
	}
}

// WWW-Authenticate fields are joined, and a huge one cut, not read whole.
func TestWWWAuthenticateIsBounded(t *testing.T) {
	h := http.Header{}
	h.Add("WWW-Authenticate", `Bearer error="insufficient_scope", scope="a"`)
	h.Add("WWW-Authenticate", `DPoP algs="ES256"`)
	if got := wwwAuthenticate(h); got != `Bearer error="insufficient_scope", scope="a", DPoP algs="ES256"` {
		t.Errorf("joined: %q", got)
	}
	h.Set("WWW-Authenticate", `Bearer scope="`+strings.Repeat("s ", 64<<10)+`"`)
	if got := wwwAuthenticate(h); len(got) != 8<<10 {
		t.Errorf("a 128 KiB challenge read as %d bytes", len(got))
	}
}
