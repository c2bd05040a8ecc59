package oauth

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// CheckClientIDMetadataURL checks a client_id that is the URL of a Client
// ID Metadata Document (draft-ietf-oauth-client-id-metadata-document §3):
// https, with a path other than "/", without "." or ".." path segments,
// fragment, or user information. http is accepted to a loopback host, as
// for endpoints (CheckEndpointURL), for local test servers; a real
// authorization server fetches the document from the internet and wants
// https. The error, nil when raw is acceptable, is meant to follow a
// field name.
func CheckClientIDMetadataURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%q is not an absolute https URL", clean(raw, 200, nil))
	case u.User != nil:
		return fmt.Errorf("%q has user information", safeURL(u))
	case strings.Contains(raw, "#"):
		return fmt.Errorf("%q has a fragment", safeURL(u))
	case Printable(raw) != raw || strings.ContainsAny(raw, " \t"):
		return fmt.Errorf("%q has characters a URL cannot", safeURL(u))
	case u.Path == "" || u.Path == "/":
		return fmt.Errorf("%q has no path: the document's URL must have one", safeURL(u))
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("%q has a %q path segment", safeURL(u), seg)
		}
	}
	if err := CheckEndpointURL(raw); err != nil {
		return err
	}
	return nil
}

// clientMetadataDocument is the document's JSON.
type clientMetadataDocument struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	ApplicationType         string   `json:"application_type,omitempty"`
}

// ClientMetadataDocument returns the Client ID Metadata Document the
// operator publishes at clientID for tokend to use clientID as its
// client_id at authorization servers that support such documents
// (client_id_metadata_document_supported): client_id equal to the
// document's URL, the redirect URI, a public client
// (token_endpoint_auth_method none) of the authorization code grant with
// refresh tokens, application_type native for a loopback redirect URI.
// clientID must pass CheckClientIDMetadataURL and redirectURI be an
// absolute http(s) URL without fragment; clientName may be empty. The
// JSON is indented and ends in a newline.
func ClientMetadataDocument(clientID, redirectURI, clientName string) ([]byte, error) {
	if err := CheckClientIDMetadataURL(clientID); err != nil {
		return nil, fmt.Errorf("client_id_metadata_document %w", err)
	}
	if ru, err := url.Parse(redirectURI); err != nil || !isHTTPURL(redirectURI) || strings.Contains(redirectURI, "#") || ru.User != nil || Printable(redirectURI) != redirectURI {
		return nil, fmt.Errorf("redirect URI %q is not an absolute http(s) URL without fragment", clean(redirectURI, 200, nil))
	}
	doc := clientMetadataDocument{
		ClientID:                clientID,
		ClientName:              Printable(clientName),
		RedirectURIs:            []string{redirectURI},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: string(AuthNone),
	}
	if !notLoopbackHTTP(redirectURI) {
		doc.ApplicationType = "native"
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
