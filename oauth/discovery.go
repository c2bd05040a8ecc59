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
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Endpoints{}, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("issuer %q is not an http(s) URL without query or fragment", issuer)}
	}
	if err := CheckEndpointURL(issuer); err != nil {
		return Endpoints{}, &Error{Op: opDiscovery, Class: Configuration, Err: fmt.Errorf("issuer %w", err)}
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	oidc := u.Scheme + "://" + u.Host + path + "/.well-known/openid-configuration"

	ep, err1 := fetchMetadata(ctx, hc, rfc8414, issuer)
	if err1 == nil {
		return ep, nil
	}
	var e1 *Error
	if !errors.As(err1, &e1) || e1.Status == 0 || errors.Is(err1, errIssuerMismatch) || errors.Is(err1, errRefusedDocument) {
		// Unreachable, cancelled, a document for another issuer or with
		// an endpoint tokend refuses: the other location would not do
		// better.
		return Endpoints{}, err1
	}
	ep, err2 := fetchMetadata(ctx, hc, oidc, issuer)
	if err2 == nil {
		return ep, nil
	}
	if ClassOf(err2) != Transient && e1.Class == Transient {
		return Endpoints{}, err1 // the first failure may pass; say so
	}
	return Endpoints{}, err2
}

var errIssuerMismatch = errors.New("issuer mismatch")

// errRefusedDocument is a document that parses but names an endpoint
// tokend will not use; the other location is not tried.
var errRefusedDocument = errors.New("refused metadata")

func fetchMetadata(ctx context.Context, hc *http.Client, loc, issuer string) (Endpoints, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return Endpoints{}, &Error{Op: opDiscovery, Class: Configuration, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	now := time.Now()
	resp, err := send(opDiscovery, "metadata document", hc, req)
	if err != nil {
		return Endpoints{}, err
	}
	malformed := func(why string) error {
		return &Error{Op: opDiscovery, Status: resp.status, Class: Transient, Err: fmt.Errorf("%w: %s: %s", ErrMalformed, loc, why)}
	}
	if resp.status != http.StatusOK {
		e := httpError(opDiscovery, now, resp.status, resp.header, "", "", "", resp.body, resp.complete, "issuer", nil)
		e.Err = fmt.Errorf("%s: %w", loc, e.Err)
		return Endpoints{}, e
	}
	if !resp.complete {
		return Endpoints{}, malformed(fmt.Sprintf("document over %d bytes", maxBody))
	}
	var ep Endpoints
	if err := json.Unmarshal(resp.body, &ep); err != nil {
		return Endpoints{}, malformed(describeBody(resp.header.Get("Content-Type"), resp.body, true, resp.status, "issuer"))
	}
	if strings.TrimSuffix(ep.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
		return Endpoints{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
			Err: fmt.Errorf("%w: %s names issuer %q, want %q", errIssuerMismatch, loc, clean(ep.Issuer, 200, nil), issuer)}
	}
	ep.Issuer = issuer
	if ep.Token == "" {
		return Endpoints{}, malformed("no token_endpoint")
	}
	fields := ep.Fields()
	for _, f := range fields {
		if f.URL == "" {
			continue
		}
		if eu, err := url.Parse(f.URL); err != nil || (eu.Scheme != "https" && eu.Scheme != "http") || eu.Host == "" || Printable(f.URL) != f.URL {
			return Endpoints{}, malformed(f.Name + " is not an http(s) URL")
		}
		// The rule a URL written in the configuration has to follow:
		// secrets go over https, or in clear text only to this host.
		if err := CheckEndpointURL(f.URL); err != nil {
			return Endpoints{}, &Error{Op: opDiscovery, Status: resp.status, Class: Configuration,
				Err: fmt.Errorf("%w: %s: %s %w", errRefusedDocument, loc, f.Name, err)}
		}
	}
	return ep, nil
}
