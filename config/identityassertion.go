package config

// Enterprise-managed authorization: a jwt_bearer grant whose assertion an
// identity provider issues, an Identity Assertion JWT Authorization Grant
// (ID-JAG), instead of one tokend signs. tokend exchanges a person's token
// at the identity provider (RFC 8693, requested_token_type id-jag, audience
// the grant's authorization server) and presents the ID-JAG there with the
// JWT-bearer grant. The person's token is another grant's (its id token,
// say, of an authorization_code grant at the identity provider) or a
// secret file's.

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/tokend/tokend/oauth"
)

// IdentityAssertion is the identity_assertion section of a jwt_bearer
// grant.
type IdentityAssertion struct {
	// Client is the client tokend is at the identity provider
	// (clients.*; its provider is the identity provider).
	Client string `yaml:"client"`
	// The token exchanged: SubjectGrant's current token (its id token
	// by default), or the contents of SubjectTokenFile or of the systemd
	// credential SubjectTokenCredential.
	SubjectGrant           string `yaml:"subject_grant"`
	SubjectTokenFile       string `yaml:"subject_token_file"`
	SubjectTokenCredential string `yaml:"subject_token_credential"`
	SubjectTokenType       string `yaml:"subject_token_type"` // id_token (default) | access_token | a URN
	// Audience is the issuer of the authorization server the ID-JAG is
	// for; default: the issuer of the grant's provider (configured or
	// discovered).
	Audience string `yaml:"audience"`
	// Resource lists the RFC 8707 resources the ID-JAG is for; default:
	// none, or the resource a protected_resource grant's requests name.
	Resource []string `yaml:"resource"`

	// SubjectToken is read from SubjectTokenFile or
	// SubjectTokenCredential; zero with SubjectGrant.
	SubjectToken oauth.Secret `yaml:"-"`
}

// SubjectTokenURN is the RFC 8693 type of the token exchanged: the
// id_token URN unless subject_token_type says otherwise.
func (ia IdentityAssertion) SubjectTokenURN() string {
	if ia.SubjectTokenType == "" {
		return oauth.TokenTypeID
	}
	return TokenTypeURN(ia.SubjectTokenType)
}

// identityAssertionSubject returns the grant whose token g's
// identity_assertion exchanges, "" when there is none.
func identityAssertionSubject(g Grant) string {
	if g.Type != GrantJWTBearer || g.IdentityAssertion == nil {
		return ""
	}
	return g.IdentityAssertion.SubjectGrant
}

// validateIdentityAssertion checks the identity_assertion of jwt_bearer
// grant name, whose provider is pv (providerOK: it is defined).
func (c *Config) validateIdentityAssertion(p *problems, path, name string, g Grant, pv Provider, providerOK bool) {
	ia := g.IdentityAssertion
	ip := path + ".identity_assertion"
	if g.Assertion != nil {
		p.errorf(path, "give assertion (signed by tokend) or identity_assertion (issued by an identity provider), not both")
	}
	idp, ok := c.Clients[ia.Client]
	switch {
	case ia.Client == "":
		p.errorf(ip+".client", "must name the client tokend is at the identity provider")
	case !ok:
		p.errorf(ip+".client", "client %q is not defined under clients%s", ia.Client, definedList(c.Clients))
	case idp.Dynamic():
		p.errorf(ip+".client", "client %q has no client_id: the identity provider must know the client (tokend does not register at it)", ia.Client)
	default:
		switch ipv, ok := c.Providers[idp.Provider]; {
		case !ok:
			// reported with the client
		case ipv.TokenEndpoint == "" && ipv.Issuer == "":
			p.errorf(ip+".client", "the identity provider %q of client %q needs a token_endpoint or an issuer", idp.Provider, ia.Client)
		}
	}
	n := 0
	for _, s := range []string{ia.SubjectGrant, ia.SubjectTokenFile, ia.SubjectTokenCredential} {
		if s != "" {
			n++
		}
	}
	if n == 0 && !ia.SubjectToken.IsZero() {
		n = 1 // a Config built in code holds the token itself
	}
	switch {
	case n == 0:
		p.errorf(ip, "needs the token to exchange at the identity provider: subject_grant, subject_token_file or subject_token_credential")
	case n > 1:
		p.errorf(ip, "give one of subject_grant, subject_token_file and subject_token_credential")
	}
	switch src, ok := c.Grants[ia.SubjectGrant]; {
	case ia.SubjectGrant == "":
	case ia.SubjectGrant == name:
		p.errorf(ip+".subject_grant", "names the grant itself")
	case !ok:
		p.errorf(ip+".subject_grant", "grant %q is not defined under grants%s", ia.SubjectGrant, definedList(c.Grants))
	case ia.SubjectTokenURN() == oauth.TokenTypeID && (src.Type == GrantClientCredentials || src.Type == GrantJWTBearer):
		p.warnf(ip+".subject_token_type", "is id_token but grant %q is %s, which gets no id token: the exchange will fail", ia.SubjectGrant, src.Type)
	}
	if ia.SubjectTokenFile != "" && !filepath.IsAbs(ia.SubjectTokenFile) {
		p.errorf(ip+".subject_token_file", "%q must be an absolute path", ia.SubjectTokenFile)
	}
	if ia.SubjectTokenCredential != "" {
		checkCredentialName(p, ip+".subject_token_credential", ia.SubjectTokenCredential)
	}
	checkTokenType(p, ip+".subject_token_type", ia.SubjectTokenType, false)
	switch a := ia.Audience; {
	case a == "":
		// A provider derived from a protected resource has the issuer
		// discovery finds.
		if providerOK && pv.Issuer == "" && pv.Resource == nil {
			p.errorf(ip+".audience", "must be set: provider %q has no issuer, and the ID-JAG is addressed to the issuer of the authorization server that takes it", c.Clients[g.Client].Provider)
		}
	case oauth.CheckEndpointURL(a) != nil:
		p.errorf(ip+".audience", "%q is not an https URL (or http to a loopback host): the issuer of the grant's authorization server", a)
	case providerOK && pv.Issuer != "" && !oauth.AudienceOf(a, "", pv.Issuer):
		p.errorf(ip+".audience", "%s is not the issuer %s of provider %q, where the ID-JAG is sent: it would be issued for one server and given to another", a, pv.Issuer, c.Clients[g.Client].Provider)
	}
	for i, r := range ia.Resource {
		u, err := url.Parse(r)
		switch {
		case err != nil || !u.IsAbs() || (u.Host == "" && u.Opaque == ""):
			p.errorf(fmt.Sprintf("%s.resource[%d]", ip, i), "%q is not an absolute URI (RFC 8707)", r)
		case u.Fragment != "":
			p.errorf(fmt.Sprintf("%s.resource[%d]", ip, i), "%q must not have a fragment (RFC 8707)", r)
		}
	}
}

// resolveIdentityAssertions reads the subject tokens of identity
// assertions from their files and credentials, with the rules of other
// secrets.
func (c *Config) resolveIdentityAssertions(p *problems) {
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		ia := g.IdentityAssertion
		if g.Type != GrantJWTBearer || ia == nil || !ia.SubjectToken.IsZero() ||
			(ia.SubjectTokenFile == "") == (ia.SubjectTokenCredential == "") || ia.SubjectGrant != "" ||
			ia.SubjectTokenFile != "" && !filepath.IsAbs(ia.SubjectTokenFile) {
			continue // nothing to read, or reported by validate
		}
		key := sourceKey("grants."+name+".identity_assertion", "subject_token_file", ia.SubjectTokenFile, "subject_token_credential")
		s, ok := readSecret(p, key, ia.SubjectTokenFile, ia.SubjectTokenCredential)
		if !ok {
			continue
		}
		n := *ia
		n.SubjectToken = oauth.NewSecret(s)
		g.IdentityAssertion = &n
		c.Grants[name] = g
	}
}

// explainIdentityAssertion writes where a jwt_bearer grant's identity
// assertion comes from.
func (c *Config) explainIdentityAssertion(w func(format string, args ...any), g Grant, ia *IdentityAssertion) {
	idp := c.Clients[ia.Client].Provider
	src := ""
	switch {
	case ia.SubjectGrant != "":
		src = "the " + ia.SubjectTokenType + " of " + c.grantChain(ia.SubjectGrant)
	case ia.SubjectTokenFile != "":
		src = ia.SubjectTokenType + " in " + ia.SubjectTokenFile
	default:
		src = ia.SubjectTokenType + " in credential " + ia.SubjectTokenCredential
	}
	w("    identity assertion: ID-JAG from %s (client %s), exchanging %s\n", idp, ia.Client, src)
	aud := ia.Audience
	if aud == "" {
		aud = "the issuer of the grant's provider"
	}
	w("    identity assertion audience: %s\n", aud)
	switch {
	case len(ia.Resource) > 0:
		w("    identity assertion resource: %s\n", strings.Join(ia.Resource, " "))
	case g.ProtectedResource != "":
		w("    identity assertion resource: the protected resource's\n")
	}
}
