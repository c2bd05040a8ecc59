package oauth

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseBearerChallenge(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		want    Challenge
	}{
		{
			name:    "MCP 401",
			headers: []string{`Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write"`},
			want: Challenge{Found: true, Scheme: "Bearer", ResourceMetadata: "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", Scope: "files:read files:write",
				Params: map[string]string{"resource_metadata": "https://mcp.example.com/.well-known/oauth-protected-resource/mcp", "scope": "files:read files:write"}},
		},
		{
			name:    "403 insufficient_scope, token values, odd spacing and case",
			headers: []string{`bEARER   Error = insufficient_scope ,SCOPE="a b",error_description="needs \"b\" \\ now",, realm=x`},
			want: Challenge{Found: true, Scheme: "Bearer", Error: "insufficient_scope", Scope: "a b", ErrorDescription: `needs "b" \ now`, Realm: "x",
				Params: map[string]string{"error": "insufficient_scope", "scope": "a b", "error_description": `needs "b" \ now`, "realm": "x"}},
		},
		{
			name:    "Bearer after other challenges in one header",
			headers: []string{`Basic realm="simple", Negotiate abc+/==, Newauth realm="apps", type=1, title="Login to \"apps\"", Bearer scope="s", resource_metadata="https://r.example/m"`},
			want: Challenge{Found: true, Scheme: "Bearer", Scope: "s", ResourceMetadata: "https://r.example/m",
				Params: map[string]string{"scope": "s", "resource_metadata": "https://r.example/m"}},
		},
		{
			name:    "several headers: the first Bearer wins",
			headers: []string{`Basic realm="a"`, `DPoP algs="ES256", Bearer scope="first"`, `Bearer scope="second"`},
			want:    Challenge{Found: true, Scheme: "Bearer", Scope: "first", Params: map[string]string{"scope": "first"}},
		},
		{
			name:    "DPoP only: its parameters",
			headers: []string{`Basic realm="x", DPoP algs="ES256 PS256", error="invalid_token", resource_metadata="https://r.example/m"`},
			want: Challenge{Found: true, Scheme: "DPoP", Error: "invalid_token", ResourceMetadata: "https://r.example/m",
				Params: map[string]string{"algs": "ES256 PS256", "error": "invalid_token", "resource_metadata": "https://r.example/m"}},
		},
		{
			name:    "Bearer over an earlier DPoP",
			headers: []string{`dpop algs="ES256", scope="d"`, `bearer scope="b"`},
			want:    Challenge{Found: true, Scheme: "Bearer", Scope: "b", Params: map[string]string{"scope": "b"}},
		},
		{
			name:    "empty list elements before and between parameters",
			headers: []string{`, Bearer ,, scope="a" , , realm=r ,`},
			want:    Challenge{Found: true, Scheme: "Bearer", Scope: "a", Realm: "r", Params: map[string]string{"scope": "a", "realm": "r"}},
		},
		{
			name:    "bare Bearer",
			headers: []string{`Bearer`},
			want:    Challenge{Found: true, Scheme: "Bearer", Params: map[string]string{}},
		},
		{
			name:    "no Bearer challenge",
			headers: []string{`Basic realm="x"`, `Negotiate`, ``},
			want:    Challenge{},
		},
		{
			name:    "no header",
			headers: nil,
			want:    Challenge{},
		},
		{
			name:    "bidi overrides and invalid UTF-8 are dropped from values",
			headers: []string{"Bearer error_description=\"a\\\"b\u202ec\xff\""},
			want:    Challenge{Found: true, Scheme: "Bearer", ErrorDescription: `a"bc`, Params: map[string]string{"error_description": `a"bc`}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseBearerChallenge(c.headers)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got\n  %#v\nwant\n  %#v", got, c.want)
			}
		})
	}
}

func TestParseBearerChallengeScopes(t *testing.T) {
	c, err := ParseBearerChallenge([]string{`Bearer scope="  a   b c "`})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Scopes(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Scopes() = %q", got)
	}
	if got := (Challenge{}).Scopes(); got != nil {
		t.Errorf("Scopes() of no scope = %q", got)
	}
}

func TestParseBearerChallengeRefuses(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		message string
	}{
		{"64 KiB header", []string{`Bearer scope="` + strings.Repeat("a", 64<<10) + `"`}, "over the 8192-byte limit"},
		{"several headers over the bound together", []string{strings.Repeat("Basic, ", 600), strings.Repeat("Basic, ", 600)}, "over the 8192-byte limit"},
		{"unterminated quoted string", []string{`Bearer scope="a b`}, "without its closing quote"},
		{"backslash at the end", []string{`Bearer scope="a\`}, "ends in a backslash"},
		{"control character in a quoted string", []string{"Bearer scope=\"a\nb\""}, "byte 0x0a in a quoted string"},
		{"escaped control character", []string{"Bearer scope=\"a\\\x1b[31m\""}, "backslash before byte 0x1b"},
		{"parameter without value", []string{`Bearer realm="x", scope=`}, "without a value"},
		{"parameter without =", []string{`Bearer scope="a", realm "x"`}, "expected an auth-param"},
		{"value neither token nor quoted", []string{`Bearer scope=(a)`}, "neither a token nor a quoted string"},
		{"repeated parameter", []string{`Bearer scope="a", SCOPE="b"`}, "given twice"},
		{"leading =", []string{`=Bearer`}, "expected an auth-scheme"},
		{"quote after scheme", []string{`Bearer"x"`}, "after auth-scheme"},
		{"garbage after a quoted value", []string{`Bearer scope="a"b`}, "expected a comma"},
		{"second header malformed", []string{`Bearer scope="a"`, `Basic realm="x`}, "header 2"},
		{"token68 then a parameter", []string{`Bearer abc== realm="x"`}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseBearerChallenge(c.headers)
			if !errors.Is(err, ErrMalformedChallenge) {
				t.Fatalf("err = %v, challenge %#v", err, got)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("message %q, want it to say %q", err, c.message)
			}
			if len(err.Error()) > 300 {
				t.Errorf("message of %d bytes: the header must not be quoted", len(err.Error()))
			}
			if !reflect.DeepEqual(got, Challenge{}) {
				t.Errorf("challenge %#v returned with the error", got)
			}
		})
	}
}
