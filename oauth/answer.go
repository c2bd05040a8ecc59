package oauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"golang.org/x/oauth2"
)

// This file checks the strings of a provider's answer that tokend stores,
// serves or sends back: a value that could carry a header or a terminal
// escape is a malformed answer, not something to repair.

// isB64token reports whether s is RFC 6750 §2.1's b64token, the syntax of a
// bearer access token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" /
// "/" ) *"=". Anything else (CR, LF, space, quotes, commas) could change
// the meaning of an Authorization header built from it.
func isB64token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// isHTTPToken reports whether s is RFC 7230 §3.2.6's token (1*tchar), the
// syntax of an authentication scheme such as token_type.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isVisibleASCII reports whether s is made of visible ASCII characters
// (%x21-7E) only: no space, no control character, nothing outside ASCII.
func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isVSCHARs reports whether s is made of RFC 6749 Appendix A's VSCHAR
// (%x20-7E), the syntax of client_id and client_secret.
func isVSCHARs(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// malformedAnswer is the *Error for a 2xx answer that is not valid. why
// must not quote a secret.
func malformedAnswer(op string, status int, why string) *Error {
	return &Error{Op: op, Status: status, Class: Transient, Err: fmt.Errorf("%w: %s", ErrMalformed, why)}
}

// isFormAnswer reports whether x/oauth2 parses an answer with this
// Content-Type as a form (it parses anything else as JSON).
func isFormAnswer(h http.Header) bool {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" || ct == "text/plain"
}

// duplicateKey returns a top-level key that occurs more than once in an
// answer, quoted for a message, or "" when there is none (or the body does
// not parse, which the caller has already dealt with). For a JSON object
// keys are compared as encoding/json matches them to struct fields, case
// folded: {"access_token":"a","Access_Token":"b"} is two access tokens,
// the last of which would win.
func duplicateKey(body []byte, form bool) string {
	if form {
		q, err := url.ParseQuery(string(body))
		if err != nil {
			return ""
		}
		for k, v := range q {
			if len(v) > 1 {
				return fmt.Sprintf("%q", clean(k, 40, nil))
			}
		}
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		k, ok := t.(string)
		if !ok {
			return ""
		}
		f := foldKey(k)
		if seen[f] {
			return fmt.Sprintf("%q", clean(k, 40, nil))
		}
		seen[f] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// foldKey folds a JSON object key as encoding/json does when it matches
// keys to struct fields without regard to case.
func foldKey(k string) string {
	return strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, k)
}

// checkToken checks a token endpoint answer that x/oauth2 accepted, as the
// probe saw it: no duplicate top-level key, an access_token that is a
// b64token, a token_type (when sent) that is an HTTP token, and a
// refresh_token and id_token (when sent) of visible ASCII, since they are
// sent back in form bodies. A failure is a malformed answer (Transient);
// the caller keeps the token it had.
func checkToken(op string, r reply, t *oauth2.Token) *Error {
	if k := duplicateKey(r.body, isFormAnswer(r.header)); k != "" {
		return malformedAnswer(op, r.status, "key "+k+" occurs more than once")
	}
	switch {
	case !isB64token(t.AccessToken):
		return malformedAnswer(op, r.status, "access_token has characters outside RFC 6750's b64token syntax")
	case t.TokenType != "" && !isHTTPToken(t.TokenType):
		return malformedAnswer(op, r.status, "token_type is not an HTTP token (RFC 7230 tchar)")
	case !isVisibleASCII(extraString(t, "refresh_token")):
		// The answer's own, not t.RefreshToken, into which x/oauth2
		// copies the refresh token that was sent when none came back.
		return malformedAnswer(op, r.status, "refresh_token has characters other than visible ASCII")
	case !isVisibleASCII(extraString(t, "id_token")):
		return malformedAnswer(op, r.status, "id_token has characters other than visible ASCII")
	}
	return nil
}
