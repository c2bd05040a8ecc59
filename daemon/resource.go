package daemon

// Protected-resource grants: the RFC 8707 resource every request of such a
// grant names, and the scopes it asks for.

import (
	"maps"

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
// protected_resource grant without them asks for those discovery chose.
func (d *Daemon) grantScopes(g *grant) []string {
	gc := g.cfg()
	if len(gc.Scopes) > 0 || gc.ProtectedResource == "" {
		return gc.Scopes
	}
	if f := d.resourceFoundFor(g); f != nil {
		return f.Scopes
	}
	return nil
}

// resourceFound is what discovery from a protected resource found: the
// authorization server's endpoints and what the daemon decides by (the
// resource's identifier, the scopes to ask for, client registration). It
// is cached in the store under the derived provider's name, as discovered
// endpoints are.
type resourceFound struct {
	Endpoints oauth.Endpoints `json:"endpoints"`
	// Resource is the protected resource metadata's resource.
	Resource string `json:"resource,omitempty"`
	// Scopes are the scopes to ask for when none are configured.
	Scopes []string `json:"scopes,omitempty"`
	// MetadataDocuments is the server's
	// client_id_metadata_document_supported.
	MetadataDocuments bool `json:"client_id_metadata_document_supported,omitempty"`
	// AuthMethods is the server's token_endpoint_auth_methods_supported.
	AuthMethods []string `json:"token_endpoint_auth_methods_supported,omitempty"`
}

// resourceFoundFor is what discovery found for g's provider; nil when it
// has none (yet), or is not derived from a protected resource.
func (d *Daemon) resourceFoundFor(g *grant) *resourceFound {
	d.mu.RLock()
	c := d.clients[g.cfg().Client]
	var p *providerRT
	if c != nil {
		p = d.providers[c.cfg.Provider]
	}
	d.mu.RUnlock()
	if p == nil || !p.mu.TryLock() {
		return nil // being discovered: whoever needs it waits in providerFor first
	}
	defer p.mu.Unlock()
	return p.found
}
