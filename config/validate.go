package config

// Validation: every rule a decoded, defaulted Config must pass, each
// problem reported under its key path. It also looks up the users and
// groups the configuration names (accounts.go).

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

// nameRE restricts provider, client and grant names: they appear in URL
// paths (/v1/tokens/{name}), metric labels and log lines.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the configuration and returns every problem found,
// joined, each naming its key path. Call ApplyDefaults first. It looks up
// the user and group names c names in the system's user database and
// records their ids in c. A Config whose secrets were set in code
// (Client.Secret, Grant.Password) needs no secret files.
func (c *Config) Validate() error {
	p := &problems{}
	c.validate(p, Loader{})
	return p.err()
}

// validate appends every problem of c to p, looking users and groups up
// with l, one section after the other.
func (c *Config) validate(p *problems, l Loader) {
	c.validateStore(p)
	l.validateListen(p, &c.Listen)
	c.validateRefresh(p)
	l.resolveReaders(p, "operators", &c.Operators)
	c.validateLog(p)
	c.validateProviders(p)
	c.validateClients(p)
	c.validateGrants(p, l)
	c.checkGrantCycles(p)
	c.validateHooks(p)
	c.validateFleet(p)
	c.checkSinkPaths(p)
}

// validateStore checks the store section: absolute paths.
func (c *Config) validateStore(p *problems) {
	if c.Store.Path == "" {
		p.errorf("store.path", "must be set")
	} else if !filepath.IsAbs(c.Store.Path) {
		p.errorf("store.path", "%q must be an absolute path", c.Store.Path)
	}
	if c.Store.KeyFile != "" && !filepath.IsAbs(c.Store.KeyFile) {
		p.errorf("store.key_file", "%q must be an absolute path", c.Store.KeyFile)
	}
}

// validateListen checks the listen section: the socket's path and group,
// and the callback and metrics addresses.
func (l Loader) validateListen(p *problems, ls *Listen) {
	if ls.Socket == "" {
		p.errorf("listen.socket", "must be set")
	} else if !filepath.IsAbs(ls.Socket) {
		p.errorf("listen.socket", "%q must be an absolute path", ls.Socket)
	}
	l.resolveSocketGroup(p, ls)
	if ls.Callback != "off" {
		checkHostPort(p, "listen.callback", ls.Callback, true)
	}
	if ls.Metrics != "off" {
		checkHostPort(p, "listen.metrics", ls.Metrics, false)
	}
}

// validateRefresh checks the refresh section: schedule, fractions,
// durations and concurrency.
func (c *Config) validateRefresh(p *problems) {
	r := c.Refresh
	if r.Schedule.IsZero() {
		p.errorf("refresh.schedule", "must be set")
	}
	if !(r.Fraction > 0 && r.Fraction < 1) {
		p.errorf("refresh.fraction", "%v must be between 0 and 1 (exclusive), e.g. 0.75", r.Fraction)
	}
	if !(r.Jitter >= 0 && r.Jitter < 0.5) {
		p.errorf("refresh.jitter", "%v must be at least 0 and less than 0.5, e.g. 0.05", r.Jitter)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"refresh.min_remaining", r.MinRemaining},
		{"refresh.default_lifetime", r.DefaultLifetime},
		{"refresh.max_interval", r.MaxInterval},
		{"refresh.timeout", r.Timeout},
	} {
		if d.v < 0 {
			p.errorf(d.key, "%s must not be negative", d.v)
		}
	}
	if r.Concurrency < 1 {
		p.errorf("refresh.concurrency", "%d must be at least 1", r.Concurrency)
	}
}

// validateLog checks the log section's level and format.
func (c *Config) validateLog(p *problems) {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.errorf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.errorf("log.format", "%q is not one of text, json", c.Log.Format)
	}
}

// validateProviders checks each provider: its name, an issuer or token
// endpoint, every endpoint URL, and its CA bundle.
func (c *Config) validateProviders(p *problems) {
	for _, name := range sortedKeys(c.Providers) {
		pv := c.Providers[name]
		path := "providers." + name
		if pv.Resource != nil {
			continue // derived from a protected_resource grant, which is checked instead
		}
		checkName(p, path, name)
		if pv.Issuer == "" && pv.TokenEndpoint == "" {
			p.errorf(path, "needs an issuer (for discovery) or a token_endpoint")
		}
		for _, u := range []struct{ key, v string }{
			{"issuer", pv.Issuer},
			{"authorization_endpoint", pv.AuthorizationEndpoint},
			{"token_endpoint", pv.TokenEndpoint},
			{"revocation_endpoint", pv.RevocationEndpoint},
			{"device_authorization_endpoint", pv.DeviceAuthorizationEndpoint},
			{"registration_endpoint", pv.RegistrationEndpoint},
		} {
			if u.v == "" {
				continue
			}
			// The rule every endpoint obeys, configured or discovered:
			// https, or http to a loopback host.
			if err := oauth.CheckEndpointURL(u.v); err != nil {
				p.errorf(path+"."+u.key, "%v", err)
			}
		}
		if pv.Issuer != "" {
			if iu, err := url.Parse(pv.Issuer); err == nil && (iu.RawQuery != "" || iu.Fragment != "") {
				p.errorf(path+".issuer", "%q must not have a query or fragment (RFC 8414)", pv.Issuer)
			}
		}
		checkCAFile(p, path, pv)
	}
}

// validateClients checks each client: its name, its provider, its secret's
// source, dynamic registration, its authentication (clientauth.go) and its
// redirect URI.
func (c *Config) validateClients(p *problems) {
	for _, name := range sortedKeys(c.Clients) {
		cl := c.Clients[name]
		path := "clients." + name
		if cl.ForGrant != "" {
			continue // derived from a protected_resource grant, which is checked instead
		}
		checkName(p, path, name)
		pv, ok := c.Providers[cl.Provider]
		switch {
		case cl.Provider == "":
			p.errorf(path+".provider", "must name a provider (it may be omitted only by a client that serves a protected_resource grant)")
		case !ok:
			p.errorf(path+".provider", "provider %q is not defined under providers%s", cl.Provider, definedList(c.Providers))
		}
		if cl.ClientSecretFile != "" && cl.ClientSecretCredential != "" {
			p.errorf(path, "give client_secret_file or client_secret_credential, not both")
		}
		if cl.ClientSecretFile != "" && !filepath.IsAbs(cl.ClientSecretFile) {
			p.errorf(path+".client_secret_file", "%q must be an absolute path", cl.ClientSecretFile)
		}
		if cl.ClientSecretCredential != "" {
			checkCredentialName(p, path+".client_secret_credential", cl.ClientSecretCredential)
		}
		if cl.Dynamic() {
			if hasClientSecret(cl) {
				p.errorf(path, "has a client secret but no client_id (omit both to register dynamically)")
			}
			if ok && pv.RegistrationEndpoint == "" && pv.Issuer == "" && pv.Resource == nil {
				p.errorf(path+".client_id", "is not set, so the client is registered dynamically, but provider %q has no registration_endpoint and no issuer to discover one", cl.Provider)
			}
		}
		validateClientAuth(p, path, cl, pv, ok)
		if cl.RedirectURI != "" {
			checkRedirect(p, path+".redirect_uri", cl.RedirectURI)
		}
	}
}

// validateGrants checks the grants: overlapping matches, then each grant in
// name order (validateGrant).
func (c *Config) validateGrants(p *problems, l Loader) {
	checkMatchOverlap(p, c.Grants)
	c.validateProxies(p)
	if len(c.Grants) == 0 {
		p.warnf("grants", "no grants are configured: tokend will serve no tokens")
	}
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		c.validateGrant(p, l, name, &g)
		c.Grants[name] = g
	}
}

// validateGrant checks the grant called name and completes g: its readers'
// ids and its sinks (validateSinks).
func (c *Config) validateGrant(p *problems, l Loader, name string, g *Grant) {
	path := "grants." + name
	checkName(p, path, name)
	cl, clientOK := c.Clients[g.Client]
	switch {
	case g.Client == "":
		p.errorf(path+".client", "must name a client (or the protected_resource the token is for)")
	case cl.ForGrant != "" && cl.ForGrant != name:
		// Another grant's derived client: not a name one can configure.
		clientOK = false
		p.errorf(path+".client", "client %q is not defined under clients%s", g.Client, definedList(configured(c.Clients)))
	case !clientOK:
		p.errorf(path+".client", "client %q is not defined under clients%s", g.Client, definedList(c.Clients))
	}
	pv, providerOK := c.Providers[cl.Provider]
	providerOK = clientOK && providerOK
	c.validateGrantType(p, path, name, *g, cl, clientOK, pv, providerOK)
	c.validateResource(p, path, name, *g, cl, clientOK)
	if g.Type != GrantPassword && (g.Username != "" || g.PasswordFile != "" || g.PasswordCredential != "") {
		p.errorf(path, "username, password_file and password_credential apply to the password grant only")
	}
	checkGrantTypeKeys(p, path, *g)
	if g.PasswordFile != "" && !filepath.IsAbs(g.PasswordFile) {
		p.errorf(path+".password_file", "%q must be an absolute path", g.PasswordFile)
	}
	if g.PasswordCredential != "" {
		checkCredentialName(p, path+".password_credential", g.PasswordCredential)
	}
	for i, s := range g.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			p.errorf(fmt.Sprintf("%s.scopes[%d]", path, i), "%q is not a valid scope (no spaces, quotes or backslashes)", s)
		}
	}
	if g.RefreshTokenLifetime < 0 {
		p.errorf(path+".refresh_token_lifetime", "%s must not be negative", g.RefreshTokenLifetime)
	}
	checkMatch(p, path, *g)
	l.validateSinks(p, path, g.Sinks)
	l.resolveReaders(p, path+".readers", &g.Readers)
	if g.Readers.empty() {
		p.warnf(path+".readers", "no readers: only root and operators can fetch this token")
	}
}

// validateGrantType checks what grant g's type needs of it, its client cl
// and its provider pv (clientOK and providerOK say whether they are
// defined).
func (c *Config) validateGrantType(p *problems, path, name string, g Grant, cl Client, clientOK bool, pv Provider, providerOK bool) {
	switch g.Type {
	case GrantAuthorizationCode:
		if clientOK && cl.RedirectURI == "" {
			p.errorf(path+".type", "authorization_code needs a redirect_uri on client %q (listen.callback is off)", g.Client)
		}
		if providerOK && pv.AuthorizationEndpoint == "" && pv.Issuer == "" && pv.Resource == nil {
			p.errorf(path+".type", "authorization_code needs an authorization_endpoint or an issuer on provider %q", cl.Provider)
		}
	case GrantClientCredentials:
		if clientOK && !cl.Dynamic() && !confidential(cl) {
			p.errorf(path+".type", "client_credentials needs a confidential client: client %q has no client secret, private key or certificate", g.Client)
		}
	case GrantPassword:
		if g.Username == "" {
			p.errorf(path+".username", "the password grant needs a username")
		}
		if !hasPassword(g) {
			p.errorf(path, "the password grant needs password_file or password_credential")
		}
		if g.PasswordFile != "" && g.PasswordCredential != "" {
			p.errorf(path, "give password_file or password_credential, not both")
		}
	case GrantDeviceCode:
		if providerOK && pv.DeviceAuthorizationEndpoint == "" && pv.Issuer == "" && pv.Resource == nil {
			p.errorf(path+".type", "device_code needs a device_authorization_endpoint or an issuer on provider %q", cl.Provider)
		}
	case GrantJWTBearer:
		if g.IdentityAssertion != nil {
			c.validateIdentityAssertion(p, path, name, g, pv, providerOK)
			break
		}
		validateJWTBearer(p, path, g, pv, cl.Provider)
	case GrantTokenExchange:
		c.validateTokenExchange(p, path, name, g)
	case "":
		p.errorf(path+".type", "must be set to one of %s", strings.Join(GrantTypes, ", "))
	default:
		p.errorf(path+".type", "unknown grant type %q: valid types are %s", g.Type, strings.Join(GrantTypes, ", "))
	}
}

func checkName(p *problems, path, name string) {
	if !nameRE.MatchString(name) {
		p.errorf(path, "the name %q may only use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
}

func checkCredentialName(p *problems, path, name string) {
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		p.errorf(path, "%q is not a credential name (no slashes)", name)
	}
}

func checkHostPort(p *problems, path, addr string, warnPublic bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.errorf(path, "%q is not host:port, e.g. 127.0.0.1:8785", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.errorf(path, "%q has an invalid port", addr)
		return
	}
	if warnPublic && !oauth.IsLoopbackHost(host) {
		p.warnf(path, "%q is not a loopback address: the callback listener is reachable from other hosts", addr)
	}
}

func checkRedirect(p *problems, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		p.errorf(path, "%q is not an absolute URL", raw)
		return
	}
	if u.Path == "" || u.Path == "/" {
		p.errorf(path, "%q needs a path, e.g. /callback", raw)
	}
	if u.Fragment != "" {
		p.errorf(path, "%q must not have a fragment (RFC 6749 §3.1.2)", raw)
	}
	if u.Scheme == "http" && !oauth.IsLoopbackHost(u.Hostname()) {
		p.warnf(path, "%q uses http to a non-loopback host: authorization codes travel in clear text", raw)
	}
}

// configured leaves out the clients derived from protected_resource grants.
func configured(m map[string]Client) map[string]Client {
	out := make(map[string]Client, len(m))
	for k, v := range m {
		if v.ForGrant == "" {
			out[k] = v
		}
	}
	return out
}

func definedList[V any](m map[string]V) string {
	if len(m) == 0 {
		return " (none are defined)"
	}
	return " (defined: " + strings.Join(sortedKeys(m), ", ") + ")"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
