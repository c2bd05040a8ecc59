package server

import (
	"encoding/json"
	"strings"
)

// maxChallenge bounds how much of a resource's WWW-Authenticate the proxy
// reads: what it needs (scheme, error, scope) comes first, and a resource
// sending megabytes must not cost more.
const maxChallenge = 8 << 10

// challenge is one WWW-Authenticate challenge (RFC 9110 §11.6.1).
type challenge struct {
	scheme string // lower case
	params map[string]string
}

// challenges are the challenges of an answer, and the header as received
// (bounded), which the proxy passes to the daemon with a report.
type challenges struct {
	list []challenge
	raw  string
}

// parseChallenges reads the WWW-Authenticate header lines of an answer.
// What it cannot read ends the list: a malformed challenge never counts.
func parseChallenges(lines []string) challenges {
	raw := strings.Join(lines, ", ")
	if len(raw) > maxChallenge {
		raw = raw[:maxChallenge]
	}
	cs := challenges{raw: raw}
	s := raw
	var cur *challenge
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return cs
		}
		tok := s[:tokenEnd(s)]
		if tok == "" {
			return cs
		}
		rest := strings.TrimLeft(s[len(tok):], " \t")
		if strings.HasPrefix(rest, "=") && cur != nil && !strings.HasPrefix(rest, "==") {
			// name=value of the current challenge.
			v, after, ok := paramValue(strings.TrimLeft(rest[1:], " \t"))
			if !ok {
				return cs
			}
			cur.params[strings.ToLower(tok)] = v
			s = after
			continue
		}
		// A new challenge: its scheme, then params or a token68.
		cs.list = append(cs.list, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
		cur = &cs.list[len(cs.list)-1]
		s = rest
		if t := s[:tokenEnd(s)]; t != "" {
			after := strings.TrimLeft(s[len(t):], " \t")
			param := strings.HasPrefix(after, "=") && !strings.HasPrefix(after, "==")
			if v := strings.TrimLeft(strings.TrimPrefix(after, "="), " \t"); param && (v == "" || v[0] == ',') {
				param = false // "abc=": a token68 with padding
			}
			if !param {
				s = strings.TrimLeft(after, "=")
			}
		}
	}
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/", c) >= 0
}

func tokenEnd(s string) int {
	i := 0
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	return i
}

// paramValue reads a token or quoted-string at the start of s.
func paramValue(s string) (v, rest string, ok bool) {
	if !strings.HasPrefix(s, `"`) {
		n := tokenEnd(s)
		return s[:n], s[n:], true
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// tokenSchemes are the schemes whose challenges are about the token the
// proxy sent.
func tokenScheme(s string) bool { return s == "bearer" || s == "dpop" }

// has reports a challenge of scheme with this error.
func (cs challenges) has(scheme, errCode string) bool {
	for _, c := range cs.list {
		if c.scheme == scheme && c.params["error"] == errCode {
			return true
		}
	}
	return false
}

// rejectsToken: a 401 with a Bearer or DPoP challenge says the token the
// proxy sent is not good (invalid_token, or no error at all: a resource
// that does not know the token may answer as if there were none), except
// when it only asks for a DPoP nonce.
func (cs challenges) rejectsToken() bool {
	for _, c := range cs.list {
		if tokenScheme(c.scheme) && c.params["error"] != "use_dpop_nonce" && c.params["error"] != "insufficient_scope" {
			return true
		}
	}
	return false
}

// insufficientScope returns the scopes a 403 insufficient_scope asks for.
func (cs challenges) insufficientScope() (string, bool) {
	for _, c := range cs.list {
		if tokenScheme(c.scheme) && c.params["error"] == "insufficient_scope" {
			if s := strings.TrimSpace(c.params["scope"]); s != "" {
				return s, true
			}
		}
	}
	return "", false
}

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
