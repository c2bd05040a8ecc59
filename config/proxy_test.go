package config

import (
	"strings"
	"testing"
)

func TestGrantProxy(t *testing.T) {
	grant := func(name, extra string) string {
		return "  " + name + ":\n    client: app\n    type: authorization_code\n    readers: {users: [root]}\n" + extra
	}
	tests := []struct {
		name string
		yml  string
		want []string // nil: valid
	}{
		{"tcp and unix", grant("a", "    protected_resource: https://mcp.example.com/mcp\n    proxy: {listen: \"127.0.0.1:8790\"}\n") +
			grant("b", "    protected_resource: https://mcp.example.com/mcp\n    proxy: {listen: \"[::1]:8790\"}\n") +
			grant("c", "    protected_resource: https://mcp.example.com/mcp\n    proxy: {listen: /run/tokend/c.sock}\n"), nil},
		{"no protected resource", grant("a", "    proxy: {listen: \"127.0.0.1:8790\"}\n"),
			[]string{`grants.a.proxy: a proxy forwards to the grant's protected_resource, which is not set`}},
		{"no address", grant("a", "    protected_resource: https://r.example.com\n    proxy: {}\n"),
			[]string{`grants.a.proxy.listen: must be set`}},
		{"not loopback", grant("a", "    protected_resource: https://r.example.com\n    proxy: {listen: \"0.0.0.0:8790\"}\n"),
			[]string{`grants.a.proxy.listen: "0.0.0.0:8790" is neither a loopback IP address`}},
		{"host name", grant("a", "    protected_resource: https://r.example.com\n    proxy: {listen: \"localhost:8790\"}\n"),
			[]string{`grants.a.proxy.listen: "localhost:8790" is neither`}},
		{"relative socket", grant("a", "    protected_resource: https://r.example.com\n    proxy: {listen: a.sock}\n"),
			[]string{`grants.a.proxy.listen: "a.sock" is neither`}},
		{"taken twice", grant("a", "    protected_resource: https://r.example.com\n    proxy: {listen: \"127.0.0.1:8790\"}\n") +
			grant("b", "    protected_resource: https://r.example.com\n    proxy: {listen: \"127.0.0.1:8790\"}\n"),
			[]string{`grants.b.proxy.listen: "127.0.0.1:8790" is grants.a.proxy.listen too`}},
		{"the callback's", grant("a", "    protected_resource: https://r.example.com\n    proxy: {listen: \"127.0.0.1:8785\"}\n"),
			[]string{`grants.a.proxy.listen: "127.0.0.1:8785" is listen.callback too`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(minimal + tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

func TestExplainGrantProxy(t *testing.T) {
	c := mustParse(t, minimal+"  n:\n    client: app\n    type: authorization_code\n    readers: {users: [root]}\n    protected_resource: https://mcp.example.com/mcp\n    proxy: {listen: \"127.0.0.1:8790\"}\n")
	var b strings.Builder
	c.Explain(&b)
	if want := "    proxy:    127.0.0.1:8790 -> https://mcp.example.com/mcp, for the readers"; !strings.Contains(b.String(), want) {
		t.Errorf("explanation lacks %q:\n%s", want, b.String())
	}
}
