package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// discoveryTimeout bounds one discovery request; a provider that is down
// at start falls back to the endpoints cached in the store.
const discoveryTimeout = 10 * time.Second

// providerRT resolves a provider's endpoints once: explicit ones, or
// discovered from its issuer and cached in the store.
type providerRT struct {
	name string
	cfg  config.Provider

	mu  sync.Mutex
	eps *oauth.Endpoints
	// found is what discovery from a protected resource found, for a
	// provider derived from a protected_resource grant (resource.go); set
	// with eps, read without mu (nil until then).
	found atomic.Pointer[oauth.ResourceDiscovery]
}

// clientRT resolves a client once: configured credentials, or a dynamic
// registration kept in the store.
type clientRT struct {
	name string
	cfg  config.Client

	mu   sync.Mutex
	prov *oauth.Provider
}

// providerFor returns the protocol client of g's client at g's provider,
// discovering endpoints and registering the client on first use.
func (d *Daemon) providerFor(ctx context.Context, g *grant) (*oauth.Provider, error) {
	return d.clientProvider(ctx, g.name, g.cfg().Client)
}

// clientProvider returns the protocol client of client name at its
// provider, for grant (named in errors), as providerFor does.
func (d *Daemon) clientProvider(ctx context.Context, grant, name string) (*oauth.Provider, error) {
	d.mu.RLock()
	c := d.clients[name]
	var p *providerRT
	if c != nil {
		p = d.providers[c.cfg.Provider]
	}
	d.mu.RUnlock()
	if c == nil || p == nil {
		return nil, &oauth.Error{Op: "config", Description: fmt.Sprintf("grant %s: client %s or its provider not configured", grant, name), Class: oauth.Configuration}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.prov != nil {
		return c.prov, nil
	}
	eps, err := d.endpoints(ctx, p)
	if err != nil {
		return nil, err
	}
	base, err := d.clientHTTP(c.cfg, p.cfg)
	if err != nil {
		return nil, err
	}
	if c.cfg.AuthMethod.IsCertificate() {
		eps = eps.ForTLSClientAuth()
	}
	client, err := d.resolveClient(ctx, c, eps, base)
	if err != nil {
		return nil, err
	}
	// The key and the assertion audience come from the configuration
	// however the client was resolved (a stored registration included).
	client.Key, client.AssertionAudience = c.cfg.Key, c.cfg.AssertionAudience
	if client.AuthMethod.IsCertificate() {
		eps = eps.ForTLSClientAuth()
	}
	c.prov = &oauth.Provider{Endpoints: eps, Client: client, HTTP: d.countingHTTP(base, c.cfg.Provider, "", &eps), Now: d.clock.Now}
	return c.prov, nil
}

// resolvedTokenEndpoint is where client's token requests go, "" until the
// client is resolved (providerFor). It asks nothing of the provider.
func (d *Daemon) resolvedTokenEndpoint(client string) string {
	d.mu.RLock()
	c := d.clients[client]
	d.mu.RUnlock()
	if c == nil || !c.mu.TryLock() {
		return "" // being resolved: status does not wait for discovery
	}
	defer c.mu.Unlock()
	if c.prov == nil {
		return ""
	}
	return c.prov.TokenEndpoint()
}

func (d *Daemon) endpoints(ctx context.Context, p *providerRT) (oauth.Endpoints, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.eps != nil {
		return *p.eps, nil
	}
	if p.cfg.Resource != nil {
		return d.resourceEndpoints(ctx, p)
	}
	explicit := p.cfg.Endpoints()
	if p.cfg.Issuer == "" {
		p.eps = &explicit
		return explicit, nil
	}
	dctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	base, err := d.clientHTTP(config.Client{}, p.cfg)
	if err != nil {
		return oauth.Endpoints{}, err
	}
	eps, err := oauth.Discover(dctx, d.countingHTTP(base, p.name, EndpointDiscovery, nil), p.cfg.Issuer)
	if err == nil {
		d.cacheDiscovered(p, eps, "endpoints")
		d.log.Info("provider discovered", "provider", p.name, "issuer", eps.Issuer, "token_endpoint", eps.Token)
	} else if err = d.fallBackToCache(p, err, "endpoints", func() (cerr error) {
		eps, cerr = d.cachedEndpoints(p)
		return cerr
	}); err != nil {
		return oauth.Endpoints{}, err
	}
	merged := mergeEndpoints(eps, explicit)
	p.eps = &merged
	return merged, nil
}

// cacheDiscovered keeps v, what discovery found for p (what names it in
// the log), in the store, for discovery to fall back on when it fails.
func (d *Daemon) cacheDiscovered(p *providerRT, v any, what string) {
	b, err := json.Marshal(v)
	if err == nil {
		err = d.st.PutProvider(p.name, b)
	}
	if err != nil {
		d.log.Warn("caching discovered "+what, "provider", p.name, "err", err)
	}
}

// fallBackToCache reads what discovery cached for p with read, after
// discovery failed with err: nil when the cache serves, else err. A cache
// that read refuses is logged.
func (d *Daemon) fallBackToCache(p *providerRT, err error, what string, read func() error) error {
	if cerr := read(); cerr != nil {
		if !errors.Is(cerr, store.ErrNotFound) {
			d.log.Error("discovery failed, and the cached "+what+" are not used", "provider", p.name, "err", err, "cache", cerr)
		}
		return err
	}
	d.log.Warn("discovery failed; using cached "+what, "provider", p.name, "err", err)
	return nil
}

// cachedEndpoints reads p's endpoints as the store cached them at the last
// discovery. The store authenticates the record (with its key it is
// sealed under the provider's name, so nobody without the key can change
// it); it must name the configured issuer, and every endpoint must pass
// the rule discovered ones do (https, or http to a loopback host). An
// error says which check failed and carries no endpoint's content beyond
// its name.
func (d *Daemon) cachedEndpoints(p *providerRT) (oauth.Endpoints, error) {
	b, err := d.st.Provider(p.name)
	if err != nil {
		return oauth.Endpoints{}, err
	}
	var eps oauth.Endpoints
	if err := json.Unmarshal(b, &eps); err != nil {
		return oauth.Endpoints{}, fmt.Errorf("daemon: cached metadata of provider %s is not JSON", p.name)
	}
	if eps.Issuer != p.cfg.Issuer {
		return oauth.Endpoints{}, fmt.Errorf("daemon: cached metadata of provider %s names another issuer", p.name)
	}
	if eps.Token == "" {
		return oauth.Endpoints{}, fmt.Errorf("daemon: cached metadata of provider %s has no token endpoint", p.name)
	}
	// Besides the endpoints discovery checks, the two it keeps for
	// refusing DPoP proofs (PAR, introspection) are held to the rule too.
	fields := append(eps.Fields(),
		oauth.NamedURL{Name: "pushed_authorization_request_endpoint", URL: eps.PushedAuthorization},
		oauth.NamedURL{Name: "introspection_endpoint", URL: eps.Introspection})
	for _, f := range fields {
		if f.URL == "" {
			continue
		}
		if oauth.Printable(f.URL) != f.URL || oauth.CheckEndpointURL(f.URL) != nil {
			return oauth.Endpoints{}, fmt.Errorf("daemon: cached metadata of provider %s: %s is not an https URL (nor http to a loopback host)", p.name, f.Name)
		}
	}
	return eps, nil
}

// mergeEndpoints lets explicitly configured endpoints override discovered
// ones. An endpoint the operator wrote is never replaced by a discovered
// one, an mTLS alias (RFC 8705 §5) included: the alias of an endpoint
// that is configured is dropped, so that a certificate-authenticated
// client sends where the configuration says. Aliases stay only for the
// endpoints that came from discovery (and passed its URL rule).
func mergeEndpoints(found, explicit oauth.Endpoints) oauth.Endpoints {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&found.Authorization, explicit.Authorization)
	set(&found.Token, explicit.Token)
	set(&found.Revocation, explicit.Revocation)
	set(&found.DeviceAuthorization, explicit.DeviceAuthorization)
	set(&found.Registration, explicit.Registration)
	if found.MTLS != nil {
		m := *found.MTLS
		drop := func(alias *string, configured string) {
			if configured != "" {
				*alias = ""
			}
		}
		drop(&m.Token, explicit.Token)
		drop(&m.Revocation, explicit.Revocation)
		drop(&m.DeviceAuthorization, explicit.DeviceAuthorization)
		drop(&m.Registration, explicit.Registration)
		found.MTLS = &m
		if m == (oauth.MTLSAliases{}) {
			found.MTLS = nil
		}
	}
	return found
}

// resolveClient returns the client's identity and credentials; base is
// the HTTP client a dynamic registration goes through.
func (d *Daemon) resolveClient(ctx context.Context, c *clientRT, eps oauth.Endpoints, base *http.Client) (oauth.Client, error) {
	if !c.cfg.Dynamic() {
		return oauth.Client{
			ID:                c.cfg.ClientID,
			Secret:            c.cfg.Secret,
			AuthMethod:        c.cfg.AuthMethod,
			RedirectURI:       c.cfg.RedirectURI,
			Key:               c.cfg.Key,
			AssertionAudience: c.cfg.AssertionAudience,
		}, nil
	}
	if cl, ok, err := d.derivedIdentity(c, eps); err != nil || ok {
		return cl, err
	}
	owner := registrationOwner(c, eps)
	if sc, err := d.st.Client(c.name); err == nil && sc.Provider == owner && sc.ClientID != "" {
		return oauth.Client{
			ID:                sc.ClientID,
			Secret:            oauth.NewSecret(sc.ClientSecret),
			AuthMethod:        oauth.AuthMethod(sc.AuthMethod),
			RedirectURI:       sc.RedirectURI,
			Key:               c.cfg.Key,
			AssertionAudience: c.cfg.AssertionAudience,
		}, nil
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return oauth.Client{}, fmt.Errorf("daemon: reading registered client %s: %w", c.name, err)
	}
	if eps.Registration == "" {
		return oauth.Client{}, &oauth.Error{Op: "register", Class: oauth.Configuration,
			Description: fmt.Sprintf("client %s has no client_id and provider %s offers no registration endpoint", c.name, c.cfg.Provider)}
	}
	if d.fleet != nil {
		// Registered once per fleet: under the fleet's lock, after
		// reading the record again.
		unlock, sc, found, err := d.fleetRegistration(ctx, c, owner)
		if err != nil {
			return oauth.Client{}, err
		}
		if found {
			return registeredClient(sc), nil
		}
		defer unlock()
	}
	req := d.registrationRequest(c)
	if c.cfg.ForGrant != "" {
		// A derived client authenticates as the server allows; the
		// registration gives it a secret where that needs one.
		var supported []string
		if f := d.foundOf(c.name); f != nil {
			supported = f.TokenEndpointAuthMethods
		}
		m, err := oauth.ChooseAuthMethod(supported, true)
		if err != nil {
			return oauth.Client{}, err
		}
		req.AuthMethod = m
	}
	if err := registrationKey(c, eps, &req); err != nil {
		return oauth.Client{}, err
	}
	reg, err := oauth.Register(ctx, d.countingHTTP(base, c.cfg.Provider, EndpointRegistration, nil), eps.Registration, req)
	if err != nil {
		return oauth.Client{}, err
	}
	method := reg.AuthMethod
	if method == "" {
		method = req.AuthMethod
	}
	sc := store.Client{
		Name:                    c.name,
		Provider:                owner,
		ClientID:                reg.ClientID,
		ClientSecret:            reg.ClientSecret.Reveal(),
		AuthMethod:              string(method),
		RedirectURI:             c.cfg.RedirectURI,
		RegistrationAccessToken: reg.RegistrationAccessToken.Reveal(),
		RegistrationClientURI:   reg.RegistrationClientURI,
		SecretExpiresAt:         reg.ClientSecretExpiresAt,
		Registered:              d.clock.Now(),
	}
	// Saved before first use: a client registered and then lost would be
	// registered again on the next start, leaving an orphan at the provider.
	if err := d.st.PutClient(sc); err != nil {
		return oauth.Client{}, fmt.Errorf("daemon: saving registered client %s: %w", c.name, err)
	}
	d.log.Info("client registered", "client", c.name, "provider", c.cfg.Provider, "client_id", reg.ClientID, "auth_method", method)
	return oauth.Client{ID: reg.ClientID, Secret: reg.ClientSecret, AuthMethod: method, RedirectURI: c.cfg.RedirectURI,
		Key: c.cfg.Key, AssertionAudience: c.cfg.AssertionAudience}, nil
}

// registrationRequest describes the client from the grants that use it; a
// client with a dpop grant asks for DPoP-bound tokens.
func (d *Daemon) registrationRequest(c *clientRT) oauth.RegistrationRequest {
	cfg, _ := d.config()
	req := oauth.RegistrationRequest{
		ClientName: c.cfg.ClientName,
		AuthMethod: c.cfg.AuthMethod,
	}
	if req.ClientName == "" {
		host, _ := os.Hostname()
		req.ClientName = "tokend on " + host
	}
	if req.AuthMethod == "" {
		req.AuthMethod = oauth.AuthBasic
	}
	var scopes []string
	for _, g := range cfg.Grants {
		if g.Client != c.name {
			continue
		}
		gt := g.Type
		switch gt {
		case config.GrantDeviceCode:
			gt = "urn:ietf:params:oauth:grant-type:device_code"
		case config.GrantJWTBearer:
			gt = "urn:ietf:params:oauth:grant-type:jwt-bearer"
		case config.GrantTokenExchange:
			gt = "urn:ietf:params:oauth:grant-type:token-exchange"
		}
		if g.DPoP {
			req.DPoPBound = true
		}
		if !slices.Contains(req.GrantTypes, gt) {
			req.GrantTypes = append(req.GrantTypes, gt)
		}
		if g.Type == config.GrantAuthorizationCode && !slices.Contains(req.ResponseTypes, "code") {
			req.ResponseTypes = append(req.ResponseTypes, "code")
		}
		for _, s := range g.Scopes {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	if len(req.ResponseTypes) == 0 {
		req.ResponseTypes = []string{}
	}
	if slices.ContainsFunc(req.GrantTypes, needsRefreshGrant) {
		req.GrantTypes = append(req.GrantTypes, "refresh_token")
	}
	if c.cfg.RedirectURI != "" {
		req.RedirectURIs = []string{c.cfg.RedirectURI}
		if u, err := url.Parse(c.cfg.RedirectURI); err == nil && oauth.IsLoopbackHost(u.Hostname()) {
			req.ApplicationType = "native"
		}
	}
	for i, s := range scopes {
		if i > 0 {
			req.Scope += " "
		}
		req.Scope += s
	}
	return req
}

// registrationKey adds a private_key_jwt client's public key (jwks) and
// signing alg, chosen among the provider's, to its registration.
func registrationKey(c *clientRT, eps oauth.Endpoints, req *oauth.RegistrationRequest) error {
	if req.AuthMethod != oauth.AuthPrivateKeyJWT {
		return nil
	}
	fail := func(format string, a ...any) error {
		return &oauth.Error{Op: "register", Class: oauth.Configuration, Description: fmt.Sprintf("client %s: ", c.name) + fmt.Sprintf(format, a...)}
	}
	if c.cfg.Key == nil {
		return fail("auth_method private_key_jwt needs private_key_file or private_key_credential")
	}
	jwks, err := c.cfg.Key.JWKS()
	if err != nil {
		return fail("public key for registration: %v", err)
	}
	alg, err := c.cfg.Key.ChooseAlg(eps.TokenAuthSigningAlgs)
	if err != nil {
		return fail("%v", err)
	}
	req.JWKS, req.SigningAlg = jwks, alg
	return nil
}

// needsRefreshGrant reports whether a client registered for grant type gt
// also needs refresh_token: the grants a person authorizes (and password)
// renew with it; those tokend re-obtains on its own do not.
func needsRefreshGrant(gt string) bool {
	switch gt {
	case config.GrantClientCredentials, "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange":
		return false
	}
	return true
}
