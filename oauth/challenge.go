package oauth

import (
	"errors"
	"fmt"
	"strings"
)

// MaxChallengeBytes bounds the WWW-Authenticate headers ParseBearerChallenge
// reads, all of them together. A resource's challenge is a few hundred
// bytes; a longer one is refused, not parsed.
const MaxChallengeBytes = 8 << 10

// ErrMalformedChallenge is the cause (test with errors.Is) of every
// refusal of ParseBearerChallenge: headers over MaxChallengeBytes, syntax
// that is not RFC 9110 §11.6.1's, an auth-param repeated in one challenge.
var ErrMalformedChallenge = errors.New("malformed WWW-Authenticate")

// Challenge is the Bearer (or DPoP) challenge of a resource's 401 or 403
// answer (RFC 6750 §3, RFC 9449 §7.1, RFC 9728 §5.1). Its values have
// been through Printable.
type Challenge struct {
	// Found reports that the headers held a Bearer or DPoP challenge; the
	// other fields are empty otherwise.
	Found bool
	// Scheme is "Bearer" or "DPoP", as this package spells them.
	Scheme string
	// ResourceMetadata is RFC 9728's resource_metadata: where the
	// resource's protected-resource metadata is. Not checked here:
	// DiscoverResource holds it to CheckEndpointURL before fetching it.
	ResourceMetadata string
	// Scope is the space-delimited scope the resource asks for.
	Scope string
	// Error and ErrorDescription are RFC 6750 §3.1's error
	// ("invalid_token", "insufficient_scope", ...) and its description.
	Error            string
	ErrorDescription string
	Realm            string
	// Params are all the challenge's auth-params, by lower-case name
	// (auth-param names are case-insensitive).
	Params map[string]string
}

// Scopes is Scope split at spaces; nil when the challenge named none.
func (c Challenge) Scopes() []string {
	if strings.TrimSpace(c.Scope) == "" {
		return nil
	}
	return strings.Fields(c.Scope)
}

// ParseBearerChallenge reads the WWW-Authenticate headers of one answer
// (http.Header.Values("WWW-Authenticate")): each holds one or more
// challenges (RFC 9110 §11.6.1: auth-scheme, then a token68 or
// comma-separated auth-params whose values are tokens or quoted strings
// with backslash escapes). The first challenge of scheme Bearer (any case)
// is returned, or else the first of scheme DPoP, which carries the same
// parameters (a resource that takes only DPoP-bound tokens names its
// metadata there); the others are checked for syntax and skipped. Headers
// over MaxChallengeBytes in all, malformed syntax and an auth-param given
// twice in one challenge are refused with an error wrapping
// ErrMalformedChallenge that says where (it quotes none of the header).
// No such challenge is not an error: Found is false.
func ParseBearerChallenge(headers []string) (Challenge, error) {
	total := 0
	for _, h := range headers {
		total += len(h)
	}
	if total > MaxChallengeBytes {
		return Challenge{}, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrMalformedChallenge, total, MaxChallengeBytes)
	}
	var found, dpop *rawChallenge
	for i, h := range headers {
		cs, err := parseChallenges(h)
		if err != nil {
			if len(headers) > 1 {
				return Challenge{}, fmt.Errorf("%w: header %d: %w", ErrMalformedChallenge, i+1, err)
			}
			return Challenge{}, fmt.Errorf("%w: %w", ErrMalformedChallenge, err)
		}
		for j := range cs {
			switch {
			case found == nil && strings.EqualFold(cs[j].scheme, "Bearer"):
				found = &cs[j]
			case dpop == nil && strings.EqualFold(cs[j].scheme, "DPoP"):
				dpop = &cs[j]
			}
		}
	}
	c := Challenge{Found: true, Scheme: "Bearer"}
	switch {
	case found != nil:
	case dpop != nil:
		found, c.Scheme = dpop, "DPoP"
	default:
		return Challenge{}, nil
	}
	c.Params = make(map[string]string, len(found.params))
	for k, v := range found.params {
		c.Params[k] = Printable(v)
	}
	c.ResourceMetadata = c.Params["resource_metadata"]
	c.Scope = c.Params["scope"]
	c.Error = c.Params["error"]
	c.ErrorDescription = c.Params["error_description"]
	c.Realm = c.Params["realm"]
	return c, nil
}

type rawChallenge struct {
	scheme string
	opaque string // the token68 form of a challenge body
	params map[string]string
}

// challengeParser walks one header value; pos is a byte offset.
type challengeParser struct {
	s   string
	pos int
}

func (p *challengeParser) errorf(format string, a ...any) error {
	return fmt.Errorf("at byte %d: "+format, append([]any{p.pos + 1}, a...)...)
}

func (p *challengeParser) skipOWS() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *challengeParser) token() string {
	start := p.pos
	for p.pos < len(p.s) && isTchar(p.s[p.pos]) {
		p.pos++
	}
	return p.s[start:p.pos]
}

// skipListSeparators skips OWS and empty list elements (RFC 9110 §5.6.1
// has recipients accept "a, , b"); it reports whether a comma was seen.
func (p *challengeParser) skipListSeparators() bool {
	comma := false
	for {
		p.skipOWS()
		if p.pos < len(p.s) && p.s[p.pos] == ',' {
			comma = true
			p.pos++
			continue
		}
		return comma
	}
}

// parseChallenges parses one WWW-Authenticate field value:
//
//	WWW-Authenticate = #challenge
//	challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param  = token BWS "=" BWS ( token / quoted-string )
//	token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// After a comma, what follows the next token tells an auth-param from
// the next challenge (paramFollows).
func parseChallenges(s string) ([]rawChallenge, error) {
	p := &challengeParser{s: s}
	var out []rawChallenge
	p.skipListSeparators()
	for p.pos < len(s) {
		scheme := p.token()
		if scheme == "" {
			return nil, p.errorf("expected an auth-scheme, found %s", describeByte(s[p.pos]))
		}
		c := rawChallenge{scheme: scheme, params: map[string]string{}}
		if p.pos < len(s) && s[p.pos] != ' ' && s[p.pos] != ',' && s[p.pos] != '\t' {
			return nil, p.errorf("%s after auth-scheme %q", describeByte(s[p.pos]), clean(scheme, 40, nil))
		}
		p.skipOWS()
		if p.pos < len(s) && (s[p.pos] != ',' || p.paramFollows()) {
			if err := p.challengeBody(&c); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
		if p.pos < len(s) && !p.skipListSeparators() {
			return nil, p.errorf("expected a comma, found %s", describeByte(s[p.pos]))
		}
	}
	return out, nil
}

// challengeBody parses what follows an auth-scheme and its spaces: a
// token68, or auth-params up to the next challenge (left unread, with the
// comma before it) or the end.
func (p *challengeParser) challengeBody(c *rawChallenge) error {
	start := p.pos
	// token68 ends in "=" padding and is followed by the end or a comma;
	// an auth-param's name is followed by "=" and a value.
	if p.isOpaqueToken() {
		c.opaque = p.s[start:p.pos]
		return nil
	}
	for {
		name := p.token()
		if name == "" {
			if p.pos < len(p.s) {
				return p.errorf("expected an auth-param, found %s", describeByte(p.s[p.pos]))
			}
			return p.errorf("expected an auth-param, found the end")
		}
		p.skipOWS()
		if p.pos >= len(p.s) || p.s[p.pos] != '=' {
			return p.errorf("auth-param %q without \"=\"", clean(name, 40, nil))
		}
		p.pos++
		p.skipOWS()
		var value string
		switch {
		case p.pos >= len(p.s):
			return p.errorf("auth-param %q without a value", clean(name, 40, nil))
		case p.s[p.pos] == '"':
			v, err := p.quotedString()
			if err != nil {
				return err
			}
			value = v
		default:
			value = p.token()
			if value == "" {
				return p.errorf("auth-param %q: value neither a token nor a quoted string (%s)", clean(name, 40, nil), describeByte(p.s[p.pos]))
			}
		}
		key := strings.ToLower(name)
		if _, dup := c.params[key]; dup {
			return p.errorf("auth-param %q given twice in one challenge", clean(name, 40, nil))
		}
		c.params[key] = value
		p.skipOWS()
		if p.pos >= len(p.s) {
			return nil
		}
		if p.s[p.pos] != ',' {
			return p.errorf("expected a comma after auth-param %q, found %s", clean(name, 40, nil), describeByte(p.s[p.pos]))
		}
		if !p.paramFollows() {
			return nil // the next challenge starts after the comma
		}
	}
}

// paramFollows, at a comma, reports whether an auth-param of the same
// challenge comes next (empty list elements aside), and then moves to it;
// otherwise pos stays at the comma. An auth-param and the next challenge
// both start with a token; a parameter's is followed by "=".
func (p *challengeParser) paramFollows() bool {
	save := p.pos
	p.skipListSeparators()
	look := p.pos
	if p.token() != "" {
		p.skipOWS()
		if p.pos < len(p.s) && p.s[p.pos] == '=' {
			p.pos = look
			return true
		}
	}
	p.pos = save
	return false
}

// isOpaqueToken reports whether a token68 starts at pos and is the whole
// challenge body (the end or a comma follows); it then moves past it.
func (p *challengeParser) isOpaqueToken() bool {
	i := p.pos
	for i < len(p.s) && isOpaqueTokenChar(p.s[i]) {
		i++
	}
	if i == p.pos {
		return false
	}
	for i < len(p.s) && p.s[i] == '=' {
		i++
	}
	j := i
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	if j < len(p.s) && p.s[j] != ',' {
		return false
	}
	p.pos = j
	return true
}

// quotedString reads RFC 9110 §5.6.4's quoted-string at pos, undoing its
// backslash escapes.
func (p *challengeParser) quotedString() (string, error) {
	p.pos++ // the opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		ch := p.s[p.pos]
		switch {
		case ch == '"':
			p.pos++
			return b.String(), nil
		case ch == '\\':
			if p.pos+1 >= len(p.s) {
				return "", p.errorf("quoted string ends in a backslash")
			}
			next := p.s[p.pos+1]
			if !isQuotedPairChar(next) {
				return "", p.errorf("backslash before %s in a quoted string", describeByte(next))
			}
			b.WriteByte(next)
			p.pos += 2
		case ch == '\t' || ch == ' ' || (ch >= 0x21 && ch != 0x7f):
			b.WriteByte(ch)
			p.pos++
		default:
			return "", p.errorf("%s in a quoted string", describeByte(ch))
		}
	}
	return "", p.errorf("quoted string without its closing quote")
}

// isTchar is RFC 9110 §5.6.2's tchar.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isOpaqueTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

// isQuotedPairChar: HTAB, SP, VCHAR, obs-text.
func isQuotedPairChar(c byte) bool {
	return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f)
}

// describeByte names a byte for a message without echoing control
// characters.
func describeByte(c byte) string {
	if c >= 0x21 && c < 0x7f {
		return fmt.Sprintf("%q", string(rune(c)))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
