package devprovider

import (
	"slices"
	"time"
)

// Stats count what the server saw since it started.
type Stats struct {
	// TokenRequests counts every request to the token endpoint.
	TokenRequests int
	// ByGrant counts token requests with a well-formed body by grant_type.
	ByGrant map[string]int
	// Refreshes counts successful refresh_token grants.
	Refreshes int
	// Reuses counts uses of a rotated-away refresh token (each revoked a
	// family).
	Reuses int
	// Registrations counts successful dynamic registrations.
	Registrations int
	// Revocations counts successful (200) revocation requests, including
	// those for unknown tokens.
	Revocations int
	// Faulted counts requests answered (or altered) by an injected fault.
	Faulted int

	// ClientAuthFailures counts invalid_client answers of client
	// authentication.
	ClientAuthFailures int
	// AssertionFailures counts refused client assertions and JWT-bearer
	// assertions (replays included); AssertionReplays those refused for a
	// jti already used.
	AssertionFailures, AssertionReplays int
	// ProofFailures counts refused DPoP proofs at the token endpoint and
	// the resource server (replays included, nonce challenges not);
	// ProofReplays those refused for a jti already used.
	ProofFailures, ProofReplays int
	// NonceChallenges counts use_dpop_nonce answers.
	NonceChallenges int
	// Exchanges counts successful token exchanges.
	Exchanges int
	// ResourceRequests counts requests to the resource server;
	// ResourceRefused those answered 401.
	ResourceRequests, ResourceRefused int
	// Resources records the RFC 8707 resource parameters received, one
	// entry per request that sent any: "authorize <resource>" for an
	// authorization request, "<grant_type> <resource>" for a token
	// request (repeated values joined with spaces).
	Resources []string
}

// TokenInfo is what the server knows of an access token it issued.
type TokenInfo struct {
	ClientID  string // "" for an anonymous JWT-bearer request
	GrantType string
	Subject   string
	Scope     string
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound
	// to; "" for a Bearer token.
	JKT string
	// Actor is the subject of a token exchange's actor token.
	Actor string
	// Audience and Resource are a token exchange's requested targets.
	Audience, Resource []string
	Expires            time.Time
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByGrant = make(map[string]int, len(s.stats.ByGrant))
	for k, v := range s.stats.ByGrant {
		st.ByGrant[k] = v
	}
	st.Resources = append([]string(nil), s.stats.Resources...)
	return st
}

// Issued returns every secret the server generated, in order: access,
// refresh and id tokens, authorization and device codes, the client
// secrets and registration access tokens of registered clients, the
// private keys of the certificates it made (PEM); and every
// secret it received: client assertions, JWT-bearer assertions, DPoP proofs,
// subject and actor tokens. Tests scan logs for them. Secrets given in
// Options or AddClient/AddUser are not included: the test knows them.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Valid reports whether accessToken was issued by this server and is
// neither expired (by Options.Now) nor revoked, directly or through its
// family.
func (s *Server) Valid(accessToken string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.access[accessToken]
	return ok && !at.revoked && !at.fam.revoked && now.Before(at.expires)
}

// RefreshValid reports whether refreshToken would be accepted now: issued,
// not rotated away, not expired, and its family not revoked.
func (s *Server) RefreshValid(refreshToken string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[refreshToken]
	return ok && s.refreshUsable(rt, now)
}

func (s *Server) refreshUsable(rt *refreshToken, now time.Time) bool {
	return !rt.used && !rt.fam.revoked && (rt.expires.IsZero() || now.Before(rt.expires))
}

// RevokeFamilyOf revokes the family of refreshToken, as a provider does
// when a user withdraws consent: the next refresh answers invalid_grant
// and the family's access tokens stop being Valid. Unknown tokens are
// ignored.
func (s *Server) RevokeFamilyOf(refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.refresh[refreshToken]; ok {
		rt.fam.revoked = true
	}
}

// TokenInfo returns what the server recorded of accessToken (its subject,
// DPoP binding, exchange actor and audience...), and false if it did not
// issue it. It says nothing of validity: see [Server.Valid].
func (s *Server) TokenInfo(accessToken string) (TokenInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.access[accessToken]
	if !ok {
		return TokenInfo{}, false
	}
	info := at.info
	info.Audience, info.Resource = slices.Clone(info.Audience), slices.Clone(info.Resource)
	return info, true
}

// RefreshJKT returns the thumbprint of the DPoP key refreshToken is bound
// to ("" when unbound), and false if the server did not issue it.
func (s *Server) RefreshJKT(refreshToken string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[refreshToken]
	if !ok {
		return "", false
	}
	return rt.jkt, true
}
