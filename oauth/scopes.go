package oauth

import "slices"

// ScopeOfflineAccess asks for a refresh token (OpenID Connect Core §11):
// what a client that keeps authorizations alive, as tokend does, wants
// wherever the server offers it.
const ScopeOfflineAccess = "offline_access"

// SelectScopes chooses the scopes of an authorization request for a
// protected resource, as the MCP specification's scope selection strategy
// has it: the configured scopes if any, used exactly as given (the
// operator's choice, offline_access included or not); else the scope of
// the resource's challenge; else the resource metadata's
// scopes_supported; else none (the scope parameter is then omitted).
// When nothing was configured, offline_access is added if the
// authorization server's scopes_supported lists it, and only then: a
// server that does not list it may refuse the request. Empty and repeated
// scopes are dropped; the result is nil when there is nothing to ask.
func SelectScopes(configured, challenge, resourceSupported, serverSupported []string) []string {
	if out := uniqueScopes(configured); out != nil {
		return out
	}
	out := uniqueScopes(challenge)
	if out == nil {
		out = uniqueScopes(resourceSupported)
	}
	if slices.Contains(serverSupported, ScopeOfflineAccess) && !slices.Contains(out, ScopeOfflineAccess) {
		out = append(out, ScopeOfflineAccess)
	}
	return out
}

// Scopes is SelectScopes with what d discovered.
func (d *ResourceDiscovery) Scopes(configured []string) []string {
	return SelectScopes(configured, d.ChallengeScopes, d.ResourceScopesSupported, d.ServerScopesSupported)
}

// uniqueScopes is l without empty or repeated entries, in order; nil when
// nothing is left.
func uniqueScopes(l []string) []string {
	var out []string
	for _, s := range l {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}
