package config

// The extension grants (RFC 6749 §4.5): jwt_bearer (RFC 7523 §2.1) and
// token_exchange (RFC 8693), and dpop (RFC 9449), which any grant may set. Validation
// keeps each type's keys on grants of that type, and refuses a
// token_exchange chain that loops; Load reads the assertion keys.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

// JWT-bearer assertion lifetimes.
const (
	DefaultAssertionLifetime = 5 * time.Minute
	MaxAssertionLifetime     = time.Hour
	// LongAssertionLifetime is where check-config starts warning: whoever
	// holds an assertion can use it at its audience until it expires, and
	// one request needs it for seconds.
	LongAssertionLifetime = 10 * time.Minute
)

// misaddressed says why an assertion with audience aud, sent to provider
// pv's token endpoint, would be addressed to another server than the one
// that receives it; "" when aud is that token endpoint or the issuer, or
// when the token endpoint is discovered (the daemon checks it then). The
// receiver of a misaddressed assertion holds a signed credential that its
// audience accepts for the assertion's whole lifetime.
func misaddressed(aud string, pv Provider, provider string) string {
	switch {
	case aud == "" || pv.TokenEndpoint == "":
		return ""
	case aud == pv.TokenEndpoint:
		return ""
	case pv.Issuer != "" && strings.TrimSuffix(aud, "/") == strings.TrimSuffix(pv.Issuer, "/"):
		return ""
	}
	also := ""
	if pv.Issuer != "" {
		also = " nor its issuer " + pv.Issuer
	}
	return fmt.Sprintf("%s is not provider %q's token endpoint %s%s, where the assertion is sent: it would be signed for one server and given to another", aud, provider, pv.TokenEndpoint, also)
}

// Token types as token_exchange grants name them: short names or URNs.
const (
	TokenTypeAccessToken = "access_token"
	TokenTypeIDToken     = "id_token"
)

// shortTokenTypes maps the short names the configuration takes to the
// RFC 8693 §3 URNs.
var shortTokenTypes = map[string]string{
	"access_token":  oauth.TokenTypeAccess,
	"refresh_token": oauth.TokenTypeRefresh,
	"id_token":      oauth.TokenTypeID,
	"jwt":           oauth.TokenTypeJWT,
}

// reservedClaims are the claims tokend sets in an assertion itself.
var reservedClaims = []string{"iss", "sub", "aud", "iat", "exp", "jti"}

// TokenTypeURN returns the RFC 8693 URN of a token type as the
// configuration writes it: access_token, refresh_token, id_token and jwt
// map to their urn:ietf:params:oauth:token-type: URNs, a URN is itself,
// and "" stays "".
func TokenTypeURN(t string) string {
	if u, ok := shortTokenTypes[t]; ok {
		return u
	}
	return t
}

// SubjectToken says which token of the subject grant a token_exchange
// grant sends, and as which type: its id token when subject_token_type is
// id_token (or the id_token URN), else its access token.
func (g Grant) SubjectToken() (idToken bool, tokenType string) {
	t := TokenTypeURN(g.SubjectTokenType)
	if t == "" {
		t = oauth.TokenTypeAccess
	}
	return t == oauth.TokenTypeID, t
}

// ActorToken is SubjectToken for the actor grant; tokenType is "" when
// there is no actor_grant.
func (g Grant) ActorToken() (idToken bool, tokenType string) {
	if g.ActorGrant == "" {
		return false, ""
	}
	t := TokenTypeURN(g.ActorTokenType)
	if t == "" {
		t = oauth.TokenTypeAccess
	}
	return t == oauth.TokenTypeID, t
}

// applyGrantDefaults fills the defaults of the jwt_bearer and
// token_exchange grants' keys.
func (c *Config) applyGrantDefaults() {
	for name, g := range c.Grants {
		switch g.Type {
		case GrantJWTBearer:
			if g.Assertion != nil && g.Assertion.Lifetime == 0 {
				a := *g.Assertion
				a.Lifetime = DefaultAssertionLifetime
				g.Assertion = &a
			}
			if ia := g.IdentityAssertion; ia != nil && ia.SubjectTokenType == "" {
				n := *ia
				n.SubjectTokenType = TokenTypeIDToken
				g.IdentityAssertion = &n
			}
		case GrantTokenExchange:
			if g.SubjectTokenType == "" {
				g.SubjectTokenType = TokenTypeAccessToken
			}
			if g.ActorGrant != "" && g.ActorTokenType == "" {
				g.ActorTokenType = TokenTypeAccessToken
			}
			// Sent as it is: the short names become their URNs here.
			g.RequestedTokenType = TokenTypeURN(g.RequestedTokenType)
		}
		c.Grants[name] = g
	}
}

// confidential reports whether a client has a credential of its own.
func confidential(cl Client) bool {
	return hasClientSecret(cl) || hasPrivateKey(cl) || hasTLSCert(cl)
}

// checkGrantTypeKeys refuses keys that belong to another grant type.
func checkGrantTypeKeys(p *problems, path string, g Grant) {
	if g.Type != GrantJWTBearer && g.Assertion != nil {
		p.errorf(path+".assertion", "applies to the jwt_bearer grant only (this grant is %s)", typeName(g.Type))
	}
	if g.Type != GrantJWTBearer && g.IdentityAssertion != nil {
		p.errorf(path+".identity_assertion", "applies to the jwt_bearer grant only (this grant is %s)", typeName(g.Type))
	}
	if g.Type == GrantTokenExchange {
		return
	}
	var keys []string
	for _, k := range []struct {
		key string
		set bool
	}{
		{"subject_grant", g.SubjectGrant != ""},
		{"subject_token_type", g.SubjectTokenType != ""},
		{"actor_grant", g.ActorGrant != ""},
		{"actor_token_type", g.ActorTokenType != ""},
		{"requested_token_type", g.RequestedTokenType != ""},
		{"audience", len(g.Audience) > 0},
		{"resource", len(g.Resource) > 0},
	} {
		if k.set {
			keys = append(keys, k.key)
		}
	}
	if len(keys) > 0 {
		p.errorf(path, "%s apply to the token_exchange grant only (this grant is %s)", strings.Join(keys, ", "), typeName(g.Type))
	}
}

func typeName(t string) string {
	if t == "" {
		return "of no type"
	}
	return t
}

// validateJWTBearer checks a jwt_bearer grant's assertion; pv is its
// provider (named provider).
func validateJWTBearer(p *problems, path string, g Grant, pv Provider, provider string) {
	a := g.Assertion
	if a == nil {
		p.errorf(path, "the jwt_bearer grant needs an assertion: {private_key_file or private_key_credential, issuer, subject, audience, ...}, or an identity_assertion from an identity provider")
		return
	}
	ap := path + ".assertion"
	switch {
	case a.PrivateKeyFile != "" && a.PrivateKeyCredential != "":
		p.errorf(ap, "give private_key_file or private_key_credential, not both")
	case a.PrivateKeyFile == "" && a.PrivateKeyCredential == "" && a.Key.Signer == nil:
		p.errorf(ap, "needs private_key_file or private_key_credential (a PEM private key or a service-account JSON key file)")
	}
	if a.PrivateKeyFile != "" && !filepath.IsAbs(a.PrivateKeyFile) {
		p.errorf(ap+".private_key_file", "%q must be an absolute path", a.PrivateKeyFile)
	}
	if a.PrivateKeyCredential != "" {
		checkCredentialName(p, ap+".private_key_credential", a.PrivateKeyCredential)
	}
	if a.SigningAlg != "" && !slices.Contains(keyAlgs, a.SigningAlg) {
		p.errorf(ap+".signing_alg", "%q is not one of %s", a.SigningAlg, strings.Join(keyAlgs, ", "))
	}
	switch {
	case a.Lifetime < 0:
		p.errorf(ap+".lifetime", "%s must not be negative", a.Lifetime)
	case a.Lifetime > MaxAssertionLifetime:
		p.errorf(ap+".lifetime", "%s is longer than the maximum, %s", a.Lifetime, MaxAssertionLifetime)
	case a.Lifetime > LongAssertionLifetime:
		p.warnf(ap+".lifetime", "%s: whoever holds an assertion can use it that long; one request needs a few minutes at most (default %s)", a.Lifetime, DefaultAssertionLifetime)
	}
	if why := misaddressed(a.Audience, pv, provider); why != "" {
		p.errorf(ap+".audience", "%s", why)
	}
	for _, k := range sortedKeys(a.Claims) {
		if slices.Contains(reservedClaims, k) {
			p.errorf(ap+".claims."+k, "tokend sets %s itself (%s cannot be set in claims; use issuer, subject, audience and lifetime)", k, strings.Join(reservedClaims, ", "))
		}
	}
	for _, f := range []struct{ key, v string }{{"issuer", a.Issuer}, {"subject", a.Subject}, {"audience", a.Audience}} {
		if strings.TrimSpace(f.v) != f.v || strings.ContainsAny(f.v, "\n\t") {
			p.errorf(ap+"."+f.key, "%q must not contain spaces around it or control characters", f.v)
		}
	}
	// Without a key file to read (Validate on a Config built in code), the
	// issuer cannot come from a service-account key: it must be set.
	if a.Key.Signer != nil && a.Issuer == "" && a.ServiceAccount == nil {
		p.errorf(ap+".issuer", "must be set")
	}
}

// validateTokenExchange checks a token_exchange grant: its subject and
// actor grants exist, its token types and URIs are well formed.
func (c *Config) validateTokenExchange(p *problems, path, name string, g Grant) {
	for _, ref := range []struct{ key, v string }{{"subject_grant", g.SubjectGrant}, {"actor_grant", g.ActorGrant}} {
		switch _, ok := c.Grants[ref.v]; {
		case ref.v == "" && ref.key == "subject_grant":
			p.errorf(path+".subject_grant", "the token_exchange grant needs subject_grant: the grant whose token is exchanged")
		case ref.v == "":
		case ref.v == name:
			p.errorf(path+"."+ref.key, "names the grant itself")
		case !ok:
			p.errorf(path+"."+ref.key, "grant %q is not defined under grants%s", ref.v, definedList(c.Grants))
		}
	}
	checkTokenType(p, path+".subject_token_type", g.SubjectTokenType, false)
	for _, ref := range []struct{ key, grant, typ string }{
		{"subject_token_type", g.SubjectGrant, g.SubjectTokenType},
		{"actor_token_type", g.ActorGrant, g.ActorTokenType},
	} {
		if src, ok := c.Grants[ref.grant]; ok && TokenTypeURN(ref.typ) == oauth.TokenTypeID &&
			(src.Type == GrantClientCredentials || src.Type == GrantJWTBearer) {
			p.warnf(path+"."+ref.key, "is id_token but grant %q is %s, which gets no id token: the exchange will fail", ref.grant, src.Type)
		}
	}
	if g.ActorGrant == "" && g.ActorTokenType != "" {
		p.errorf(path+".actor_token_type", "is set but there is no actor_grant")
	} else {
		checkTokenType(p, path+".actor_token_type", g.ActorTokenType, false)
	}
	checkTokenType(p, path+".requested_token_type", g.RequestedTokenType, true)
	for i, a := range g.Audience {
		if a == "" || strings.ContainsAny(a, " \t\n") {
			p.errorf(fmt.Sprintf("%s.audience[%d]", path, i), "%q is not a valid audience (no spaces)", a)
		}
	}
	for i, r := range g.Resource {
		u, err := url.Parse(r)
		switch {
		case err != nil || !u.IsAbs() || (u.Host == "" && u.Opaque == ""):
			p.errorf(fmt.Sprintf("%s.resource[%d]", path, i), "%q is not an absolute URI (RFC 8707)", r)
		case u.Fragment != "":
			p.errorf(fmt.Sprintf("%s.resource[%d]", path, i), "%q must not have a fragment (RFC 8707)", r)
		}
	}
}

// checkTokenType checks a token type: a short name or a URN. Only a
// requested token type may be refresh_token or jwt: tokend holds access
// and id tokens of its grants.
func checkTokenType(p *problems, path, t string, requested bool) {
	switch {
	case t == "", strings.HasPrefix(t, "urn:") && len(t) > len("urn:") && !strings.ContainsAny(t, " \t\n"):
	case t == TokenTypeAccessToken, t == TokenTypeIDToken:
	case requested && (t == "refresh_token" || t == "jwt"):
	default:
		names := "access_token, id_token"
		if requested {
			names = "access_token, refresh_token, id_token, jwt"
		}
		p.errorf(path, "%q is not one of %s or a urn: token type", t, names)
	}
}

// checkGrantCycles refuses token_exchange grants whose subject_grant and
// actor_grant chains (and identity assertions' subject_grant) come back to
// themselves: none could ever be obtained. Each cycle is reported once, at
// its first grant in name order.
func (c *Config) checkGrantCycles(p *problems) {
	next := func(name string) []string {
		g := c.Grants[name]
		srcs := []string{identityAssertionSubject(g)}
		if g.Type == GrantTokenExchange {
			srcs = []string{g.SubjectGrant, g.ActorGrant}
		}
		var out []string
		for _, n := range srcs {
			if _, ok := c.Grants[n]; ok && n != name && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	const (
		unseen = iota
		active
		done
	)
	state := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		state[n] = active
		stack = append(stack, n)
		for _, m := range next(n) {
			switch state[m] {
			case unseen:
				visit(m)
			case active:
				i := slices.Index(stack, m)
				cycle := append(slices.Clone(stack[i:]), m)
				key := cycleKey(cycle[:len(cycle)-1])
				if !reported[key] {
					reported[key] = true
					p.errorf("grants."+m, "grants form a cycle: %s (a subject or actor grant cannot depend on the grant itself)", strings.Join(cycle, " → "))
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
	}
	for _, n := range sortedKeys(c.Grants) {
		if state[n] == unseen {
			visit(n)
		}
	}
}

func cycleKey(names []string) string {
	s := slices.Clone(names)
	slices.Sort(s)
	return strings.Join(s, "\x00")
}

// resolveAssertions reads the jwt_bearer grants' keys and fills the
// defaults a service-account key file gives: issuer and subject its
// client_email, audience its token_uri, key_id its private_key_id.
func (c *Config) resolveAssertions(p *problems) {
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		a := g.Assertion
		if g.Type != GrantJWTBearer || a == nil || a.Key.Signer != nil {
			continue
		}
		if a.PrivateKeyFile == "" && a.PrivateKeyCredential == "" || a.PrivateKeyFile != "" && a.PrivateKeyCredential != "" ||
			a.PrivateKeyFile != "" && !filepath.IsAbs(a.PrivateKeyFile) {
			continue // reported by validate
		}
		ap := "grants." + name + ".assertion"
		key := sourceKey(ap, "private_key_file", a.PrivateKeyFile, "private_key_credential")
		k, sa, ok := readSigningKey(p, key, a.PrivateKeyFile, a.PrivateKeyCredential, a.KeyID, a.SigningAlg)
		if !ok {
			continue
		}
		na := *a
		na.Key, na.ServiceAccount = k, sa
		if sa != nil {
			if na.Issuer == "" {
				na.Issuer = sa.ClientEmail
			}
			if na.Audience == "" {
				na.Audience = sa.TokenURI
				pname := c.Clients[g.Client].Provider
				if why := misaddressed(sa.TokenURI, c.Providers[pname], pname); why != "" {
					p.errorf(key, "the key file's token_uri %s (set assertion.audience to the token endpoint, or use the provider the key was made for)", why)
					continue
				}
			}
		}
		if na.Subject == "" {
			na.Subject = na.Issuer
		}
		if na.Issuer == "" {
			p.errorf(ap+".issuer", "must be set (only a service-account key file gives a default)")
			continue
		}
		g.Assertion = &na
		c.Grants[name] = g
	}
}

// explainExtGrant writes the setup of a jwt_bearer or token_exchange grant
// and of any grant's dpop binding.
func (c *Config) explainExtGrant(w func(format string, args ...any), g Grant) {
	if a := g.Assertion; g.Type == GrantJWTBearer && a != nil {
		src := a.PrivateKeyFile
		if src == "" {
			src = "credential " + a.PrivateKeyCredential
		}
		if a.ServiceAccount != nil {
			src += " (service account)"
		}
		aud := a.Audience
		if aud == "" {
			aud = "the token endpoint"
		}
		iss := a.Issuer
		if iss == "" {
			iss = "(from the key file)"
		}
		sub := a.Subject
		if sub == "" {
			sub = "the issuer"
		}
		w("    assertion: iss %s, sub %s, aud %s, lifetime %s\n", iss, sub, aud, a.Lifetime)
		if a.Key.Signer != nil {
			w("    assertion key: %s, %s\n", src, signingKeyText(a.Key))
		} else {
			w("    assertion key: %s\n", src)
		}
		if len(a.Claims) > 0 {
			w("    assertion claims: %s\n", strings.Join(sortedKeys(a.Claims), ", "))
		}
	}
	if ia := g.IdentityAssertion; g.Type == GrantJWTBearer && ia != nil {
		c.explainIdentityAssertion(w, g, ia)
	}
	if g.Type == GrantTokenExchange {
		w("    exchanges: %s of %s\n", g.SubjectTokenType, c.grantChain(g.SubjectGrant))
		if g.ActorGrant != "" {
			w("    actor:     %s of %s\n", g.ActorTokenType, c.grantChain(g.ActorGrant))
		}
		if g.RequestedTokenType != "" {
			w("    requested token type: %s\n", g.RequestedTokenType)
		}
		if len(g.Audience) > 0 {
			w("    audience: %s\n", strings.Join(g.Audience, " "))
		}
		if len(g.Resource) > 0 {
			w("    resource: %s\n", strings.Join(g.Resource, " "))
		}
	}
	if g.DPoP {
		w("    dpop:     DPoP-bound tokens (ES256 key kept by tokend, sealed in the store)\n")
	}
}

// grantChain describes a subject grant and the grants it exchanges in
// turn: "b (token_exchange of a (client_credentials))".
func (c *Config) grantChain(name string) string {
	var b strings.Builder
	seen := map[string]bool{}
	depth := 0
	for name != "" && !seen[name] {
		seen[name] = true
		g, ok := c.Grants[name]
		if !ok {
			b.WriteString(name + " (undefined)")
			break
		}
		b.WriteString(name + " (" + g.Type)
		depth++
		if g.Type != GrantTokenExchange {
			break
		}
		b.WriteString(" of ")
		name = g.SubjectGrant
	}
	b.WriteString(strings.Repeat(")", depth))
	return b.String()
}
