package config

import (
	"bytes"
	"strings"
	"testing"
)

func TestConfigMatch(t *testing.T) {
	c := mustParse(t, minimal+`    match: ["https://git.example.com/team/", "registry.example.com:5000"]
  h:
    client: app
    type: authorization_code
    readers: {users: [root]}
    match: [https://git.example.com/]
    match_username: x-access-token
`)
	if got := c.Grants["g"].HelperUsername(); got != "oauth2" {
		t.Errorf("default username %q", got)
	}
	if got := c.Grants["h"].HelperUsername(); got != "x-access-token" {
		t.Errorf("username %q", got)
	}
	var buf bytes.Buffer
	c.Explain(&buf)
	for _, want := range []string{
		"    match:    https://git.example.com/team/, registry.example.com:5000\n",
		`sends this token, as username "oauth2", to URLs under these prefixes`,
		`as username "x-access-token"`,
		"the longest prefix wins among the grants the caller may read",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("Explain lacks %q:\n%s", want, buf.String())
		}
	}

	for _, tt := range []struct{ name, yml, want string }{
		{"not http", minimal + "    match: [ftp://x/]\n", `grants.g.match[0]: "ftp://x/": only http and https URLs are matched`},
		{"query", minimal + "    match: [\"https://x/?a=b\"]\n", `grants.g.match[0]: "https://x/?a=b" must not have user info, a query or a fragment`},
		{"dot segment", minimal + "    match: [\"https://x/team-a/%2e%2e/b\"]\n", `grants.g.match[0]: "https://x/team-a/%2e%2e/b": its path has a . or .. segment`},
		{"same prefix encoded", minimal + "    match: [https://x/a-b]\n  h: {client: app, type: authorization_code, match: [\"https://x/a%2Db\"]}\n",
			`grants.h.match[0]: "https://x/a%2Db" is also in grants.g.match`},
		{"username alone", minimal + "    match_username: bob\n", "grants.g.match_username: applies only to a grant with match"},
		{"same prefix twice", minimal + "    match: [https://x/a]\n  h: {client: app, type: authorization_code, match: [\"https://X/a/\"]}\n",
			`grants.h.match[0]: "https://X/a/" is also in grants.g.match`},
	} {
		_, _, err := testLoader.Parse([]byte(tt.yml), "x.yaml")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	_, warns, err := testLoader.Parse([]byte(minimal+"    match: [http://git.example.com/]\n"), "x.yaml")
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], "clear text") {
		t.Errorf("http match: warns %q, err %v", warns, err)
	}
}
