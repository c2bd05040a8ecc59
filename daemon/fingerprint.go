package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tokend/tokend/config"
)

// Fingerprint hashes what of grant name's definition matters to its
// provider: the provider's issuer and endpoints, the client's identity and
// authentication, the grant's type, scopes, parameters and the grants it
// exchanges. Readers, sinks, hooks, match rules, the forced schedule, the
// redirect URI (each host's callback listener; a refresh does not use it)
// and a registration's client_name are each host's own and are left out,
// as are secrets (a rotated client
// secret must not look like a different grant; the hash must not be a
// check of a secret either).
func Fingerprint(cfg *config.Config, name string) string {
	g := cfg.Grants[name]
	c := cfg.Clients[g.Client]
	p := cfg.Providers[c.Provider]
	type assertion struct {
		Issuer, Subject, Audience, KeyID, SigningAlg string
		Lifetime                                     time.Duration
		Claims                                       map[string]any
	}
	var as *assertion
	if a := g.Assertion; a != nil {
		as = &assertion{a.Issuer, a.Subject, a.Audience, a.KeyID, a.SigningAlg, a.Lifetime, a.Claims}
	}
	// An identity assertion: the identity provider, tokend's client
	// there and what is exchanged (not the subject token itself). Absent
	// from the JSON when unset, so other grants hash as before.
	type identityAssertion struct {
		Issuer, Token, ClientID, AuthMethod string
		SubjectGrant, SubjectType, Audience string
		Resource                            []string
	}
	var ia *identityAssertion
	if a := g.IdentityAssertion; a != nil {
		ic := cfg.Clients[a.Client]
		ip := cfg.Providers[ic.Provider]
		ia = &identityAssertion{ip.Issuer, ip.TokenEndpoint, ic.ClientID, string(ic.AuthMethod),
			a.SubjectGrant, a.SubjectTokenType, a.Audience, a.Resource}
	}
	v := struct {
		Provider                     string
		Issuer, Authz, Token, Revoke string
		Device, Registration         string
		Client, ClientID, AuthMethod string
		KeyID, SigningAlg, AssertAud string
		Type                         string
		Scopes                       []string
		AuthParams, TokenParams      map[string]string
		Username                     string
		DPoP                         bool
		Assertion                    *assertion
		SubjectGrant, SubjectType    string
		ActorGrant, ActorType        string
		RequestedType                string
		Audience, Resource           []string
		IdentityAssertion            *identityAssertion `json:",omitempty"`
	}{
		c.Provider, p.Issuer, p.AuthorizationEndpoint, p.TokenEndpoint, p.RevocationEndpoint,
		p.DeviceAuthorizationEndpoint, p.RegistrationEndpoint,
		g.Client, c.ClientID, string(c.AuthMethod),
		c.KeyID, c.SigningAlg, c.AssertionAudience,
		g.Type, g.Scopes, g.AuthParams, g.TokenParams, g.Username, g.DPoP, as,
		g.SubjectGrant, g.SubjectTokenType, g.ActorGrant, g.ActorTokenType, g.RequestedTokenType,
		g.Audience, g.Resource, ia,
	}
	// encoding/json writes map keys sorted: the same definition always
	// hashes the same.
	b, err := json.Marshal(v)
	if err != nil {
		// Only Assertion.Claims can fail (a value JSON cannot hold);
		// config validation refuses those. Hash what is printable.
		b = fmt.Appendf(nil, "%v", v)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
