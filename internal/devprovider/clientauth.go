package devprovider

import (
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// authenticate checks the client's credentials exactly per its AuthMethod:
// client_secret_basic in the Authorization header (both parts URL-decoded,
// RFC 6749 §2.3.1), client_secret_post in the body, none with client_id
// only, private_key_jwt and client_secret_jwt with a client assertion
// (RFC 7523 §2.2), tls_client_auth and self_signed_tls_client_auth with
// the certificate of the TLS connection at an mtls_endpoint_aliases URL
// (RFC 8705). Anything else is invalid_client.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, form url.Values) (*clientState, *oauthError) {
	c, e := s.authenticateAny(w, r, form)
	if e != nil && e.Code == "invalid_client" {
		s.mu.Lock()
		s.stats.ClientAuthFailures++
		s.mu.Unlock()
	}
	return c, e
}

func (s *Server) authenticateAny(w http.ResponseWriter, r *http.Request, form url.Values) (*clientState, *oauthError) {
	hasBasic := r.Header.Get("Authorization") != ""
	hasAssertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	n := 0
	for _, b := range []bool{hasBasic, hasAssertion, form.Has("client_secret")} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, invalidRequest("more than one client authentication method")
	}
	if hasAssertion {
		return s.authenticateAssertion(w, r, form)
	}
	var id, secret, method string
	if hasBasic {
		u, p, ok := r.BasicAuth()
		if !ok {
			return nil, invalidClient()
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return nil, invalidClient()
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, invalidClient()
		}
		method = AuthMethodBasic
	} else if form.Has("client_secret") {
		id, secret, method = form.Get("client_id"), form.Get("client_secret"), AuthMethodPost
	} else {
		id, method = form.Get("client_id"), AuthMethodNone
	}
	note(w, "client_id", id)
	if id == "" {
		return nil, invalidClient()
	}
	s.mu.Lock()
	c, ok := s.clients[id]
	s.mu.Unlock()
	if !ok {
		return nil, invalidClient()
	}
	if method == AuthMethodNone && (c.AuthMethod == AuthMethodTLS || c.AuthMethod == AuthMethodSelfSignedTLS) {
		if e := s.verifyClientCert(r, c); e != nil {
			return nil, e
		}
		return c, nil
	}
	if c.AuthMethod != method {
		return nil, invalidClient()
	}
	if method != AuthMethodNone && subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return nil, invalidClient()
	}
	return c, nil
}

// authenticateAssertion verifies a client assertion (RFC 7523 §3, OpenID
// Connect Core §9): type, alg allowed for the client, signature by one of
// its keys (or HMAC with its secret), iss = sub = client_id, aud naming
// this server, exp in the future and a jti never seen before.
func (s *Server) authenticateAssertion(w http.ResponseWriter, r *http.Request, form url.Values) (*clientState, *oauthError) {
	assertion := form.Get("client_assertion")
	s.mu.Lock()
	s.recordLocked(assertion)
	s.mu.Unlock()
	fail := func(replay bool, format string, args ...any) (*clientState, *oauthError) {
		s.mu.Lock()
		s.stats.AssertionFailures++
		if replay {
			s.stats.AssertionReplays++
		}
		s.mu.Unlock()
		return nil, invalidClientf(format, args...)
	}
	if t := form.Get("client_assertion_type"); t != ClientAssertionType {
		return fail(false, "client_assertion_type must be %s", ClientAssertionType)
	}
	if assertion == "" {
		return fail(false, "missing client_assertion")
	}
	jws, err := parseJWS(assertion, append(slices.Clone(asymmetricAlgs), hmacAlgs...))
	if err != nil {
		return fail(false, "client assertion: %v", err)
	}
	id := form.Get("client_id")
	if id == "" {
		// The client is named by the assertion's iss, checked below once
		// the signature is.
		var unverified claims
		if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified) != nil {
			return fail(false, "client assertion: claims are not a JSON object")
		}
		id = unverified.Issuer
	}
	note(w, "client_id", id)
	s.mu.Lock()
	c, ok := s.clients[id]
	s.mu.Unlock()
	if !ok || id == "" {
		return fail(false, "unknown client")
	}
	note(w, "client_auth", c.AuthMethod)
	var algs []jose.SignatureAlgorithm
	var keys []any
	h := jws.Signatures[0].Header
	switch c.AuthMethod {
	case AuthMethodPrivateKeyJWT:
		algs, keys = asymmetricAlgs, candidateKeys(c.jwks, h)
	case AuthMethodSecretJWT:
		algs, keys = hmacAlgs, []any{[]byte(c.Secret)}
	default:
		return fail(false, "client is registered for %s, not a client assertion", c.AuthMethod)
	}
	alg := jose.SignatureAlgorithm(h.Algorithm)
	if !slices.Contains(algs, alg) || (c.SigningAlg != "" && string(alg) != c.SigningAlg) {
		return fail(false, "client assertion alg %s is not allowed for this client", alg)
	}
	if c.jwksErr != nil {
		return fail(false, "client's %v", c.jwksErr)
	}
	if need := hmacKeySize[alg]; len(c.Secret) < need && c.AuthMethod == AuthMethodSecretJWT {
		return fail(false, "the client secret is shorter than the %d bytes %s needs (RFC 7518 §3.2)", need, alg)
	}
	cl, err := verifyWith(jws, keys)
	if err != nil {
		return fail(false, "client assertion: %v", err)
	}
	now := s.now()
	iss := s.issuer(r)
	switch {
	case cl.Issuer != c.ID || cl.Subject != c.ID:
		return fail(false, "client assertion iss and sub must both be the client_id")
	case !audienceOK(cl.Audience, []string{iss, iss + "/token", iss + "/mtls/token", iss + r.URL.Path}):
		return fail(false, "client assertion aud %q names neither the token endpoint nor the issuer", []string(cl.Audience))
	case cl.ID == "":
		return fail(false, "client assertion has no jti")
	}
	if err := checkTimes(cl, now, s.opts.skew()); err != nil {
		return fail(false, "client assertion: %v", err)
	}
	s.mu.Lock()
	fresh := s.useJTILocked("client_assertion:"+c.ID, cl.ID, now, cl.Expiry.Time())
	s.mu.Unlock()
	if !fresh {
		return fail(true, "client assertion jti was already used")
	}
	return c, nil
}

// verifyClientCert checks the client certificate of an RFC 8705 client:
// only at the mtls_endpoint_aliases (a provider's other endpoints do not
// ask for certificates), valid by the server's clock, and then either
// chained to Options.ClientCAs with the client's subject DN
// (tls_client_auth) or pinned in the client's JWKS
// (self_signed_tls_client_auth).
func (s *Server) verifyClientCert(r *http.Request, c *clientState) *oauthError {
	if r.TLS == nil || !strings.HasPrefix(r.URL.Path, mtlsPrefix+"/") {
		return invalidClientf("%s needs a client certificate at the mtls_endpoint_aliases", c.AuthMethod)
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return invalidClientf("no client certificate")
	}
	leaf := r.TLS.PeerCertificates[0]
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return invalidClientf("client certificate expired or not yet valid")
	}
	switch c.AuthMethod {
	case AuthMethodTLS:
		inter := x509.NewCertPool()
		for _, ic := range r.TLS.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		roots := s.opts.ClientCAs
		if roots == nil {
			roots = s.CertPool()
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if _, err := leaf.Verify(opts); err != nil {
			return invalidClientf("client certificate does not chain to a trusted CA")
		}
		if leaf.Subject.String() != c.TLSSubjectDN {
			return invalidClientf("client certificate subject %q is not the registered tls_client_auth_subject_dn", leaf.Subject.String())
		}
	case AuthMethodSelfSignedTLS:
		if c.jwksErr != nil {
			return invalidClientf("client's %v", c.jwksErr)
		}
		if !pinned(c.jwks, leaf) {
			return invalidClientf("client certificate is not in the client's jwks")
		}
	}
	return nil
}

// pinned reports whether cert's public key is one of set's keys, or cert
// is in one of their x5c chains.
func pinned(set *jose.JSONWebKeySet, cert *x509.Certificate) bool {
	if set == nil {
		return false
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return false
	}
	for _, k := range set.Keys {
		if pub.Equal(k.Key) {
			return true
		}
		for _, xc := range k.Certificates {
			if xc.Equal(cert) {
				return true
			}
		}
	}
	return false
}

// hasClientAuth reports whether a request carries any client
// authentication (or names a client).
func hasClientAuth(r *http.Request, form url.Values) bool {
	return r.Header.Get("Authorization") != "" || form.Has("client_id") || form.Has("client_secret") ||
		form.Has("client_assertion") || form.Has("client_assertion_type")
}
