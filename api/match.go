package api

// URL matching for the credential helpers (tokend credential git|docker):
// which grant's token goes to which URL.

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultMatchUsername is the username the credential helpers send with a
// grant's token when the grant sets no match_username. GitLab documents
// it for OAuth tokens; GitHub and Gitea accept any username with a token.
const DefaultMatchUsername = "oauth2"

// ErrAmbiguousPath is the error of ParseMatchURL (and so of MatchGrant) for
// a URL whose path has a "." or ".." segment, literal or percent-encoded
// (or followed by ";..."), an encoded "/" or "\", or a "\" at all:
// servers and proxies resolve such a path differently
// (team-a/%2e%2e/other-team is other-team's), so no prefix is compared
// with it and it matches nothing.
var ErrAmbiguousPath = errors.New("its path has a . or .. segment or an encoded / or \\, which servers resolve differently; it matches no prefix")

// MatchPrefix is a parsed URL prefix of a grant's match list.
type MatchPrefix struct {
	Scheme string // http or https
	Host   string // lower-cased, with the port when not the scheme's default
	Path   string // without a trailing slash; "" for the whole host
}

// ParseMatchURL parses a match prefix or a URL to match. A URL without a
// scheme (docker's registry names: "registry.example.com:5000/v2") is
// taken as https. Only http and https are accepted; user info, queries
// and fragments are refused, and so is a path that is not already normal
// (ErrAmbiguousPath). Path is the decoded path: /team%2Da is /team-a.
func ParseMatchURL(raw string) (MatchPrefix, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return MatchPrefix{}, errors.New("empty URL")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return MatchPrefix{}, fmt.Errorf("%q is not a URL", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return MatchPrefix{}, fmt.Errorf("%q: only http and https URLs are matched", raw)
	}
	if u.Host == "" {
		return MatchPrefix{}, fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return MatchPrefix{}, fmt.Errorf("%q must not have user info, a query or a fragment", raw)
	}
	if !plainPath(u.EscapedPath()) {
		return MatchPrefix{}, fmt.Errorf("%q: %w", raw, ErrAmbiguousPath)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (scheme == "https" && p == "443") || (scheme == "http" && p == "80") {
		host = strings.ToLower(u.Hostname())
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
	}
	return MatchPrefix{Scheme: scheme, Host: host, Path: strings.TrimRight(u.Path, "/")}, nil
}

// plainPath reports whether the escaped path p has only segments that
// mean themselves: none is "." or ".." once decoded (%2e, %2E), also
// before a ";" (servlet containers read "..;x" as ".."), and none holds a
// "/" or "\" once decoded (%2f, %5c, any case; a literal backslash is
// escaped as %5C by EscapedPath).
func plainPath(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		d, err := url.PathUnescape(seg)
		if err != nil || strings.ContainsAny(d, "/\\") {
			return false
		}
		if d, _, _ = strings.Cut(d, ";"); d == "." || d == ".." {
			return false
		}
	}
	return true
}

// String is the prefix as a URL.
func (m MatchPrefix) String() string { return m.Scheme + "://" + m.Host + m.Path + "/" }

// Covers reports whether the prefix covers u: same scheme and host, and
// u's path is the prefix's path or below it (whole segments only:
// /team covers /team and /team/x, not /teams).
func (m MatchPrefix) Covers(u MatchPrefix) bool {
	if m.Scheme != u.Scheme || m.Host != u.Host {
		return false
	}
	return m.Path == "" || u.Path == m.Path || strings.HasPrefix(u.Path, m.Path+"/")
}

// MatchGrant returns the grant whose match list covers rawURL with the
// longest prefix, among grants (as GET /v1/tokens lists them: only grants
// the caller may read), and the prefix that matched. It returns nil when
// none does. Prefixes that do not parse are skipped.
func MatchGrant(grants []GrantStatus, rawURL string) (*GrantStatus, string, error) {
	u, err := ParseMatchURL(rawURL)
	if err != nil {
		return nil, "", err
	}
	var (
		best    *GrantStatus
		bestLen = -1
		bestPfx string
	)
	for i := range grants {
		for _, raw := range grants[i].Match {
			m, err := ParseMatchURL(raw)
			if err != nil || !m.Covers(u) {
				continue
			}
			if l := len(m.Path); l > bestLen {
				best, bestLen, bestPfx = &grants[i], l, raw
			}
		}
	}
	return best, bestPfx, nil
}
