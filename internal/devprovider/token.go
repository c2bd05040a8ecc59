package devprovider

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

type tokenResponse struct {
	AccessToken           string `json:"access_token,omitempty"`
	TokenType             string `json:"token_type,omitempty"`
	ExpiresIn             any    `json:"expires_in,omitempty"` // int64, or a string for FaultStringExpiresIn
	RefreshToken          string `json:"refresh_token,omitempty"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in,omitempty"`
	Scope                 string `json:"scope,omitempty"`
	IDToken               string `json:"id_token,omitempty"`
	IssuedTokenType       string `json:"issued_token_type,omitempty"`
}

// grant is what a successful grant issues tokens for.
type grant struct {
	client    *clientState
	grantType string
	jkt       string // bind the tokens to this DPoP key
	// token exchange
	actor              string
	audience, resource []string

	subject string
	scope   string
	nonce   string
	fam     *family // nil: a new family
	refresh bool    // issue (or, for a refresh grant, return) a refresh token
	// for the refresh grant: the token presented
	presented      *refreshToken
	presentedValue string
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.TokenRequests++
	s.mu.Unlock()
	if !s.wait(r, time.Duration(s.latency.Load())) {
		return
	}
	form, e := parseForm(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	gt := form.Get("grant_type")
	note(w, "grant_type", gt)
	s.mu.Lock()
	s.stats.ByGrant[gt]++
	if res := form["resource"]; len(res) > 0 {
		s.stats.Resources = append(s.stats.Resources, gt+" "+strings.Join(res, " "))
	}
	s.mu.Unlock()

	alter := FaultNone
	if f, ok := s.takeFault(EndpointToken, gt); ok {
		if s.applyFault(w, r, f) {
			return
		}
		alter = f.Kind
	}
	if s.opts.DPoPNonce {
		// RFC 9449 §8.2: every answer may carry the nonce to use next.
		s.mu.Lock()
		w.Header().Set("DPoP-Nonce", s.nonces[0])
		s.mu.Unlock()
	}

	// The proof is checked before the client, so that a nonce challenge
	// does not use up a client assertion's jti.
	jkt, e := s.tokenDPoP(w, r, alter)
	if e != nil {
		writeError(w, e)
		return
	}
	var c *clientState
	if gt == GrantJWTBearer && !hasClientAuth(r, form) {
		// RFC 7523 §2.1: client authentication is optional for this grant.
		note(w, "client_id", "(anonymous)")
	} else if c, e = s.authenticate(w, r, form); e != nil {
		writeError(w, e)
		return
	}
	if c != nil && c.DPoPBound && jkt == "" && alter != FaultDPoPDowngrade {
		writeError(w, invalidProof("a DPoP proof is required for this client (dpop_bound_access_tokens)"))
		return
	}
	now := s.now()
	// Secrets are drawn before taking the lock, to keep it short.
	at, rt := newSecret("at_"), newSecret("rt_")
	var resp *tokenResponse
	switch gt {
	case GrantAuthorizationCode:
		resp, e = s.authorizationCode(c, form, now, at, rt, alter, s.issuer(r), jkt)
	case GrantRefreshToken:
		resp, e = s.refreshGrant(c, form, now, at, rt, alter, s.issuer(r), jkt)
	case GrantClientCredentials:
		if c.AuthMethod == AuthMethodNone {
			e = errorf(http.StatusBadRequest, "unauthorized_client", "public clients cannot use client_credentials")
			break
		}
		g := grant{client: c, grantType: gt, jkt: jkt, subject: c.ID, scope: form.Get("scope"), refresh: s.opts.RefreshForClientCredentials}
		resp, e = s.issueAlone(g, now, at, rt, alter, s.issuer(r))
	case GrantPassword:
		user, pass := form.Get("username"), form.Get("password")
		s.mu.Lock()
		want, ok := s.users[user]
		s.mu.Unlock()
		if user == "" || !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
			e = invalidGrant("invalid username or password")
			break
		}
		g := grant{client: c, grantType: gt, jkt: jkt, subject: user, scope: form.Get("scope"), refresh: true}
		resp, e = s.issueAlone(g, now, at, rt, alter, s.issuer(r))
	case GrantDeviceCode:
		resp, e = s.deviceGrant(c, form, now, at, rt, alter, s.issuer(r), jkt)
	case GrantJWTBearer:
		resp, e = s.jwtBearer(c, r, form, now, at, rt, alter, s.issuer(r), jkt)
	case GrantTokenExchange:
		resp, e = s.tokenExchange(c, form, now, at, rt, alter, s.issuer(r), jkt)
	case "":
		e = invalidRequest("missing grant_type")
	default:
		e = errorf(http.StatusBadRequest, "unsupported_grant_type", "unsupported grant_type %q", gt)
	}
	if e != nil {
		writeError(w, e)
		return
	}
	switch alter {
	case FaultStringExpiresIn:
		if n, ok := resp.ExpiresIn.(int64); ok {
			resp.ExpiresIn = strconv.FormatInt(n, 10)
		}
	case FaultNoExpiresIn:
		resp.ExpiresIn = nil
	case FaultLowercaseBearer:
		resp.TokenType = "bearer"
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) issueAlone(g grant, now time.Time, at, rt string, alter FaultKind, iss string) (*tokenResponse, *oauthError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(g, now, at, rt, alter, iss), nil
}

// issueLocked records and returns a token set for g.
func (s *Server) issueLocked(g grant, now time.Time, at, rt string, alter FaultKind, iss string) *tokenResponse {
	if g.fam == nil {
		g.fam = &family{}
	}
	info := TokenInfo{
		ClientID: g.client.ID, GrantType: g.grantType, Subject: g.subject, Scope: g.scope, JKT: g.jkt,
		Actor: g.actor, Audience: g.audience, Resource: g.resource, Expires: now.Add(s.opts.AccessTTL),
	}
	s.access[at] = &accessToken{clientID: g.client.ID, expires: info.Expires, fam: g.fam, info: info}
	resp := &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   ceilSeconds(s.opts.AccessTTL),
		Scope:       g.scope,
	}
	if g.jkt != "" {
		resp.TokenType = "DPoP"
	}
	s.recordLocked(at)
	if g.refresh && alter != FaultNoRefreshToken {
		var cur *refreshToken
		switch {
		case g.presented != nil && !s.opts.Rotate:
			cur, rt = g.presented, g.presentedValue
		default:
			if g.presented != nil {
				g.presented.used = true
			}
			cur = &refreshToken{clientID: g.client.ID, subject: g.subject, scope: g.scope, fam: g.fam}
			if g.client.AuthMethod == AuthMethodNone {
				// RFC 9449 §5: a public client's refresh token is bound
				// to its DPoP key, which is all that authenticates it.
				cur.jkt = g.jkt
			}
			if s.opts.RefreshTTL > 0 {
				cur.expires = now.Add(s.opts.RefreshTTL)
			}
			s.refresh[rt] = cur
			s.recordLocked(rt)
		}
		resp.RefreshToken = rt
		if !cur.expires.IsZero() {
			resp.RefreshTokenExpiresIn = ceilSeconds(cur.expires.Sub(now))
		}
	}
	if hasScope(g.scope, "openid") {
		resp.IDToken = s.idToken(iss, g.subject, g.client.ID, g.nonce, now)
		s.recordLocked(resp.IDToken)
		idInfo := info
		idInfo.JKT = ""
		s.idTokens[resp.IDToken] = &accessToken{clientID: g.client.ID, expires: info.Expires, fam: g.fam, info: idInfo}
	}
	return resp
}

func (s *Server) authorizationCode(c *clientState, form url.Values, now time.Time, at, rt string, alter FaultKind, iss, jkt string) (*tokenResponse, *oauthError) {
	value := form.Get("code")
	if value == "" {
		return nil, invalidRequest("missing code")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	code, ok := s.codes[value]
	switch {
	case !ok:
		return nil, invalidGrant("unknown authorization code")
	case code.used:
		// RFC 6749 §4.1.2: a replayed code revokes what it issued.
		if code.fam != nil {
			code.fam.revoked = true
		}
		return nil, invalidGrant("authorization code already used")
	case !now.Before(code.expires):
		return nil, invalidGrant("authorization code expired")
	case code.clientID != c.ID:
		return nil, invalidGrant("authorization code was issued to another client")
	case code.redirectURI != form.Get("redirect_uri"):
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	}
	verifier := form.Get("code_verifier")
	if code.challenge == "" && verifier != "" {
		return nil, invalidGrant("code_verifier sent but the authorization request had no code_challenge")
	}
	if code.challenge != "" && s256(verifier) != code.challenge {
		return nil, invalidGrant("PKCE verification failed")
	}
	code.used = true
	code.fam = &family{}
	g := grant{client: c, grantType: GrantAuthorizationCode, jkt: jkt, subject: code.subject, scope: code.scope, nonce: code.nonce, fam: code.fam, refresh: true}
	return s.issueLocked(g, now, at, rt, alter, iss), nil
}

func (s *Server) refreshGrant(c *clientState, form url.Values, now time.Time, at, rt string, alter FaultKind, iss, jkt string) (*tokenResponse, *oauthError) {
	value := form.Get("refresh_token")
	if value == "" {
		return nil, invalidRequest("missing refresh_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.refresh[value]
	switch {
	case !ok:
		return nil, invalidGrant("unknown refresh token")
	case old.clientID != c.ID:
		return nil, invalidGrant("refresh token was issued to another client")
	case old.fam.revoked:
		return nil, invalidGrant("refresh token revoked")
	case old.used:
		old.fam.revoked = true
		s.stats.Reuses++
		return nil, invalidGrant("refresh token reused: family revoked")
	case !old.expires.IsZero() && !now.Before(old.expires):
		return nil, invalidGrant("refresh token expired")
	case old.jkt != "" && jkt == "":
		return nil, invalidProof("the refresh token is DPoP-bound: a proof by its key is required")
	case old.jkt != "" && jkt != old.jkt:
		return nil, invalidGrant("the refresh token is bound to another DPoP key")
	}
	scope := old.scope
	if req := form.Get("scope"); req != "" {
		for _, sc := range strings.Fields(req) {
			if !hasScope(old.scope, sc) {
				return nil, errorf(http.StatusBadRequest, "invalid_scope", "scope %q was not granted", sc)
			}
		}
		scope = req
	}
	s.stats.Refreshes++
	g := grant{client: c, grantType: GrantRefreshToken, jkt: jkt, subject: old.subject, scope: scope, fam: old.fam, refresh: true, presented: old, presentedValue: value}
	return s.issueLocked(g, now, at, rt, alter, iss), nil
}

// handleRevoke implements RFC 7009: an authenticated client revokes one of
// its tokens; a refresh token takes its whole family with it. Unknown
// tokens, and other clients' tokens, are answered 200 too.
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	form, e := parseForm(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	if f, ok := s.takeFault(EndpointRevoke, ""); ok && s.applyFault(w, r, f) {
		return
	}
	c, e := s.authenticate(w, r, form)
	if e != nil {
		writeError(w, e)
		return
	}
	value := form.Get("token")
	if value == "" {
		writeError(w, invalidRequest("missing token"))
		return
	}
	s.mu.Lock()
	if at, ok := s.access[value]; ok && at.clientID == c.ID {
		at.revoked = true
		note(w, "revoked", "access_token")
	} else if rt, ok := s.refresh[value]; ok && rt.clientID == c.ID {
		rt.fam.revoked = true
		note(w, "revoked", "refresh_token")
	}
	s.stats.Revocations++
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

func hasScope(scope, want string) bool {
	return slices.Contains(strings.Fields(scope), want)
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// idToken returns an HS256 JWT signed with the server's random key. Nobody
// is expected to verify it; it only has to look like one.
func (s *Server) idToken(iss, sub, aud, nonce string, now time.Time) string {
	claims := map[string]any{
		"iss": iss, "sub": sub, "aud": aud,
		"iat": now.Unix(), "exp": now.Add(s.opts.AccessTTL).Unix(),
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	body, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(body)
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}
