package devprovider

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// trustedIssuer is an AssertionIssuer with its keys parsed.
type trustedIssuer struct {
	AssertionIssuer
	keys    []any
	keysErr error
}

func (s *Server) addIssuer(ai AssertionIssuer) {
	ti := &trustedIssuer{AssertionIssuer: ai}
	set, err := parseJWKS(ai.JWKS)
	if err == nil && set == nil {
		err = errIssuerNoKeys
	}
	ti.keysErr = err
	if set != nil {
		for _, k := range set.Keys {
			ti.keys = append(ti.keys, k.Key)
		}
	}
	s.issuers[ai.Issuer] = ti
}

// AddAssertionIssuer trusts ai for the JWT-bearer grant, replacing any
// issuer with the same Issuer.
func (s *Server) AddAssertionIssuer(ai AssertionIssuer) {
	ai.JWKS = slices.Clone(ai.JWKS)
	ai.Audiences = slices.Clone(ai.Audiences)
	ai.Subjects = slices.Clone(ai.Subjects)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addIssuer(ai)
}

type issuerError string

func (e issuerError) Error() string { return string(e) }

const errIssuerNoKeys = issuerError("assertion issuer has no jwks")

// jwtBearer is the JWT-bearer grant (RFC 7523 §2.1, §3): the assertion is
// signed (asymmetric algs only) by a trusted issuer, names a subject, this
// server as audience, expires in the future, was not issued in the future
// and was never used. c is nil for an anonymous request. No refresh token is
// issued: the client signs a new assertion when the token is due.
func (s *Server) jwtBearer(c *clientState, r *http.Request, form url.Values, now time.Time, at, rt string, alter FaultKind, iss, jkt string) (*tokenResponse, *oauthError) {
	assertion := form.Get("assertion")
	if assertion == "" {
		return nil, invalidRequest("missing assertion")
	}
	s.mu.Lock()
	s.recordLocked(assertion)
	s.mu.Unlock()
	fail := func(replay bool, format string, args ...any) (*tokenResponse, *oauthError) {
		s.mu.Lock()
		s.stats.AssertionFailures++
		if replay {
			s.stats.AssertionReplays++
		}
		s.mu.Unlock()
		return nil, invalidGrant(format, args...)
	}
	jws, err := parseJWS(assertion, asymmetricAlgs)
	if err != nil {
		return fail(false, "assertion: %v", err)
	}
	// The issuer is looked up by the unverified iss; the signature by its
	// keys is what makes it true.
	var unverified claims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return fail(false, "assertion claims are not a JSON object")
	}
	s.mu.Lock()
	ti, ok := s.issuers[unverified.Issuer]
	s.mu.Unlock()
	if !ok || unverified.Issuer == "" {
		return fail(false, "assertion issuer %q is not trusted", unverified.Issuer)
	}
	if ti.keysErr != nil {
		return fail(false, "assertion issuer %q: %v", ti.Issuer, ti.keysErr)
	}
	cl, err := verifyWith(jws, ti.keys)
	if err != nil {
		return fail(false, "assertion: %v", err)
	}
	accepted := append([]string{iss, iss + "/token", iss + "/mtls/token"}, ti.Audiences...)
	if cl.Subject == "" && ti.SubjectOptional {
		cl.Subject = ti.Issuer
	}
	switch {
	case cl.Subject == "":
		return fail(false, "assertion has no sub")
	case len(ti.Subjects) > 0 && !slices.Contains(ti.Subjects, cl.Subject):
		return fail(false, "assertion subject %q is not allowed for issuer %q", cl.Subject, ti.Issuer)
	case !audienceOK(cl.Audience, accepted):
		return fail(false, "assertion aud %q names neither the token endpoint nor the issuer", []string(cl.Audience))
	case cl.ID == "":
		return fail(false, "assertion has no jti")
	}
	if err := checkTimes(cl, now, s.opts.skew()); err != nil {
		return fail(false, "assertion: %v", err)
	}
	s.mu.Lock()
	fresh := s.useJTILocked("assertion:"+ti.Issuer, cl.ID, now, cl.Expiry.Time())
	s.mu.Unlock()
	if !fresh {
		return fail(true, "assertion jti was already used")
	}
	if c == nil {
		c = &clientState{}
	}
	g := grant{client: c, grantType: GrantJWTBearer, subject: cl.Subject, scope: form.Get("scope"), jkt: jkt}
	return s.issueAlone(g, now, at, rt, alter, iss)
}
