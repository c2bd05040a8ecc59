package mcpbridge

import (
	"net/http"
	"strings"

	"github.com/tokend/tokend/oauth"
)

// wwwAuthenticate is a response's WWW-Authenticate fields as one string,
// cut at oauth.MaxChallengeBytes: what the daemon is told with a
// rejection or a step-up, and the client with an error answer.
func wwwAuthenticate(h http.Header) string {
	s := strings.Join(h.Values("WWW-Authenticate"), ", ")
	if len(s) > oauth.MaxChallengeBytes {
		s = s[:oauth.MaxChallengeBytes]
	}
	return s
}

// insufficientScope reads a 403's Bearer challenge and returns the scopes
// it asks for, space separated; "" when it asks for none, or the header
// is malformed (the 403 then goes to the client as it is). RFC 6750 and
// the MCP authorization spec say error="insufficient_scope"; a challenge
// with a scope and no error at all is taken as one too (the Go SDK's
// bearer middleware writes that), one with another error is not.
func insufficientScope(h http.Header) string {
	c, err := oauth.ParseBearerChallenge(h.Values("WWW-Authenticate"))
	if err != nil || !c.Found || (c.Error != "insufficient_scope" && c.Error != "") {
		return ""
	}
	return strings.Join(c.Scopes(), " ")
}

// asksDPoPNonce reports whether a 401 asks for the request again with
// the nonce its DPoP-Nonce carries (RFC 9449 §9: error="use_dpop_nonce"),
// as the oauth package reads it from token endpoints.
func asksDPoPNonce(h http.Header) bool {
	return h.Get("DPoP-Nonce") != "" && strings.Contains(wwwAuthenticate(h), "use_dpop_nonce")
}
