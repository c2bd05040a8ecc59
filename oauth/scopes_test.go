package oauth

import (
	"reflect"
	"testing"
)

func TestSelectScopes(t *testing.T) {
	l := func(s ...string) []string { return s }
	cases := []struct {
		name                                              string
		configured, challenge, resourceSupported, serverS []string
		want                                              []string
	}{
		{"configured wins, as given", l("b", "a"), l("c"), l("d"), l("offline_access"), l("b", "a")},
		{"challenge over scopes_supported", nil, l("mcp:basic"), l("mcp:basic", "mcp:write"), nil, l("mcp:basic")},
		{"scopes_supported, all of them", nil, nil, l("mcp:basic", "mcp:read", "mcp:write"), nil, l("mcp:basic", "mcp:read", "mcp:write")},
		{"nothing: omitted", nil, nil, nil, nil, nil},
		{"nothing: omitted, even with the server's other scopes", nil, nil, nil, l("openid", "profile"), nil},
		{"offline_access when the server lists it", nil, nil, l("mcp:basic"), l("mcp:basic", "offline_access"), l("mcp:basic", "offline_access")},
		{"offline_access not listed by the server", nil, nil, l("mcp:basic", "mcp:read"), l("mcp:basic", "mcp:read"), l("mcp:basic", "mcp:read")},
		{"offline_access listed by the resource only", nil, nil, l("mcp:basic", "offline_access"), l("mcp:basic"), l("mcp:basic", "offline_access")},
		{"offline_access alone", nil, nil, nil, l("offline_access"), l("offline_access")},
		{"offline_access not repeated", nil, l("offline_access", "a"), nil, l("offline_access"), l("offline_access", "a")},
		{"configured without offline_access stays so", l("a"), nil, nil, l("offline_access"), l("a")},
		{"empty and repeated dropped", nil, l("a", "", "a", "b"), nil, nil, l("a", "b")},
		{"configured of empty strings is nothing configured", l(""), l("c"), nil, nil, l("c")},
	}
	for _, c := range cases {
		if got := SelectScopes(c.configured, c.challenge, c.resourceSupported, c.serverS); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: SelectScopes = %q, want %q", c.name, got, c.want)
		}
	}
	d := &ResourceDiscovery{ChallengeScopes: l("x"), ResourceScopesSupported: l("y"), ServerScopesSupported: l("offline_access")}
	if got := d.Scopes(nil); !reflect.DeepEqual(got, l("x", "offline_access")) {
		t.Errorf("Scopes(nil) = %q", got)
	}
	if got := d.Scopes(l("z")); !reflect.DeepEqual(got, l("z")) {
		t.Errorf("Scopes([z]) = %q", got)
	}
}
