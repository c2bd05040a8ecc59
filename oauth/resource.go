package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// ResourceOptions tune DiscoverResource.
type ResourceOptions struct {
	// AuthorizationServer chooses among the authorization servers the
	// resource's metadata lists (compared as issuers: scheme and host in
	// any case, a trailing slash aside); "" means the first listed. One
	// that is not listed is a Configuration error.
	AuthorizationServer string
	// ProbeMethod is the method of the unauthenticated request whose 401
	// names the resource's metadata. "" or "POST" sends a JSON-RPC ping,
	// as an MCP client's Streamable HTTP transport would: servers must
	// accept POST, while a GET may be answered 404 or 405 before any
	// token is checked (the MCP conformance servers route only POST), and
	// a ping, unlike initialize, opens no session on a server that turns
	// out not to be protected. "GET" suits other APIs.
	ProbeMethod string
	// NoProbe skips the probe: the metadata is looked for at the RFC 9728
	// well-known locations only, and ChallengeScopes stays empty.
	NoProbe bool
}

// LegacyDiscovery says which 2025-03-26 MCP fallback DiscoverResource
// used for a resource that publishes no protected-resource metadata.
type LegacyDiscovery string

const (
	// LegacyNone: the resource's metadata named the authorization server.
	LegacyNone LegacyDiscovery = ""
	// LegacyServerMetadata: authorization server metadata found at the
	// resource's origin (<origin>/.well-known/oauth-authorization-server).
	LegacyServerMetadata LegacyDiscovery = "2025-03-26-server-metadata"
	// LegacyDefaultEndpoints: no metadata at all; the endpoints are
	// <origin>/authorize, <origin>/token and <origin>/register.
	LegacyDefaultEndpoints LegacyDiscovery = "2025-03-26-default-endpoints"
)

// ResourceDiscovery is what DiscoverResource found for a protected
// resource: everything a client needs to get a token for it. It has JSON
// tags so that a caller can cache it; Check re-validates a cached one.
// Provider-supplied strings have been through Printable.
type ResourceDiscovery struct {
	// ResourceURL is the resource's URL as configured, with scheme and
	// host lower-cased and a default port dropped: what was probed, and
	// what requests with the token go to.
	ResourceURL string `json:"resource_url"`
	// Resource is the value to send as RFC 8707's resource parameter on
	// the authorization request, the code exchange and every refresh:
	// the resource metadata's resource, as the resource spells it (it is
	// the audience the resource checks tokens for), or ResourceURL when
	// the resource publishes no metadata.
	Resource string `json:"resource"`
	// ResourceMetadataURL is where the resource's metadata was found (the
	// challenge's resource_metadata, or a well-known location); empty
	// with Legacy.
	ResourceMetadataURL string `json:"resource_metadata_url,omitempty"`
	// AuthorizationServers are the metadata's authorization_servers, as
	// listed; empty with Legacy.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`
	// Issuer is the chosen authorization server's issuer, as its metadata
	// names it; with LegacyDefaultEndpoints, the resource's origin.
	Issuer string `json:"issuer"`
	// Endpoints are the authorization server's; Endpoints.Issuer is
	// Issuer and Endpoints.IssuerParameterSupported is RFC 9207's
	// authorization_response_iss_parameter_supported.
	Endpoints Endpoints `json:"endpoints"`
	// ChallengeScopes is the scope of the probe's challenge.
	ChallengeScopes []string `json:"challenge_scopes,omitempty"`
	// ResourceScopesSupported is the resource metadata's scopes_supported.
	ResourceScopesSupported []string `json:"resource_scopes_supported,omitempty"`
	// ServerScopesSupported and the fields below are the authorization
	// server metadata's (ServerMetadata); empty with LegacyDefaultEndpoints.
	ServerScopesSupported             []string `json:"server_scopes_supported,omitempty"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported,omitempty"`
	TokenEndpointAuthMethods          []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	GrantTypesSupported               []string `json:"grant_types_supported,omitempty"`
	CodeChallengeMethods              []string `json:"code_challenge_methods_supported,omitempty"`
	// Legacy is the 2025-03-26 fallback used, LegacyNone when none was.
	Legacy LegacyDiscovery `json:"legacy,omitempty"`
}

// IssParameterSupported reports RFC 9207's
// authorization_response_iss_parameter_supported: the authorization
// response must then carry iss, equal to Issuer.
func (d *ResourceDiscovery) IssParameterSupported() bool {
	return d.Endpoints.IssuerParameterSupported
}

// Check re-validates a discovery, typically one read back from a cache,
// against the rules DiscoverResource applied: every URL passes
// CheckEndpointURL; Resource is ResourceURL or a parent of it on its
// origin; Issuer is Endpoints.Issuer and, with resource metadata, one of
// AuthorizationServers, or, with Legacy, a URL on the resource's origin;
// there is a token endpoint. Its error is a Configuration *Error naming
// the field.
func (d *ResourceDiscovery) Check() error {
	bad := func(format string, a ...any) error {
		return &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("cached discovery: "+format, a...)}
	}
	ru, err := parseResourceURL(d.ResourceURL)
	if err != nil {
		return bad("resource_url %w", err)
	}
	named, err := parseResourceURL(d.Resource)
	if err != nil {
		return bad("resource %w", err)
	}
	if !resourceMatches(ru, named) {
		return bad("resource %q is not %q or a parent of it", clean(d.Resource, 200, nil), clean(d.ResourceURL, 200, nil))
	}
	if d.Issuer != d.Endpoints.Issuer {
		return bad("issuer %q is not the endpoints' %q", clean(d.Issuer, 200, nil), clean(d.Endpoints.Issuer, 200, nil))
	}
	urls := []NamedURL{{"resource_url", d.ResourceURL}, {"issuer", d.Issuer}, {"resource_metadata_url", d.ResourceMetadataURL}}
	for _, as := range d.AuthorizationServers {
		urls = append(urls, NamedURL{"authorization_servers", as})
	}
	urls = append(urls, d.Endpoints.Fields()...)
	for _, f := range urls {
		if f.URL == "" && f.Name != "issuer" && f.Name != "resource_url" {
			continue
		}
		if err := CheckEndpointURL(f.URL); err != nil {
			return bad("%s %w", f.Name, err)
		}
	}
	if d.Endpoints.Token == "" {
		return bad("no token_endpoint")
	}
	switch d.Legacy {
	case LegacyNone:
		if d.ResourceMetadataURL == "" {
			return bad("no resource_metadata_url")
		}
		if !slices.ContainsFunc(d.AuthorizationServers, func(as string) bool { return sameIssuer(as, d.Issuer) }) {
			return bad("issuer %q is not among the authorization_servers", clean(d.Issuer, 200, nil))
		}
	case LegacyServerMetadata, LegacyDefaultEndpoints:
		if !sameOriginURL(d.Issuer, d.ResourceURL) {
			return bad("issuer %q of a resource without metadata is not on the resource's origin", clean(d.Issuer, 200, nil))
		}
	default:
		return bad("legacy %q is none of tokend's", clean(string(d.Legacy), 60, nil))
	}
	return nil
}

// errResourceMismatch is resource metadata naming another resource; the
// other locations are not tried.
var errResourceMismatch = errors.New("resource mismatch")

// DiscoverResource finds how to get a token for the protected resource at
// resourceURL, as the MCP authorization specification (2025-11-25)
// describes:
//
//  1. An unauthenticated request to the resource (ResourceOptions.ProbeMethod)
//     whose 401 or 403 Bearer challenge gives resource_metadata and scope
//     (ParseBearerChallenge; a malformed or oversized challenge is
//     refused, and so is a resource_metadata URL failing
//     CheckEndpointURL, before anything is fetched from it).
//  2. The protected-resource metadata (RFC 9728): at the challenge's
//     resource_metadata when it named one (and only there); else at
//     /.well-known/oauth-protected-resource inserted before the
//     resource's path, then at the origin's root. Its resource must be
//     the resource's URL, or a parent of it on the same origin: same
//     scheme, host and port (scheme and host in any case, default ports
//     implied), a path equal to the resource's or a whole-segment prefix
//     of it, a trailing slash aside (RFC 9728 §3.3 as updated by
//     draft-mcguinness-oauth-rfc9728bis, what the MCP SDKs accept: a
//     server may name its origin). Anything else is refused as a
//     Configuration error: a token for another resource would be asked
//     for and sent here.
//  3. The authorization server: the first listed, or
//     ResourceOptions.AuthorizationServer, which must be listed.
//  4. Its metadata: for an issuer with a path, RFC 8414's
//     /.well-known/oauth-authorization-server inserted before the path,
//     then /.well-known/openid-configuration inserted, then appended;
//     for an issuer without, RFC 8414's then OpenID Connect's at the
//     root. The document's issuer must be the issuer it was fetched for
//     (a trailing slash aside), or it is refused (Configuration).
//
// A resource that publishes no metadata (every well-known location
// answered 4xx) is treated as a 2025-03-26 server: authorization server
// metadata at <origin>/.well-known/oauth-authorization-server, whose
// issuer may then be any URL on the resource's origin
// (LegacyServerMetadata); if that is absent too, the endpoints
// <origin>/authorize, /token and /register (LegacyDefaultEndpoints). A
// server error (5xx, 429) or an unreachable server is an error, never a
// reason to fall back.
//
// Every URL it fetches or returns passes CheckEndpointURL, the resource's
// own included. Redirects are not followed (ErrRedirect); bodies are read
// through the package's 1 MiB limit. Errors are *Error with Op
// "discovery": Configuration for refusals, Transient for malformed or
// failed answers. hc nil means a client with a 30 s timeout. It is safe
// for concurrent use.
func DiscoverResource(ctx context.Context, hc *http.Client, resourceURL string, opts ResourceOptions) (*ResourceDiscovery, error) {
	ru, err := parseResourceURL(resourceURL)
	if err != nil {
		return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("protected resource %w", err)}
	}
	canonical := canonicalResourceURL(ru)
	if err := CheckEndpointURL(canonical); err != nil {
		return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("protected resource %w", err)}
	}
	d := &ResourceDiscovery{ResourceURL: canonical}

	var challenge Challenge
	if !opts.NoProbe {
		if challenge, err = probeResource(ctx, hc, canonical, opts.ProbeMethod); err != nil {
			return nil, err
		}
		d.ChallengeScopes = challenge.Scopes()
	}

	var locs []string
	if challenge.ResourceMetadata != "" {
		loc := challenge.ResourceMetadata
		if !isHTTPURL(loc) {
			return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("%s: the challenge's resource_metadata %q is not an http(s) URL", canonical, clean(loc, 200, nil))}
		}
		if err := CheckEndpointURL(loc); err != nil {
			return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("%s: the challenge's resource_metadata %w", canonical, err)}
		}
		locs = []string{loc}
	} else {
		origin := originOf(ru)
		if p := strings.TrimSuffix(ru.EscapedPath(), "/"); p != "" {
			locs = append(locs, origin+"/.well-known/oauth-protected-resource"+p+queryOf(ru))
		}
		locs = append(locs, origin+"/.well-known/oauth-protected-resource")
	}
	var prm protectedResourceMetadata
	var prmLoc string
	absent, err := tryLocations(locs, func(loc string) error {
		var err error
		prm, err = fetchResourceMetadata(ctx, hc, loc, ru)
		prmLoc = loc
		return err
	})
	switch {
	case err == nil:
	case absent && challenge.ResourceMetadata == "":
		return discoverLegacy(ctx, hc, d, ru, opts)
	default:
		return nil, err
	}
	d.Resource = prm.Resource
	d.ResourceMetadataURL = prmLoc
	d.AuthorizationServers = prm.AuthorizationServers
	d.ResourceScopesSupported = prm.ScopesSupported

	issuer := prm.AuthorizationServers[0]
	if opts.AuthorizationServer != "" {
		i := slices.IndexFunc(prm.AuthorizationServers, func(as string) bool { return sameIssuer(as, opts.AuthorizationServer) })
		if i < 0 {
			return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("authorization server %q is not among those %s lists: %s",
				clean(opts.AuthorizationServer, 200, nil), prmLoc, strings.Join(prm.AuthorizationServers, ", "))}
		}
		issuer = prm.AuthorizationServers[i]
	}
	iu, err := parseIssuer(issuer)
	if err != nil {
		return nil, err
	}
	md, _, err := discoverServer(ctx, hc, issuer, serverMetadataLocations(iu), false)
	if err != nil {
		return nil, err
	}
	d.setServer(md)
	return d, nil
}

// discoverLegacy is DiscoverResource's 2025-03-26 fallback for a resource
// without metadata.
func discoverLegacy(ctx context.Context, hc *http.Client, d *ResourceDiscovery, ru *url.URL, opts ResourceOptions) (*ResourceDiscovery, error) {
	origin := originOf(ru)
	d.Resource = d.ResourceURL
	md, absent, err := discoverServer(ctx, hc, origin, []string{origin + "/.well-known/oauth-authorization-server"}, true)
	switch {
	case err == nil:
		d.Legacy = LegacyServerMetadata
		d.setServer(md)
	case absent:
		d.Legacy = LegacyDefaultEndpoints
		d.Issuer = origin
		d.Endpoints = Endpoints{Issuer: origin, Authorization: origin + "/authorize", Token: origin + "/token", Registration: origin + "/register"}
	default:
		return nil, err
	}
	if opts.AuthorizationServer != "" && !sameIssuer(opts.AuthorizationServer, d.Issuer) {
		return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("authorization server %q was asked for, but %s publishes no protected-resource metadata listing it (its 2025-03-26 authorization server is %s)",
			clean(opts.AuthorizationServer, 200, nil), d.ResourceURL, d.Issuer)}
	}
	return d, nil
}

func (d *ResourceDiscovery) setServer(md ServerMetadata) {
	d.Issuer = md.Issuer
	d.Endpoints = md.Endpoints
	d.ServerScopesSupported = md.ScopesSupported
	d.ClientIDMetadataDocumentSupported = md.ClientIDMetadataDocumentSupported
	d.TokenEndpointAuthMethods = md.TokenEndpointAuthMethods
	d.GrantTypesSupported = md.GrantTypesSupported
	d.CodeChallengeMethods = md.CodeChallengeMethods
}

// serverMetadataLocations are where the MCP specification has a client
// look for an issuer's metadata, in order.
func serverMetadataLocations(iu *url.URL) []string {
	base := iu.Scheme + "://" + iu.Host
	path := strings.TrimSuffix(iu.EscapedPath(), "/")
	if path == "" {
		return []string{base + "/.well-known/oauth-authorization-server", base + "/.well-known/openid-configuration"}
	}
	return []string{
		base + "/.well-known/oauth-authorization-server" + path,
		base + "/.well-known/openid-configuration" + path,
		base + path + "/.well-known/openid-configuration",
	}
}

// probeBody is the probe's JSON-RPC request: ping, the one request an MCP
// client may send before initialize, and one that changes nothing.
const probeBody = `{"jsonrpc":"2.0","id":"tokend-discovery","method":"ping"}`

// probeReadLimit is the most of the probe's answer that is read: only its
// headers matter, and a resource that is not protected may answer with an
// event stream that never ends.
const probeReadLimit = 4 << 10

// probeResource sends the unauthenticated request and returns the Bearer
// challenge of a 401 or 403 answer (zero for any other answer).
func probeResource(ctx context.Context, hc *http.Client, resourceURL, method string) (Challenge, error) {
	var body io.Reader
	switch method {
	case "", http.MethodPost:
		method, body = http.MethodPost, strings.NewReader(probeBody)
	case http.MethodGet:
	default:
		return Challenge{}, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("probe method %q: use POST or GET", clean(method, 20, nil))}
	}
	req, err := http.NewRequestWithContext(ctx, method, resourceURL, body)
	if err != nil {
		return Challenge{}, &Error{Op: opDiscovery, Class: Configuration, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	hc = orDefault(hc)
	resp, err := clientWith(hc, noRedirects{base: transportOf(hc), endpoint: "protected resource"}).Do(req)
	if err != nil {
		if e, ok := asRedirect(opDiscovery, err); ok {
			return Challenge{}, e
		}
		return Challenge{}, transportError(opDiscovery, err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, probeReadLimit)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return Challenge{}, nil
	}
	c, err := ParseBearerChallenge(resp.Header.Values("WWW-Authenticate"))
	if err != nil {
		return Challenge{}, &Error{Op: opDiscovery, Status: resp.StatusCode, Class: Transient,
			Err: fmt.Errorf("%w: %s answered %d with a %w", ErrMalformed, resourceURL, resp.StatusCode, err)}
	}
	return c, nil
}

// protectedResourceMetadata is RFC 9728 §2's document, the fields tokend
// uses.
type protectedResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported"`
}

// fetchResourceMetadata fetches the protected-resource metadata at loc and
// holds it to the resource ru (resourceMatches).
func fetchResourceMetadata(ctx context.Context, hc *http.Client, loc string, ru *url.URL) (protectedResourceMetadata, error) {
	resp, err := getDocument(ctx, hc, loc, "protected resource metadata", "resource")
	if err != nil {
		return protectedResourceMetadata{}, err
	}
	malformed := func(why string) error { return malformedDocument(resp, loc, why) }
	refused := func(format string, a ...any) error {
		return &Error{Op: opDiscovery, Status: resp.status, Class: Configuration, Err: fmt.Errorf("%w: %s: "+format, append([]any{errRefusedDocument, loc}, a...)...)}
	}
	var m protectedResourceMetadata
	if err := json.Unmarshal(resp.body, &m); err != nil {
		why := describeBody(resp.header.Get("Content-Type"), resp.body, true, resp.status, "resource")
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			why = fmt.Sprintf("%s is not of the right type", clean(te.Field, 60, nil))
		}
		return protectedResourceMetadata{}, malformed(why)
	}
	if k := duplicateKey(resp.body, false); k != "" {
		return protectedResourceMetadata{}, malformed("key " + k + " occurs more than once")
	}
	if m.Resource == "" {
		return protectedResourceMetadata{}, malformed("no resource")
	}
	named, err := parseResourceURL(m.Resource)
	if err != nil {
		return protectedResourceMetadata{}, refused("resource %w", err)
	}
	if !resourceMatches(ru, named) {
		return protectedResourceMetadata{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
			Err: fmt.Errorf("%w: %s names resource %q, which is neither %s nor a parent of it on its origin: tokend will not ask for a token for another resource", errResourceMismatch, loc, clean(m.Resource, 200, nil), canonicalResourceURL(ru))}
	}
	if len(m.AuthorizationServers) == 0 {
		return protectedResourceMetadata{}, malformed("no authorization_servers")
	}
	for _, as := range m.AuthorizationServers {
		if Printable(as) != as || !isHTTPURL(as) {
			return protectedResourceMetadata{}, malformed(fmt.Sprintf("authorization server %q is not an http(s) URL", clean(as, 200, nil)))
		}
		if err := CheckEndpointURL(as); err != nil {
			return protectedResourceMetadata{}, refused("authorization server %w", err)
		}
	}
	m.ScopesSupported = printableStrings(m.ScopesSupported)
	return m, nil
}

// parseResourceURL parses a protected resource's URL or identifier: an
// absolute http(s) URL without user information or fragment (RFC 8707
// §2), printable.
func parseResourceURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", clean(raw, 200, nil))
	}
	switch shown := safeURL(u); {
	case u.User != nil:
		return nil, fmt.Errorf("%q has user information", shown)
	case strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%q has a fragment", shown)
	case Printable(raw) != raw || strings.ContainsAny(raw, " \t"):
		return nil, fmt.Errorf("%q has characters a URL cannot", shown)
	}
	return u, nil
}

// originOf is u's scheme, host and port, the scheme and host lower-cased
// and a default port (80 for http, 443 for https) dropped.
func originOf(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" || strings.Contains(host, ":") {
		if port == "" {
			host = "[" + host + "]"
		} else {
			host = net.JoinHostPort(host, port)
		}
	}
	return strings.ToLower(u.Scheme) + "://" + host
}

func queryOf(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}

// canonicalResourceURL is u with its origin canonical (originOf); path and
// query as given.
func canonicalResourceURL(u *url.URL) string {
	return originOf(u) + u.EscapedPath() + queryOf(u)
}

// resourceMatches reports whether named, the resource a metadata document
// names, may stand for the configured resource: the same origin, the same
// query or none, and a path equal to the configured one or a parent of it
// at a segment boundary, a trailing slash aside.
func resourceMatches(configured, named *url.URL) bool {
	if originOf(configured) != originOf(named) {
		return false
	}
	if named.RawQuery != "" && named.RawQuery != configured.RawQuery {
		return false
	}
	cp := strings.TrimSuffix(configured.EscapedPath(), "/")
	np := strings.TrimSuffix(named.EscapedPath(), "/")
	return np == cp || strings.HasPrefix(cp, np+"/")
}

// sameIssuer compares issuer identifiers as the package does (a trailing
// slash aside), scheme and host in any case.
func sameIssuer(a, b string) bool {
	au, err1 := url.Parse(a)
	bu, err2 := url.Parse(b)
	if err1 != nil || err2 != nil || au.Host == "" || bu.Host == "" {
		return false
	}
	return originOf(au) == originOf(bu) && strings.TrimSuffix(au.EscapedPath(), "/") == strings.TrimSuffix(bu.EscapedPath(), "/") && au.RawQuery == bu.RawQuery
}

// sameOriginURL reports whether a and b are URLs on the same origin.
func sameOriginURL(a, b string) bool {
	au, err1 := url.Parse(a)
	bu, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && au.Host != "" && bu.Host != "" && originOf(au) == originOf(bu)
}
