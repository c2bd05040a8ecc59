package config

// A grant's match and match_username: which URLs the credential helpers
// (tokend credential git|docker) serve its token to, and with what
// username. The helpers are clients of the socket: they see only the
// grants their user may read, and pick the longest prefix among those
// (api.MatchGrant).

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// HelperUsername is the username the credential helpers send with the
// grant's token: match_username, or api.DefaultMatchUsername.
func (g Grant) HelperUsername() string {
	if g.MatchUsername != "" {
		return g.MatchUsername
	}
	return api.DefaultMatchUsername
}

// checkMatch validates one grant's match list and match_username.
func checkMatch(p *problems, path string, g Grant) {
	for i, raw := range g.Match {
		key := fmt.Sprintf("%s.match[%d]", path, i)
		m, err := api.ParseMatchURL(raw)
		if err != nil {
			p.errorf(key, "%v (give a URL prefix such as https://git.example.com/team/)", err)
			continue
		}
		if m.Scheme == "http" && !isLoopbackHostPort(m.Host) {
			p.warnf(key, "%q uses http to a non-loopback host: the helpers would send the token in clear text", raw)
		}
	}
	if g.MatchUsername != "" {
		if len(g.Match) == 0 {
			p.errorf(path+".match_username", "applies only to a grant with match (the URLs the credential helpers serve)")
		}
		if strings.ContainsAny(g.MatchUsername, "\x00\r\n") || strings.TrimSpace(g.MatchUsername) != g.MatchUsername {
			p.errorf(path+".match_username", "%q must not contain line breaks or start or end with spaces", g.MatchUsername)
		}
	}
}

// checkMatchOverlap refuses one prefix in two grants' match lists: the
// helpers could not tell which token to send.
func checkMatchOverlap(p *problems, grants map[string]Grant) {
	seen := map[api.MatchPrefix]string{}
	for _, name := range sortedKeys(grants) {
		for i, raw := range grants[name].Match {
			m, err := api.ParseMatchURL(raw)
			if err != nil {
				continue
			}
			if other, ok := seen[m]; ok && other != name {
				p.errorf(fmt.Sprintf("grants.%s.match[%d]", name, i), "%q is also in grants.%s.match: the credential helpers could not tell which token to send", raw, other)
				continue
			}
			seen[m] = name
		}
	}
}

func isLoopbackHostPort(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return oauth.IsLoopbackHost(strings.Trim(h, "[]"))
}

// explainMatch is check-config's line for a grant's match list.
func explainMatch(w io.Writer, g Grant) {
	if len(g.Match) == 0 {
		return
	}
	fmt.Fprintf(w, "    match:    %s\n", strings.Join(g.Match, ", "))
	fmt.Fprintf(w, "              tokend credential git|docker sends this token, as username %q, to URLs under these prefixes\n", g.HelperUsername())
	fmt.Fprintf(w, "              (the longest prefix wins among the grants the caller may read)\n")
}
