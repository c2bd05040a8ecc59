package api

import (
	"errors"
	"testing"
)

func TestMatchGrant(t *testing.T) {
	grants := []GrantStatus{
		{Name: "host", Match: []string{"https://git.example.com"}},
		{Name: "team", Match: []string{"https://git.example.com/team/"}},
		{Name: "deep", Match: []string{"https://git.example.com/team/secret"}},
		{Name: "reg", Match: []string{"registry.example.com:5000"}},
		{Name: "plain", Match: []string{"http://127.0.0.1:8080/x", "not a url %%"}},
	}
	for _, tt := range []struct{ url, want string }{
		{"https://git.example.com/", "host"},
		{"https://GIT.example.com:443/other/repo.git", "host"},
		{"https://git.example.com/team", "team"},
		{"https://git.example.com/team/repo.git", "team"},
		{"https://git.example.com/teams/repo.git", "host"},
		{"https://git.example.com/team/secret/r.git", "deep"},
		{"https://git.example.com/team/secrets", "team"},
		{"http://git.example.com/team/repo.git", ""},
		{"https://git.example.com.evil.org/team/", ""},
		{"registry.example.com:5000", "reg"},
		{"https://registry.example.com:5000/v2/", "reg"},
		{"registry.example.com", ""},
		{"http://127.0.0.1:8080/x/y", "plain"},
		{"http://127.0.0.1:8080/xy", ""},
		{"https://git.example.com/team/%72epo.git", "team"},
		// Dot segments, encoded separators and backslashes match nothing,
		// not even the whole host's prefix.
		{"https://git.example.com/team/../secret/r.git", ""},
		{"https://git.example.com/team/secret/..", ""},
		{"https://git.example.com/team/%2e%2e/x", ""},
		{"https://git.example.com/team/%2E%2e/x", ""},
		{"https://git.example.com/team/./r.git", ""},
		{"https://git.example.com/team/%2E/r.git", ""},
		{"https://git.example.com/team%2fsecret/r.git", ""},
		{"https://git.example.com/team/..%2Fsecret", ""},
		{"https://git.example.com/team/..%5csecret", ""},
		{"https://git.example.com/team/..\\secret", ""},
		{"registry.example.com:5000/v2/../x", ""},
		{"https://git.example.com/team/..;/secret/r.git", ""},
		{"https://git.example.com/team/..%3Bx/secret/r.git", ""},
		{"https://git.example.com/team/r;v=1", "team"},
		{"https://git.example.com/team/r..git", "team"},
		{"https://git.example.com/team/.well/r.git", "team"},
	} {
		g, _, err := MatchGrant(grants, tt.url)
		if tt.want == "" && errors.Is(err, ErrAmbiguousPath) {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.url, err)
			continue
		}
		got := ""
		if g != nil {
			got = g.Name
		}
		if got != tt.want {
			t.Errorf("%s: matched %q, want %q", tt.url, got, tt.want)
		}
	}
	for _, bad := range []string{"", "ftp://x/", "https://u:p@x/", "https://x/?q", "https:///path", "https://x/team/../other", "https://x/a%2Fb"} {
		if _, err := ParseMatchURL(bad); err == nil {
			t.Errorf("ParseMatchURL(%q) accepted", bad)
		}
	}
}
