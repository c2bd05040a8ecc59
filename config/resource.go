package config

// Resource-first grants: a grant that names the protected resource its
// token is for (protected_resource) instead of a provider. Its
// authorization server is discovered from the resource at runtime, so the
// configuration gives it a provider of its own, derived from the grant
// (ResourceDiscovery says what to discover), and, when the grant names no
// client, a client of its own too, registered at runtime. Derived names
// contain a character configured names cannot, so no other grant can use
// them; check-config shows them.

import (
	"net/url"
	"slices"
	"strings"

	"github.com/tokend/tokend/oauth"
)

// ResourceDiscovery is what a derived provider's endpoints are discovered
// from: the protected resource, and optionally which of its authorization
// servers to use.
type ResourceDiscovery struct {
	Grant               string // the grant the provider was derived for
	Resource            string // protected_resource
	AuthorizationServer string // authorization_server; "" the first the resource lists
}

// derivedPrefix starts the names of derived providers and clients: ':' is
// not allowed in a configured name (nameRE).
const derivedPrefix = "resource:"

// DerivedName is the name of the provider, and of the client, that a
// protected_resource grant called grant gets from the configuration.
func DerivedName(grant string) string { return derivedPrefix + grant }

// IsDerived reports whether name is a derived provider's or client's.
func IsDerived(name string) bool { return strings.HasPrefix(name, derivedPrefix) }

// ResourceGrantTypes are the grant types a protected_resource grant may
// have; the first is its default.
var ResourceGrantTypes = []string{GrantAuthorizationCode, GrantClientCredentials, GrantJWTBearer}

// applyResourceDefaults gives every protected_resource grant its type
// (authorization_code by default), its derived provider and, without a
// client, its derived client. A configured client without a provider,
// named by protected_resource grants, gets the derived provider of the
// first of them (in name order); validation refuses it for the others.
func (c *Config) applyResourceDefaults() {
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		if g.ProtectedResource == "" {
			continue
		}
		if g.Type == "" {
			g.Type = ResourceGrantTypes[0]
		}
		derived := DerivedName(name)
		if c.Providers == nil {
			c.Providers = map[string]Provider{}
		}
		c.Providers[derived] = Provider{Resource: &ResourceDiscovery{
			Grant: name, Resource: g.ProtectedResource, AuthorizationServer: g.AuthorizationServer,
		}}
		switch cl, ok := c.Clients[g.Client]; {
		case g.Client == "" || g.Client == derived:
			if c.Clients == nil {
				c.Clients = map[string]Client{}
			}
			prev := c.Clients[derived] // ApplyDefaults may run twice: keep what it set
			c.Clients[derived] = Client{Provider: derived, ForGrant: name, MetadataDocument: g.ClientIDMetadataDocument,
				RedirectURI: prev.RedirectURI}
			g.Client = derived
		case ok && cl.Provider == "":
			cl.Provider = derived
			c.Clients[g.Client] = cl
		}
		c.Grants[name] = g
	}
}

// validateResource checks the resource keys of grant g (called name, at
// path); cl is its client. Its proxy is checked with the others
// (validateProxies).
func (c *Config) validateResource(p *problems, path, name string, g Grant, cl Client, clientOK bool) {
	if g.ProtectedResource == "" {
		for _, k := range []struct{ key, v string }{
			{"authorization_server", g.AuthorizationServer},
			{"client_id_metadata_document", g.ClientIDMetadataDocument},
		} {
			if k.v != "" {
				p.errorf(path+"."+k.key, "applies to protected_resource grants only")
			}
		}
		if pv, ok := c.Providers[cl.Provider]; clientOK && ok && pv.Resource != nil {
			p.errorf(path+".client", "client %q has no provider of its own: it serves protected_resource grant %q, whose authorization server is discovered; give the client a provider", g.Client, pv.Resource.Grant)
		}
		return
	}
	checkResourceURL(p, path+".protected_resource", g.ProtectedResource)
	if g.AuthorizationServer != "" {
		checkResourceURL(p, path+".authorization_server", g.AuthorizationServer)
	}
	if !slices.Contains(ResourceGrantTypes, g.Type) {
		p.errorf(path+".type", "a protected_resource grant is one of %s, not %s", strings.Join(ResourceGrantTypes, ", "), typeName(g.Type))
	}
	for _, k := range []struct {
		key    string
		params map[string]string
	}{{"auth_params", g.AuthParams}, {"token_params", g.TokenParams}} {
		if _, ok := k.params["resource"]; ok {
			p.errorf(path+"."+k.key+".resource", "is set by protected_resource (sent as the resource of every request)")
		}
	}
	if d := g.ClientIDMetadataDocument; d != "" {
		if err := oauth.CheckClientIDMetadataURL(d); err != nil {
			p.errorf(path+".client_id_metadata_document", "%v", err)
		}
		if g.Client != DerivedName(name) {
			p.errorf(path+".client_id_metadata_document", "applies to a grant without client: client %q is pre-registered and would always be used instead", g.Client)
		}
		if g.Type != GrantAuthorizationCode {
			p.errorf(path+".client_id_metadata_document", "applies to authorization_code grants only (a metadata document's client has no secret)")
		}
	}
	// A configured client without a provider gets the derived provider of
	// the first grant naming it; another grant cannot share it, as its
	// authorization server is discovered from another resource.
	if pv, ok := c.Providers[cl.Provider]; clientOK && ok && pv.Resource != nil && pv.Resource.Grant != name {
		p.errorf(path+".client", "client %q has no provider and already serves protected_resource grant %q: give it a provider to share it, or give each grant its own client", g.Client, pv.Resource.Grant)
	}
}

// checkResourceURL checks a protected resource's or an authorization
// server's URL: the rule of every endpoint (https, or http to a loopback
// host), no fragment.
func checkResourceURL(p *problems, path, raw string) {
	if err := oauth.CheckEndpointURL(raw); err != nil {
		p.errorf(path, "%v", err)
		return
	}
	if u, err := url.Parse(raw); err == nil && u.Fragment != "" {
		p.errorf(path, "%q must not have a fragment", raw)
	}
}

// explainResource writes how a protected_resource grant gets its
// authorization server and client.
func (c *Config) explainResource(w func(format string, args ...any), name string, g Grant) {
	if g.ProtectedResource == "" {
		return
	}
	w("    protected resource: %s (sent as the resource of every request)\n", g.ProtectedResource)
	if pv := c.Clients[g.Client].Provider; !IsDerived(pv) {
		w("    authorization server: provider %s, as configured (nothing is discovered from the resource)\n", pv)
	} else {
		as := "the first the resource lists"
		if g.AuthorizationServer != "" {
			as = g.AuthorizationServer
		}
		w("    authorization server: discovered from the resource: %s\n", as)
	}
	if g.Client != DerivedName(name) {
		w("    client: %s (pre-registered)\n", g.Client)
		return
	}
	if g.ClientIDMetadataDocument == "" {
		w("    client: registered dynamically at the authorization server\n")
		return
	}
	w("    client: %s, where the server takes metadata documents; else registered dynamically\n", g.ClientIDMetadataDocument)
	doc, err := c.ClientMetadataDocumentFor(name)
	if err != nil {
		w("    (no document to publish: %v)\n", err)
		return
	}
	w("    publish this document at that address:\n")
	for _, line := range strings.Split(strings.TrimSuffix(string(doc), "\n"), "\n") {
		w("      %s\n", line)
	}
}

// ClientMetadataDocumentFor is the client metadata document grant name's
// client_id_metadata_document must serve (oauth.ClientMetadataDocument,
// with the redirect URI of its client); nil when it names none.
func (c *Config) ClientMetadataDocumentFor(name string) ([]byte, error) {
	g, ok := c.Grants[name]
	if !ok || g.ClientIDMetadataDocument == "" {
		return nil, nil
	}
	cl := c.Clients[g.Client]
	return oauth.ClientMetadataDocument(g.ClientIDMetadataDocument, cl.RedirectURI, cl.ClientName)
}
