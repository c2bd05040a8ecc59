package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tokend/tokend/api"
)

// Provider text on the terminal, the command line's part: strings a
// provider chose (a scope, an error description, a TLS certificate's name
// in a transport error) reach the terminal through the daemon's answers. These tests serve
// such strings from a fake daemon and check that what the command line
// prints holds none of what a terminal acts on, while keeping the text.

// hostile is a provider's text carrying what a terminal acts on: ESC [2J
// (clear the screen), an OSC 8 hyperlink whose shown text differs from its
// target, CR (overwrite the line), U+202E (show the rest reversed), C1 CSI
// (U+009B: an escape sequence on some terminals), BEL, and a byte that is
// not UTF-8.
const hostile = "read\x1b[2J \x1b]8;;https://evil.example/\x1b\\click here\x1b]8;;\x1b\\ \rFAKE \u202etxt.exe\u009b31m\x07 \xffwrite"

// dangerous lists what must never reach the terminal raw.
var dangerous = []string{"\x1b", "\r", "\u202e", "\u009b", "\x07", "\xff", "\ufffd"}

// wantClean fails the test if out holds any of dangerous, and checks that
// the visible words of hostile survived.
func wantClean(t *testing.T, what, out string) {
	t.Helper()
	for _, d := range dangerous {
		if strings.Contains(out, d) {
			t.Errorf("%s prints %q raw:\n%q", what, d, out)
		}
	}
	if !utf8.ValidString(out) {
		t.Errorf("%s prints invalid UTF-8: %q", what, out)
	}
	for _, w := range []string{"read", "click here", "FAKE", "txt.exe", "write"} {
		if !strings.Contains(out, w) {
			t.Errorf("%s lost the text %q:\n%q", what, w, out)
		}
	}
}

// mustJSON marshals v; json.Marshal turns the invalid byte into U+FFFD,
// which the daemon's JSON would carry too.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostileStatus() api.GrantStatus {
	return api.GrantStatus{
		Name: "g", Type: "client_credentials", Provider: "corp", State: "failing",
		Scope: hostile, LastError: "oauth: refresh: " + hostile, LastErrorCode: "server_error\x1b[31m",
		Auth: "failed: " + hostile, AuthAt: testNow,
		History: []api.AttemptStatus{{At: testNow, Result: "transient\x1b[8m", Reason: "due\r", Error: hostile}},
	}
}

func TestStatusStripsTerminalControls(t *testing.T) {
	g := hostileStatus()
	list := mustJSON(t, api.TokenList{Grants: []api.GrantStatus{g}})
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens":          {{200, list}},
		"GET /v1/tokens/g/status": {{200, mustJSON(t, g)}},
	})

	tc := newTestCLI()
	if code := tc.run("status", "--socket", f.socket); code != exitOK {
		t.Fatalf("status: exit %d: %s", code, tc.errOut.String())
	}
	// The table cuts the error to 80 runes: check what it keeps.
	for _, d := range dangerous {
		if strings.Contains(tc.out.String(), d) {
			t.Errorf("status (table) prints %q raw:\n%q", d, tc.out.String())
		}
	}
	if !strings.Contains(tc.out.String(), "oauth: refresh: read") {
		t.Errorf("status (table) lost the error:\n%s", tc.out.String())
	}

	tc = newTestCLI()
	if code := tc.run("status", "g", "--socket", f.socket); code != exitOK {
		t.Fatalf("status g: exit %d: %s", code, tc.errOut.String())
	}
	out := tc.out.String()
	wantClean(t, "status g", out)
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "scope:") {
			// The controls go; the rest of a sequence stays as harmless text.
			if want := `scope:          read[2J ]8;;https://evil.example/\click here]8;;\ FAKE txt.exe31m write`; line != want {
				t.Errorf("scope line %q, want %q", line, want)
			}
		}
	}

	// --json keeps the values exact for programs (escaped, so they decode
	// to what the daemon sent) and prints nothing a terminal acts on.
	for _, args := range [][]string{{"status", "--json"}, {"status", "g", "--json"}} {
		tc = newTestCLI()
		if code := tc.run(append(args, "--socket", f.socket)...); code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, tc.errOut.String())
		}
		for _, d := range dangerous {
			if strings.Contains(tc.out.String(), d) {
				t.Errorf("%q prints %q raw:\n%q", args, d, tc.out.String())
			}
		}
		var got api.GrantStatus
		if len(args) == 2 {
			var l api.TokenList
			if err := json.Unmarshal(tc.out.Bytes(), &l); err != nil || len(l.Grants) != 1 {
				t.Fatalf("%q: output does not decode: %v\n%s", args, err, tc.out.String())
			}
			got = l.Grants[0]
		} else if err := json.Unmarshal(tc.out.Bytes(), &got); err != nil {
			t.Fatalf("%q: output does not decode: %v\n%s", args, err, tc.out.String())
		}
		if want := strings.ToValidUTF8(g.Scope, "\ufffd"); got.Scope != want || got.LastError != strings.ToValidUTF8(g.LastError, "\ufffd") {
			t.Errorf("%q: the JSON values changed: scope %q, want %q", args, got.Scope, want)
		}
	}
}

func TestTokenAndRefreshStripTerminalControls(t *testing.T) {
	g := hostileStatus()
	desc := mustJSON(t, api.ErrorResponse{Error: "temporarily_unavailable", ErrorDescription: "the token has expired and the provider is failing (" + hostile + "); tokend is retrying"})
	reauth := mustJSON(t, api.ErrorResponse{Error: "reauthorization_required\x1b[2J", ErrorDescription: "refresh token rejected: " + hostile})
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/down":       {{503, desc}},
		"GET /v1/tokens/reauth":     {{409, reauth}},
		"GET /v1/tokens/injected":   {{200, "at-1\r\nX-Injected: 1\x1b[2J\n"}},
		"GET /v1/tokens/scoped":     {{200, mustJSON(t, api.TokenResponse{AccessToken: "at-1", TokenType: "Bearer", Scope: hostile})}},
		"POST /v1/tokens/g/refresh": {{200, mustJSON(t, g)}},
	})

	t.Run("503 description", func(t *testing.T) {
		tc := newTestCLI()
		if code := tc.run("token", "down", "--socket", f.socket); code != exitError {
			t.Errorf("exit %d", code)
		}
		wantClean(t, "token (503)", tc.errOut.String())
		if tc.out.Len() != 0 {
			t.Errorf("stdout %q", tc.out.String())
		}
	})
	t.Run("409 description", func(t *testing.T) {
		tc := newTestCLI()
		if code := tc.run("token", "reauth", "--socket", f.socket); code != exitReauth {
			t.Errorf("exit %d", code)
		}
		wantClean(t, "token (409)", tc.errOut.String())
	})
	t.Run("raw token outside RFC 6750 syntax", func(t *testing.T) {
		// $(tokend token x) in an Authorization header would add a header
		// line; on a terminal, the escape clears the screen.
		tc := newTestCLI()
		if code := tc.run("token", "injected", "--socket", f.socket); code != exitError {
			t.Errorf("exit %d", code)
		}
		if tc.out.Len() != 0 {
			t.Errorf("a malformed token is printed: %q", tc.out.String())
		}
		if !strings.Contains(tc.errOut.String(), "RFC 6750") {
			t.Errorf("stderr does not say why: %q", tc.errOut.String())
		}
	})
	t.Run("token --json", func(t *testing.T) {
		tc := newTestCLI()
		if code := tc.run("token", "scoped", "--json", "--socket", f.socket); code != exitOK {
			t.Fatalf("exit %d: %s", code, tc.errOut.String())
		}
		for _, d := range dangerous {
			if strings.Contains(tc.out.String(), d) {
				t.Errorf("token --json prints %q raw:\n%q", d, tc.out.String())
			}
		}
		var got api.TokenResponse
		if err := json.Unmarshal(tc.out.Bytes(), &got); err != nil || got.Scope != strings.ToValidUTF8(hostile, "\ufffd") {
			t.Errorf("token --json: %v, scope %q", err, got.Scope)
		}
	})
	t.Run("refresh", func(t *testing.T) {
		tc := newTestCLI()
		tc.run("refresh", "g", "--socket", f.socket)
		wantClean(t, "refresh", tc.out.String()+tc.errOut.String())
	})
}

func TestBearerTokenSyntax(t *testing.T) {
	for _, s := range []string{"at-1", "AZaz09-._~+/", "abc==", "eyJhbGciOi.eyJzdWIi.sig_-"} {
		if !isBearerToken(s) {
			t.Errorf("%q refused", s)
		}
	}
	for _, s := range []string{"", "==", "a b", "a\r\nb", "a\x1b[2J", "a=b", "a\"b", "a,b", "é"} {
		if isBearerToken(s) {
			t.Errorf("%q accepted", s)
		}
	}
}
