package devprovider

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// tokenExchange is RFC 8693 token exchange: the subject token (and actor
// token, if any) must be an access or id token this server issued and that
// is still valid; the scope may only narrow the subject token's
// (downscoping); audience and resource are recorded on the new access
// token, which has no refresh token.
func (s *Server) tokenExchange(c *clientState, form url.Values, now time.Time, at, rt string, alter FaultKind, iss, jkt string) (*tokenResponse, *oauthError) {
	subjectToken, subjectType := form.Get("subject_token"), form.Get("subject_token_type")
	actorToken, actorType := form.Get("actor_token"), form.Get("actor_token_type")
	s.mu.Lock()
	s.recordLocked(subjectToken, actorToken)
	s.mu.Unlock()
	switch {
	case subjectToken == "":
		return nil, invalidRequest("missing subject_token")
	case subjectType == "":
		return nil, invalidRequest("missing subject_token_type")
	case actorToken != "" && actorType == "":
		return nil, invalidRequest("actor_token without actor_token_type")
	case actorToken == "" && actorType != "":
		return nil, invalidRequest("actor_token_type without actor_token")
	}
	if rtt := form.Get("requested_token_type"); rtt != "" && rtt != TokenTypeAccess {
		return nil, invalidRequest("requested_token_type %q is not supported: only %s", rtt, TokenTypeAccess)
	}
	// Audience and resource may repeat (RFC 8693 §2.1).
	aud, res := formList(form, "audience"), formList(form, "resource")
	for _, u := range res {
		if pu, err := url.Parse(u); err != nil || !pu.IsAbs() || pu.Fragment != "" {
			return nil, errorf(http.StatusBadRequest, "invalid_target", "resource %q is not an absolute URI without fragment", u)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	subj, e := s.exchangeInputLocked("subject", subjectToken, subjectType, now)
	if e != nil {
		return nil, e
	}
	var actor string
	if actorToken != "" {
		act, e := s.exchangeInputLocked("actor", actorToken, actorType, now)
		if e != nil {
			return nil, e
		}
		actor = act.Subject
	}
	scope := subj.Scope
	if req := form.Get("scope"); req != "" {
		for _, sc := range strings.Fields(req) {
			if !hasScope(subj.Scope, sc) {
				return nil, errorf(http.StatusBadRequest, "invalid_scope", "scope %q is not in the subject token's scope", sc)
			}
		}
		scope = req
	}
	s.stats.Exchanges++
	g := grant{
		client: c, grantType: GrantTokenExchange, subject: subj.Subject, scope: scope, jkt: jkt,
		actor: actor, audience: aud, resource: res,
	}
	resp := s.issueLocked(g, now, at, rt, alter, iss)
	resp.IssuedTokenType = TokenTypeAccess
	return resp, nil
}

// exchangeInputLocked returns what the server knows of a subject or actor
// token of type typ.
func (s *Server) exchangeInputLocked(role, token, typ string, now time.Time) (TokenInfo, *oauthError) {
	var t *accessToken
	switch typ {
	case TokenTypeAccess:
		t = s.access[token]
	case TokenTypeID:
		t = s.idTokens[token]
	default:
		return TokenInfo{}, invalidRequest("%s_token_type %q is not supported", role, typ)
	}
	if t == nil || t.revoked || t.fam.revoked || !now.Before(t.expires) {
		return TokenInfo{}, invalidGrant("%s_token is not a valid token of this server", role)
	}
	return t.info, nil
}

// formList returns the values of a parameter that RFC 8693 lets repeat.
func formList(form url.Values, key string) []string {
	return slices.Clone(form[key])
}
