package mcpbridge

import (
	"net/http"
	"strings"
)

// maxChallenge bounds the WWW-Authenticate text the bridge reads: a longer
// one is cut there (a server has no reason to send more).
const maxChallenge = 8 << 10

// challenge is one challenge of a WWW-Authenticate header (RFC 9110
// §11.6.1): a scheme, lower-cased, and its parameters (names lower-cased,
// values unquoted).
type challenge struct {
	scheme string
	params map[string]string
}

// wwwAuthenticate is a response's WWW-Authenticate fields as one string,
// cut at maxChallenge.
func wwwAuthenticate(h http.Header) string {
	s := strings.Join(h.Values("WWW-Authenticate"), ", ")
	if len(s) > maxChallenge {
		s = s[:maxChallenge]
	}
	return s
}

// parseChallenges parses a WWW-Authenticate value. It stops at the first
// thing that is not the header's grammar and returns what came before:
// the bridge only looks for a few parameters, and a malformed header is
// answered as if they were absent.
func parseChallenges(s string) []challenge {
	p := &challengeParser{s: s}
	var out []challenge
	for {
		p.skip(" \t,")
		scheme := p.token()
		if scheme == "" {
			return out
		}
		c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
		for {
			p.skip(" \t")
			start := p.i
			name := p.token()
			if name != "" && p.credentialsEnd() {
				break // credentials in the form of Basic's: no parameters
			}
			p.skip(" \t")
			if name == "" || !p.eat('=') {
				// A new challenge's scheme (or credentials as one token, kept
				// as nothing).
				p.i = start
				break
			}
			p.skip(" \t")
			var value string
			if p.peek() == '"' {
				v, ok := p.quoted()
				if !ok {
					return append(out, c)
				}
				value = v
			} else {
				value = p.token()
			}
			if _, dup := c.params[strings.ToLower(name)]; !dup {
				c.params[strings.ToLower(name)] = value
			}
			p.skip(" \t")
			if !p.eat(',') {
				break
			}
		}
		out = append(out, c)
	}
}

// insufficientScope finds, in the challenge of a 403, a Bearer or DPoP
// challenge asking for scopes and returns them; "" when there is none.
// RFC 6750 and the MCP authorization spec say error="insufficient_scope";
// a challenge with a scope and no error at all is taken as one too (the
// Go SDK's bearer middleware writes that), one with another error is
// not.
func insufficientScope(chal string) string {
	for _, c := range parseChallenges(chal) {
		if (c.scheme == "bearer" || c.scheme == "dpop") && (c.params["error"] == "insufficient_scope" || c.params["error"] == "") {
			if s := strings.Join(strings.Fields(c.params["scope"]), " "); s != "" {
				return s
			}
		}
	}
	return ""
}

// asksDPoPNonce reports whether a challenge is a DPoP one with
// error="use_dpop_nonce" (RFC 9449 §9): the request is to be sent again
// with the nonce the answer's DPoP-Nonce carries.
func asksDPoPNonce(chal string) bool {
	for _, c := range parseChallenges(chal) {
		if c.scheme == "dpop" && c.params["error"] == "use_dpop_nonce" {
			return true
		}
	}
	return false
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *challengeParser) eat(c byte) bool {
	if p.peek() == c && p.i < len(p.s) {
		p.i++
		return true
	}
	return false
}

func (p *challengeParser) skip(set string) {
	for p.i < len(p.s) && strings.IndexByte(set, p.s[p.i]) >= 0 {
		p.i++
	}
}

// credentialsEnd consumes the "=" padding that ends credentials written
// as one token (RFC 9110's token68) and reports
// whether there was one: "=" signs followed by the end or a comma, not a
// parameter's "=".
func (p *challengeParser) credentialsEnd() bool {
	j := p.i
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	if j == p.i {
		return false
	}
	k := j
	for k < len(p.s) && (p.s[k] == ' ' || p.s[k] == '\t') {
		k++
	}
	if k < len(p.s) && p.s[k] != ',' {
		return false
	}
	p.i = k
	return true
}

// token reads an RFC 9110 token; the "=" padding after credentials
// written as one token is left.
func (p *challengeParser) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string and returns it unquoted; ok is false when
// it does not end.
func (p *challengeParser) quoted() (string, bool) {
	p.i++ // the opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String(), true
		case '\\':
			if p.i >= len(p.s) {
				return "", false
			}
			b.WriteByte(p.s[p.i])
			p.i++
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
