package devprovider

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer(r)
	doc := map[string]any{
		"issuer":                        iss,
		"authorization_endpoint":        iss + "/authorize",
		"token_endpoint":                iss + "/token",
		"revocation_endpoint":           iss + "/revoke",
		"device_authorization_endpoint": iss + "/device",
		"grant_types_supported": []string{
			GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantPassword, GrantDeviceCode,
			GrantJWTBearer, GrantTokenExchange,
		},
		"response_types_supported":                              []string{"code"},
		"response_modes_supported":                              []string{"query"},
		"code_challenge_methods_supported":                      []string{"S256"},
		"token_endpoint_auth_methods_supported":                 s.authMethods(),
		"revocation_endpoint_auth_methods_supported":            s.authMethods(),
		"token_endpoint_auth_signing_alg_values_supported":      algNames(append(slices.Clone(asymmetricAlgs), hmacAlgs...)),
		"revocation_endpoint_auth_signing_alg_values_supported": algNames(append(slices.Clone(asymmetricAlgs), hmacAlgs...)),
		"dpop_signing_alg_values_supported":                     algNames(s.dpopAlgs()),
		"authorization_response_iss_parameter_supported":        true,
		"scopes_supported":                                      []string{"openid", "offline_access"},
		"subject_types_supported":                               []string{"public"},
		"id_token_signing_alg_values_supported":                 []string{"HS256"},
	}
	if s.opts.AllowRegistration {
		doc["registration_endpoint"] = iss + "/register"
	}
	if s.opts.MetadataDocuments {
		doc["client_id_metadata_document_supported"] = true
	}
	if s.TLS() {
		doc["mtls_endpoint_aliases"] = map[string]string{
			"token_endpoint":                iss + mtlsPrefix + "/token",
			"revocation_endpoint":           iss + mtlsPrefix + "/revoke",
			"device_authorization_endpoint": iss + mtlsPrefix + "/device",
		}
		doc["tls_client_certificate_bound_access_tokens"] = false
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(doc)
}

// registration is the RFC 7591 client metadata we understand; the rest is
// ignored, as §2 allows.
type registration struct {
	RedirectURIs            []string `json:"redirect_uris,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	// Key and certificate client authentication, DPoP.
	JWKS                        json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                     string          `json:"jwks_uri,omitempty"`
	TokenEndpointAuthSigningAlg string          `json:"token_endpoint_auth_signing_alg,omitempty"`
	TLSClientAuthSubjectDN      string          `json:"tls_client_auth_subject_dn,omitempty"`
	DPoPBoundAccessTokens       bool            `json:"dpop_bound_access_tokens,omitempty"`
}

type registrationResponse struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64  `json:"client_id_issued_at"`
	ClientSecretExpiresAt   int64  `json:"client_secret_expires_at"`
	RegistrationAccessToken string `json:"registration_access_token"`
	RegistrationClientURI   string `json:"registration_client_uri"`
	registration
}

// handleRegister implements RFC 7591 dynamic registration (open: no
// initial access token).
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AllowRegistration {
		http.NotFound(w, r)
		return
	}
	if f, ok := s.takeFault(EndpointRegister, ""); ok && s.applyFault(w, r, f) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, invalidRequest("Content-Type must be application/json"))
		return
	}
	var md registration
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&md); err != nil {
		writeError(w, errorf(http.StatusBadRequest, "invalid_client_metadata", "malformed or too large JSON body"))
		return
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = AuthMethodBasic
	}
	if e := s.checkRegistration(&md); e != nil {
		writeError(w, e)
		return
	}
	for _, u := range md.RedirectURIs {
		pu, err := url.Parse(u)
		if err != nil || !pu.IsAbs() || pu.Fragment != "" {
			writeError(w, errorf(http.StatusBadRequest, "invalid_redirect_uri", "redirect URI %q is not an absolute URI without fragment", u))
			return
		}
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{GrantAuthorizationCode}
	}
	if len(md.ResponseTypes) == 0 {
		md.ResponseTypes = []string{"code"}
	}
	c := &clientState{
		Client: Client{
			ID:           "client_" + strings.ToLower(newSecret("")[:16]),
			AuthMethod:   md.TokenEndpointAuthMethod,
			RedirectURIs: md.RedirectURIs,
			JWKS:         md.JWKS,
			SigningAlg:   md.TokenEndpointAuthSigningAlg,
			TLSSubjectDN: md.TLSClientAuthSubjectDN,
			DPoPBound:    md.DPoPBoundAccessTokens,
		},
		regToken:   newSecret("rat_"),
		issuedAt:   s.now(),
		name:       md.ClientName,
		grantTypes: md.GrantTypes,
		scope:      md.Scope,
	}
	c.jwks, _ = parseJWKS(md.JWKS) // checked by checkRegistration
	switch c.AuthMethod {
	case AuthMethodBasic, AuthMethodPost:
		c.Secret = newSecret("cs_")
	case AuthMethodSecretJWT:
		// Long enough to key HS512 (RFC 7518 §3.2).
		c.Secret = newSecret("cs_") + rand.Text() + rand.Text()
	}
	s.mu.Lock()
	s.clients[c.ID] = c
	s.recordLocked(c.Secret, c.regToken)
	s.stats.Registrations++
	s.mu.Unlock()
	note(w, "client_id", c.ID)
	writeJSON(w, http.StatusCreated, s.registrationResponse(s.issuer(r), c))
}

func (s *Server) registrationResponse(iss string, c *clientState) registrationResponse {
	return registrationResponse{
		ClientID:                c.ID,
		ClientSecret:            c.Secret,
		ClientIDIssuedAt:        c.issuedAt.Unix(),
		ClientSecretExpiresAt:   0,
		RegistrationAccessToken: c.regToken,
		RegistrationClientURI:   iss + "/register/" + c.ID,
		registration: registration{
			RedirectURIs:                c.RedirectURIs,
			TokenEndpointAuthMethod:     c.AuthMethod,
			GrantTypes:                  c.grantTypes,
			ResponseTypes:               []string{"code"},
			ClientName:                  c.name,
			Scope:                       c.scope,
			JWKS:                        c.JWKS,
			TokenEndpointAuthSigningAlg: c.SigningAlg,
			TLSClientAuthSubjectDN:      c.TLSSubjectDN,
			DPoPBoundAccessTokens:       c.DPoPBound,
		},
	}
}

// handleRegistration is RFC 7592 read (GET) and delete (DELETE) of a
// registered client, with its registration access token as bearer token.
func (s *Server) handleRegistration(w http.ResponseWriter, r *http.Request) {
	if !s.opts.AllowRegistration {
		http.NotFound(w, r)
		return
	}
	id := r.PathValue("id")
	note(w, "client_id", id)
	iss := s.issuer(r)
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	c, found := s.clients[id]
	if !ok || !found || c.regToken == "" || subtle.ConstantTimeCompare([]byte(bearer), []byte(c.regToken)) != 1 {
		s.mu.Unlock()
		note(w, "error", "invalid_token")
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, errorf(http.StatusUnauthorized, "invalid_token", "bad registration access token"))
		return
	}
	if r.Method == http.MethodDelete {
		delete(s.clients, id)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	resp := s.registrationResponse(iss, c)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// authMethods are the client authentication methods the server accepts;
// the RFC 8705 ones only when it runs TLS.
func (s *Server) authMethods() []string {
	m := []string{AuthMethodBasic, AuthMethodPost, AuthMethodNone, AuthMethodPrivateKeyJWT, AuthMethodSecretJWT}
	if s.TLS() {
		m = append(m, AuthMethodTLS, AuthMethodSelfSignedTLS)
	}
	return m
}

func algNames(algs []jose.SignatureAlgorithm) []string {
	out := make([]string, len(algs))
	for i, a := range algs {
		out[i] = string(a)
	}
	return out
}

// checkRegistration checks the key, certificate and DPoP metadata of a
// registration (RFC 7591 §2, RFC 8705 §2.1.2, RFC 9449 §5.2) against its
// token_endpoint_auth_method.
func (s *Server) checkRegistration(md *registration) *oauthError {
	bad := func(format string, args ...any) *oauthError {
		return errorf(http.StatusBadRequest, "invalid_client_metadata", format, args...)
	}
	if md.JWKSURI != "" {
		return bad("jwks_uri is not supported: send jwks")
	}
	if _, err := parseJWKS(md.JWKS); err != nil {
		return bad("%v", err)
	}
	hasKeys := len(md.JWKS) > 0
	switch md.TokenEndpointAuthMethod {
	case AuthMethodBasic, AuthMethodPost, AuthMethodNone:
	case AuthMethodPrivateKeyJWT, AuthMethodSelfSignedTLS:
		if !hasKeys {
			return bad("%s needs jwks", md.TokenEndpointAuthMethod)
		}
	case AuthMethodSecretJWT:
	case AuthMethodTLS:
		if md.TLSClientAuthSubjectDN == "" {
			return bad("tls_client_auth needs tls_client_auth_subject_dn")
		}
	default:
		return bad("unsupported token_endpoint_auth_method %q", md.TokenEndpointAuthMethod)
	}
	if alg := md.TokenEndpointAuthSigningAlg; alg != "" {
		var ok bool
		switch md.TokenEndpointAuthMethod {
		case AuthMethodPrivateKeyJWT:
			ok = slices.Contains(asymmetricAlgs, jose.SignatureAlgorithm(alg))
		case AuthMethodSecretJWT:
			ok = slices.Contains(hmacAlgs, jose.SignatureAlgorithm(alg))
		}
		if !ok {
			return bad("token_endpoint_auth_signing_alg %q does not fit %s", alg, md.TokenEndpointAuthMethod)
		}
	}
	return nil
}
