package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Discover fetches issuer metadata: RFC 8414
// (/.well-known/oauth-authorization-server inserted before the issuer's
// path) and then, when that is absent or unusable, OpenID Connect discovery
// (/.well-known/openid-configuration appended to the issuer). The document's
// issuer must equal the given one (RFC 8414 §3.3; a difference of a
// trailing slash is tolerated); a mismatch is a Configuration error and is
// not retried at the other location. Every endpoint of the document must
// pass CheckEndpointURL (https, or http to a loopback host), or the
// document is refused as a Configuration error naming the field (and the
// other location is not tried); the issuer must pass it too. Redirects are
// not followed (ErrRedirect). Documents over 1 MiB are rejected. hc
// nil means a client with a 30 s timeout. It is safe for concurrent use.
func Discover(ctx context.Context, hc *http.Client, issuer string) (Endpoints, error) {
	u, err := parseIssuer(issuer)
	if err != nil {
		return Endpoints{}, err
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	oidc := u.Scheme + "://" + u.Host + path + "/.well-known/openid-configuration"
	md, _, err := discoverServer(ctx, hc, issuer, []string{rfc8414, oidc}, false)
	return md.Endpoints, err
}

// parseIssuer checks an issuer identifier before discovery: an http(s) URL
// without query or fragment, passing CheckEndpointURL.
func parseIssuer(issuer string) (*url.URL, error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("issuer %q is not an http(s) URL without query or fragment", clean(issuer, 200, nil))}
	}
	if err := CheckEndpointURL(issuer); err != nil {
		return nil, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("issuer %w", err)}
	}
	return u, nil
}

// discoverServer fetches issuer's metadata from locs in turn (see
// tryLocations for when it goes on to the next). sameOrigin relaxes the
// issuer check for the 2025-03-26 MCP fallback (fetchServerMetadata).
// absent reports that every location answered a 4xx: the server
// publishes no metadata.
func discoverServer(ctx context.Context, hc *http.Client, issuer string, locs []string, sameOrigin bool) (md ServerMetadata, absent bool, err error) {
	absent, err = tryLocations(locs, func(loc string) error {
		var err error
		md, err = fetchServerMetadata(ctx, hc, loc, issuer, sameOrigin)
		return err
	})
	if err != nil {
		return ServerMetadata{}, absent, err
	}
	return md, false, nil
}

// tryLocations calls fetch for each location in turn until one succeeds.
// It goes on to the next only after an HTTP answer that is not the
// document (an error status, a malformed body): a failure to connect, a
// cancelled context or a document refused for what it says (another
// issuer or resource, an endpoint tokend will not use) ends the search,
// since the other locations would not do better. The error returned is
// the last one, unless it is final and an earlier one was Transient (the
// earlier failure may pass: say so). absent reports that every location
// answered a 4xx status that is not a request to come back later (404,
// 401, ...): there is no such document.
func tryLocations(locs []string, fetch func(loc string) error) (absent bool, err error) {
	var firstTransient error
	absent = true
	for _, loc := range locs {
		err = fetch(loc)
		if err == nil {
			return false, nil
		}
		var e *Error
		if !errors.As(err, &e) || e.Status == 0 || errors.Is(err, errIssuerMismatch) || errors.Is(err, errRefusedDocument) || errors.Is(err, errResourceMismatch) {
			return false, err
		}
		if e.Status < 400 || e.Status > 499 || statusClass(e.Status) == Transient {
			absent = false
		}
		if firstTransient == nil && e.Class == Transient {
			firstTransient = err
		}
	}
	if ClassOf(err) != Transient && firstTransient != nil {
		return absent, firstTransient
	}
	return absent, err
}

var errIssuerMismatch = errors.New("issuer mismatch")

// errRefusedDocument is a document that parses but names an endpoint
// tokend will not use; the other location is not tried.
var errRefusedDocument = errors.New("refused metadata")

// getDocument GETs the JSON document at loc; what names it in messages,
// want is the member every such document has (for describing a wrong
// answer). An answer other than 200, and one over the package's body
// limit, is an *Error.
func getDocument(ctx context.Context, hc *http.Client, loc, what, want string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return response{}, &Error{Op: opDiscovery, Class: Configuration, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	now := time.Now()
	resp, err := send(opDiscovery, what, hc, req)
	if err != nil {
		return response{}, err
	}
	if resp.status != http.StatusOK {
		e := httpError(opDiscovery, now, resp.status, resp.header, "", "", "", resp.body, resp.complete, want, nil)
		e.Err = fmt.Errorf("%s: %w", loc, e.Err)
		return response{}, e
	}
	if !resp.complete {
		return response{}, malformedDocument(resp, loc, fmt.Sprintf("document over %d bytes", maxBody))
	}
	return resp, nil
}

// malformedDocument is the error for a document at loc that is not what
// it should be.
func malformedDocument(resp response, loc, why string) error {
	return &Error{Op: opDiscovery, Status: resp.status, Class: Transient, Err: fmt.Errorf("%w: %s: %s", ErrMalformed, loc, why)}
}

// ServerMetadata is an authorization server's metadata document (RFC 8414
// §2, OpenID Connect Discovery) as tokend reads it: the endpoints, and
// the capabilities a client chooses by. A capability of the wrong JSON
// type is read as absent rather than refusing the document. Lists have
// been through Printable.
type ServerMetadata struct {
	Endpoints
	ScopesSupported          []string `json:"scopes_supported,omitempty"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	GrantTypesSupported      []string `json:"grant_types_supported,omitempty"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported,omitempty"`
	// ClientIDMetadataDocumentSupported is
	// client_id_metadata_document_supported: the server accepts a URL as
	// client_id, whose document it fetches (ClientMetadataDocument).
	ClientIDMetadataDocumentSupported bool `json:"client_id_metadata_document_supported,omitempty"`
}

// serverCapabilities are ServerMetadata's lists, decoded one by one.
type serverCapabilities struct {
	ScopesSupported          json.RawMessage `json:"scopes_supported"`
	TokenEndpointAuthMethods json.RawMessage `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported      json.RawMessage `json:"grant_types_supported"`
	CodeChallengeMethods     json.RawMessage `json:"code_challenge_methods_supported"`
	ClientIDMetadataDocument json.RawMessage `json:"client_id_metadata_document_supported"`
}

// printableList decodes a JSON list of strings, each through Printable
// (empty ones dropped); nil when raw is absent or not such a list.
func printableList(raw json.RawMessage) []string {
	var l []string
	if len(raw) == 0 || json.Unmarshal(raw, &l) != nil {
		return nil
	}
	return printableStrings(l)
}

// printableStrings is l through Printable, empty strings dropped; nil
// when nothing is left.
func printableStrings(l []string) []string {
	var out []string
	for _, s := range l {
		if s = Printable(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// fetchServerMetadata fetches the metadata document at loc and holds it
// to issuer: its issuer must be issuer (a trailing slash aside), or, with
// sameOrigin, any http(s) URL on issuer's scheme, host and port (the
// 2025-03-26 MCP fallback, where issuer is the resource's origin and the
// document may name a path under it); every endpoint must pass
// CheckEndpointURL.
func fetchServerMetadata(ctx context.Context, hc *http.Client, loc, issuer string, sameOrigin bool) (ServerMetadata, error) {
	resp, err := getDocument(ctx, hc, loc, "metadata document", "issuer")
	if err != nil {
		return ServerMetadata{}, err
	}
	malformed := func(why string) error { return malformedDocument(resp, loc, why) }
	var md ServerMetadata
	var caps serverCapabilities
	if json.Unmarshal(resp.body, &md.Endpoints) != nil || json.Unmarshal(resp.body, &caps) != nil {
		return ServerMetadata{}, malformed(describeBody(resp.header.Get("Content-Type"), resp.body, true, resp.status, "issuer"))
	}
	ep := &md.Endpoints
	switch {
	case sameOrigin:
		if !isHTTPURL(ep.Issuer) || Printable(ep.Issuer) != ep.Issuer || !sameOriginURL(ep.Issuer, issuer) {
			return ServerMetadata{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
				Err: fmt.Errorf("%w: %s names issuer %q, not a URL on %s", errIssuerMismatch, loc, clean(ep.Issuer, 200, nil), issuer)}
		}
	case strings.TrimSuffix(ep.Issuer, "/") != strings.TrimSuffix(issuer, "/"):
		return ServerMetadata{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
			Err: fmt.Errorf("%w: %s names issuer %q, want %q", errIssuerMismatch, loc, clean(ep.Issuer, 200, nil), issuer)}
	default:
		ep.Issuer = issuer
	}
	if ep.Token == "" {
		return ServerMetadata{}, malformed("no token_endpoint")
	}
	for _, f := range ep.Fields() {
		if f.URL == "" {
			continue
		}
		if eu, err := url.Parse(f.URL); err != nil || (eu.Scheme != "https" && eu.Scheme != "http") || eu.Host == "" || Printable(f.URL) != f.URL {
			return ServerMetadata{}, malformed(f.Name + " is not an http(s) URL")
		}
		// The rule a URL written in the configuration has to follow:
		// secrets go over https, or in clear text only to this host.
		if err := CheckEndpointURL(f.URL); err != nil {
			return ServerMetadata{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
				Err: fmt.Errorf("%w: %s: %s %w", errRefusedDocument, loc, f.Name, err)}
		}
	}
	if sameOrigin {
		if err := CheckEndpointURL(ep.Issuer); err != nil {
			return ServerMetadata{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
				Err: fmt.Errorf("%w: %s: issuer %w", errRefusedDocument, loc, err)}
		}
	}
	md.ScopesSupported = printableList(caps.ScopesSupported)
	md.TokenEndpointAuthMethods = printableList(caps.TokenEndpointAuthMethods)
	md.GrantTypesSupported = printableList(caps.GrantTypesSupported)
	md.CodeChallengeMethods = printableList(caps.CodeChallengeMethods)
	_ = json.Unmarshal(caps.ClientIDMetadataDocument, &md.ClientIDMetadataDocumentSupported)
	return md, nil
}
