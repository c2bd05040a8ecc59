package daemon

// Protected-resource grants: the RFC 8707 resource every request of such a
// grant names, and the scopes it asks for.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

// grantParams are params (a grant's auth_params or token_params) with,
// for a protected_resource grant, the resource (RFC 8707) its token is
// for: on the authorization request, the code exchange, every refresh and
// every client-credentials request.
func (d *Daemon) grantParams(g *grant, params map[string]string) oauth.Params {
	res := d.resourceOf(g)
	if res == "" {
		return oauth.Params(params)
	}
	out := make(oauth.Params, len(params)+1)
	maps.Copy(out, params)
	out["resource"] = res
	return out
}

// resourceOf is the resource g's requests name: the protected resource's
// own identifier as its metadata gave it, else the configured URL; "" for
// a grant that names none.
func (d *Daemon) resourceOf(g *grant) string {
	gc := g.cfg()
	if gc.ProtectedResource == "" {
		return ""
	}
	if f := d.resourceFoundFor(g); f != nil && f.Resource != "" {
		return f.Resource
	}
	return gc.ProtectedResource
}

// grantScopes are the scopes g asks for: configured ones win; a
// protected_resource grant without them asks for those discovery chose,
// without offline_access for a grant that gets no refresh token (a
// machine grant obtains its token again instead; a server may refuse the
// scope to a client with no user).
func (d *Daemon) grantScopes(g *grant) []string {
	gc := g.cfg()
	if len(gc.Scopes) > 0 || gc.ProtectedResource == "" {
		return gc.Scopes
	}
	if f := d.resourceFoundFor(g); f != nil {
		s := f.Scopes(nil)
		if !renewsWithRefreshToken(g.typ) {
			s = slices.DeleteFunc(s, func(x string) bool { return x == oauth.ScopeOfflineAccess })
		}
		return s
	}
	return nil
}

// resourceRecord is what the store caches of a discovery from a
// protected resource, under the derived provider's name: the discovery,
// and what it was made for, which a cached one must still match.
type resourceRecord struct {
	Resource            string                   `json:"configured_resource"`
	AuthorizationServer string                   `json:"configured_authorization_server,omitempty"`
	Discovery           *oauth.ResourceDiscovery `json:"discovery"`
}

// resourceEndpoints discovers the authorization server of p, a provider
// derived from a protected resource (p.mu held): from the resource, or,
// when that fails, from the store's cache of the last discovery, checked
// again (it must be for the same resource and authorization server, and
// pass the rules of a fresh one).
func (d *Daemon) resourceEndpoints(ctx context.Context, p *providerRT) (oauth.Endpoints, error) {
	r := p.cfg.Resource
	dctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	base, err := d.clientHTTP(config.Client{}, p.cfg)
	if err != nil {
		return oauth.Endpoints{}, err
	}
	found, err := oauth.DiscoverResource(dctx, d.countingHTTP(base, p.name, EndpointDiscovery, nil), r.Resource,
		oauth.ResourceOptions{AuthorizationServer: r.AuthorizationServer})
	if err == nil {
		d.cacheDiscovered(p, resourceRecord{Resource: r.Resource, AuthorizationServer: r.AuthorizationServer, Discovery: found}, "resource metadata")
		d.log.Info("protected resource discovered", "grant", r.Grant, "resource", found.Resource, "issuer", found.Issuer,
			"token_endpoint", found.Endpoints.Token, "legacy", string(found.Legacy))
	} else {
		if oauth.ClassOf(err) == oauth.Configuration {
			// A refusal (metadata for another resource, an issuer that
			// is not the one asked, an http endpoint elsewhere) is not
			// overridden by an older answer.
			return oauth.Endpoints{}, err
		}
		if err = d.fallBackToCache(p, err, "resource metadata", func() (cerr error) {
			found, cerr = d.cachedResource(p)
			return cerr
		}); err != nil {
			return oauth.Endpoints{}, err
		}
	}
	p.found.Store(found)
	eps := found.Endpoints
	p.eps = &eps
	return eps, nil
}

// cachedResource reads p's cached discovery (resourceEndpoints). The store
// authenticates the record as it does cached endpoints; it must be for the
// configured resource and authorization server, and pass
// ResourceDiscovery.Check. An error names the check that failed.
func (d *Daemon) cachedResource(p *providerRT) (*oauth.ResourceDiscovery, error) {
	b, err := d.st.Provider(p.name)
	if err != nil {
		return nil, err
	}
	var rec resourceRecord
	if err := json.Unmarshal(b, &rec); err != nil || rec.Discovery == nil {
		return nil, fmt.Errorf("daemon: cached metadata of provider %s is not a resource discovery", p.name)
	}
	if rec.Resource != p.cfg.Resource.Resource || rec.AuthorizationServer != p.cfg.Resource.AuthorizationServer {
		return nil, fmt.Errorf("daemon: cached metadata of provider %s is for another resource or authorization server", p.name)
	}
	if err := rec.Discovery.Check(); err != nil {
		return nil, fmt.Errorf("daemon: cached metadata of provider %s: %w", p.name, err)
	}
	return rec.Discovery, nil
}

// resourceFoundFor is what discovery found for g's provider; nil when it
// has none (yet: providerFor discovers), or is not derived from a
// protected resource.
func (d *Daemon) resourceFoundFor(g *grant) *oauth.ResourceDiscovery {
	return d.foundOf(g.cfg().Client)
}

// foundOf is what discovery found for the provider of client; nil as for
// resourceFoundFor.
func (d *Daemon) foundOf(client string) *oauth.ResourceDiscovery {
	d.mu.RLock()
	c := d.clients[client]
	var p *providerRT
	if c != nil {
		p = d.providers[c.cfg.Provider]
	}
	d.mu.RUnlock()
	if p == nil {
		return nil
	}
	return p.found.Load()
}

// derivedIdentity is derivedClient for c, with what discovery found for
// its provider; ok is false for a client that is not derived, too.
func (d *Daemon) derivedIdentity(c *clientRT, eps oauth.Endpoints) (oauth.Client, bool, error) {
	if c.cfg.ForGrant == "" {
		return oauth.Client{}, false, nil
	}
	return derivedClient(c, d.foundOf(c.name), eps)
}

// derivedClient is the identity of a client derived from a
// protected_resource grant, when it needs no registration: its client
// metadata document, where the server takes one. ok is false when it must
// be registered; err says why it can be neither.
func derivedClient(c *clientRT, found *oauth.ResourceDiscovery, eps oauth.Endpoints) (cl oauth.Client, ok bool, err error) {
	doc := c.cfg.MetadataDocument
	if doc != "" && found != nil && found.ClientIDMetadataDocumentSupported {
		// The document's URL is the client_id; the server fetches the
		// document, which names no secret.
		return oauth.Client{ID: doc, AuthMethod: oauth.AuthNone, RedirectURI: c.cfg.RedirectURI}, true, nil
	}
	if eps.Registration != "" {
		return oauth.Client{}, false, nil
	}
	issuer := eps.Issuer
	var why string
	switch {
	case found != nil && found.ClientIDMetadataDocumentSupported:
		why = "it takes client metadata documents: set client_id_metadata_document on grant " + c.cfg.ForGrant + " (tokend check-config prints the document to publish), or name a pre-registered client"
	case doc != "":
		why = "it does not take client metadata documents (no client_id_metadata_document_supported), so " + doc + " cannot be used: name a pre-registered client (client:) on grant " + c.cfg.ForGrant
	default:
		why = "it takes no client metadata documents either: name a pre-registered client (client:) on grant " + c.cfg.ForGrant
	}
	return oauth.Client{}, false, &oauth.Error{Op: "register", Class: oauth.Configuration,
		Description: fmt.Sprintf("authorization server %s offers no dynamic client registration (no registration_endpoint); %s", issuer, why)}
}

// registrationOwner is the owner of a client's stored registration: its
// provider, and for a provider derived from a protected resource also the
// discovered issuer, so that a registration at one authorization server
// is never used at another the resource moved to.
func registrationOwner(c *clientRT, eps oauth.Endpoints) string {
	if c.cfg.ForGrant == "" && !config.IsDerived(c.cfg.Provider) {
		return c.cfg.Provider
	}
	return c.cfg.Provider + " " + eps.Issuer
}
