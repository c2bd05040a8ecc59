package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// registrationMetadata is RFC 7591 §2's client metadata, as sent.
type registrationMetadata struct {
	ClientName   string   `json:"client_name,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	GrantTypes   []string `json:"grant_types,omitempty"`
	// ResponseTypes is a pointer so that an empty list is sent as []: an
	// omitted one means ["code"] (RFC 7591 §2), which needs redirect URIs.
	ResponseTypes   *[]string  `json:"response_types,omitempty"`
	AuthMethod      AuthMethod `json:"token_endpoint_auth_method,omitempty"`
	Scope           string     `json:"scope,omitempty"`
	ApplicationType string     `json:"application_type,omitempty"`
	// JWKS is the public key of a private_key_jwt client (RFC 7591 §2).
	JWKS       json.RawMessage `json:"jwks,omitempty"`
	SigningAlg string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	// DPoPBound is RFC 9449 §5.2's dpop_bound_access_tokens.
	DPoPBound bool `json:"dpop_bound_access_tokens,omitempty"`
}

func metadataOf(r RegistrationRequest) registrationMetadata {
	m := registrationMetadata{
		ClientName:      r.ClientName,
		RedirectURIs:    r.RedirectURIs,
		GrantTypes:      r.GrantTypes,
		AuthMethod:      r.AuthMethod,
		Scope:           r.Scope,
		ApplicationType: r.ApplicationType,
		JWKS:            r.JWKS,
		SigningAlg:      r.SigningAlg,
		DPoPBound:       r.DPoPBound,
	}
	if r.ResponseTypes != nil {
		m.ResponseTypes = &r.ResponseTypes
	}
	if m.ApplicationType == "" && len(r.RedirectURIs) > 0 && !slices.ContainsFunc(r.RedirectURIs, notLoopbackHTTP) {
		// OpenID Connect Registration's default is "web", whose redirect
		// URIs may not be on localhost: servers that apply it refuse a
		// loopback redirect URI unless the client says it is native.
		m.ApplicationType = "native"
	}
	return m
}

// notLoopbackHTTP reports whether uri is anything but an http URL to a
// loopback host (RFC 8252 §7.3's redirect URI of a native app).
func notLoopbackHTTP(uri string) bool {
	u, err := url.Parse(uri)
	return err != nil || u.Scheme != "http" || !IsLoopbackHost(u.Hostname())
}

// ChooseAuthMethod chooses the token_endpoint_auth_method to register a
// client with (RFC 7591 §2) among those the authorization server lists
// (token_endpoint_auth_methods_supported): client_secret_basic, then
// client_secret_post, then none. haveSecret says whether the client may
// use a secret: true for dynamic registration, where tokend keeps the
// secret the server issues; false limits the choice to none. An empty
// list is RFC 8414 §2's default, client_secret_basic (none without a
// secret). A list with none of these is a Configuration error naming
// what the server supports.
func ChooseAuthMethod(supported []string, haveSecret bool) (AuthMethod, error) {
	prefs := []AuthMethod{AuthBasic, AuthPost, AuthNone}
	if !haveSecret {
		prefs = []AuthMethod{AuthNone}
	}
	if len(supported) == 0 {
		return prefs[0], nil
	}
	for _, m := range prefs {
		if slices.Contains(supported, string(m)) {
			return m, nil
		}
	}
	listed := make([]string, len(supported))
	for i, s := range supported {
		listed[i] = clean(s, 60, nil)
	}
	want := "client_secret_basic, client_secret_post or none"
	if !haveSecret {
		want = "none (the client has no secret)"
	}
	return "", &Error{Op: opRegister, Class: Configuration,
		Err: fmt.Errorf("the authorization server authenticates clients at its token endpoint by %s only; tokend registers clients with %s", strings.Join(listed, ", "), want)}
}

// registrationResponse is RFC 7591 §3.2.1's answer (and §3.2.2's error).
type registrationResponse struct {
	ClientID                string      `json:"client_id"`
	ClientSecret            string      `json:"client_secret"`
	RegistrationAccessToken string      `json:"registration_access_token"`
	RegistrationClientURI   string      `json:"registration_client_uri"`
	ClientSecretExpiresAt   json.Number `json:"client_secret_expires_at"`
	AuthMethod              AuthMethod  `json:"token_endpoint_auth_method"`

	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// Register registers a client dynamically (RFC 7591): a JSON POST of the
// client metadata to endpoint, answered 201 (or 200) with the client
// information. Errors of §3.2.2 (invalid_redirect_uri,
// invalid_client_metadata, ...) are Configuration. The endpoint, and the
// registration_client_uri returned, must pass CheckEndpointURL; the values
// returned are checked by checkRegistration. Redirects are not followed
// (ErrRedirect). hc nil means a client with a 30 s timeout. It is safe for
// concurrent use.
func Register(ctx context.Context, hc *http.Client, endpoint string, r RegistrationRequest) (*Registration, error) {
	if err := needEndpoint(opRegister, "registration", endpoint); err != nil {
		return nil, err
	}
	body, err := json.Marshal(metadataOf(r))
	if err != nil {
		return nil, &Error{Op: opRegister, Class: Configuration, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Op: opRegister, Class: Configuration, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	now := time.Now()
	resp, err := send(opRegister, "registration endpoint", hc, req)
	if err != nil {
		return nil, err
	}
	var rr registrationResponse
	parsed := resp.complete && json.Unmarshal(resp.body, &rr) == nil
	if resp.status != http.StatusCreated && resp.status != http.StatusOK {
		return nil, httpError(opRegister, now, resp.status, resp.header, rr.Error, rr.ErrorDescription, "", resp.body, resp.complete, "error", nil)
	}
	if !parsed || rr.ClientID == "" || rr.Error != "" {
		// A 2xx with an error field fails by its code, like the token
		// endpoint; otherwise it is malformed.
		return nil, httpError(opRegister, now, resp.status, resp.header, rr.Error, rr.ErrorDescription, "", resp.body, resp.complete, "client_id", nil)
	}
	if e := checkRegistration(resp, rr); e != nil {
		return nil, e
	}
	reg := &Registration{
		ClientID:                rr.ClientID,
		ClientSecret:            NewSecret(rr.ClientSecret),
		RegistrationAccessToken: NewSecret(rr.RegistrationAccessToken),
		RegistrationClientURI:   rr.RegistrationClientURI,
		AuthMethod:              AuthMethod(Printable(string(rr.AuthMethod))),
	}
	if rr.ClientSecretExpiresAt != "" {
		at, err := rr.ClientSecretExpiresAt.Int64()
		if err != nil || at < 0 {
			return nil, &Error{Op: opRegister, Status: resp.status, Class: Transient, Err: fmt.Errorf("%w: client_secret_expires_at is not a time", ErrMalformed)}
		}
		if at > 0 { // 0: never expires (RFC 7591 §3.2.1)
			reg.ClientSecretExpiresAt = time.Unix(at, 0)
		}
	}
	if reg.AuthMethod == "" {
		// The server kept what was asked, whose default (RFC 7591 §2)
		// is client_secret_basic.
		switch {
		case r.AuthMethod != "":
			reg.AuthMethod = r.AuthMethod
		case reg.ClientSecret.IsZero():
			reg.AuthMethod = AuthNone
		default:
			reg.AuthMethod = AuthBasic
		}
	}
	return reg, nil
}

// checkRegistration checks the values of a registration answer that tokend
// sends, stores or prints: no repeated key; client_id and client_secret of
// RFC 6749's VSCHAR (printable ASCII); a registration access token that is
// a bearer token (RFC 6750 b64token); a registration_client_uri that is an
// http(s) URL passing CheckEndpointURL (a Configuration error naming the
// field when it does not: the provider would have tokend send the
// registration access token in clear text).
func checkRegistration(resp response, rr registrationResponse) *Error {
	bad := func(why string) *Error { return malformedAnswer(opRegister, resp.status, why) }
	switch k := duplicateKey(resp.body, false); {
	case k != "":
		return bad("key " + k + " occurs more than once")
	case !isVSCHARs(rr.ClientID):
		return bad("client_id has characters other than printable ASCII")
	case !isVSCHARs(rr.ClientSecret):
		return bad("client_secret has characters other than printable ASCII")
	case rr.RegistrationAccessToken != "" && !isB64token(rr.RegistrationAccessToken):
		return bad("registration_access_token has characters outside RFC 6750's b64token syntax")
	case rr.RegistrationClientURI == "":
		return nil
	case !isHTTPURL(rr.RegistrationClientURI) || Printable(rr.RegistrationClientURI) != rr.RegistrationClientURI:
		return bad("registration_client_uri is not an http(s) URL")
	}
	if err := CheckEndpointURL(rr.RegistrationClientURI); err != nil {
		return &Error{Op: opRegister, Status: resp.status, Class: Configuration, Err: fmt.Errorf("registration_client_uri %w", err)}
	}
	return nil
}
