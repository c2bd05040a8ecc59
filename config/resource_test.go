package config

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// resourceBase has a provider and a pre-registered client that names it,
// and a provider-less client; tests append grants.
const resourceBase = corpApp + `grants:
`

// looseBase is resourceBase with a client that names no provider.
var looseBase = strings.Replace(resourceBase, "grants:", "  loose:\n    client_id: pre-registered\ngrants:", 1)

func TestResourceGrantProblems(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string // nil: valid
	}{
		{"resource alone", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    readers: {users: [root]}\n", nil},
		{"every key", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    authorization_server: https://as.example.com\n    client_id_metadata_document: https://app.example.com/tokend.json\n    scopes: [a, b]\n    proxy: {listen: \"127.0.0.1:8790\"}\n    readers: {users: [root]}\n", nil},
		{"provider-less client", "  notes:\n    protected_resource: http://127.0.0.1:9000/mcp\n    client: loose\n    readers: {users: [root]}\n", nil},
		{"client_credentials", "  m:\n    protected_resource: https://api.example.com/\n    type: client_credentials\n    readers: {users: [root]}\n", nil},
		{"http resource off loopback", "  notes:\n    protected_resource: http://mcp.example.com/mcp\n",
			[]string{`grants.notes.protected_resource: `}},
		{"resource with fragment", "  notes:\n    protected_resource: https://mcp.example.com/mcp#x\n",
			[]string{`grants.notes.protected_resource: "https://mcp.example.com/mcp#x" must not have a fragment`}},
		{"bad authorization server", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    authorization_server: ftp://as\n",
			[]string{`grants.notes.authorization_server: `}},
		{"device code on a resource", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    type: device_code\n",
			[]string{`grants.notes.type: a protected_resource grant is one of authorization_code, client_credentials, jwt_bearer, not device_code`}},
		{"metadata document over http", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    client_id_metadata_document: http://app.example.com/tokend.json\n",
			[]string{`grants.notes.client_id_metadata_document: "http://app.example.com/tokend.json" uses http to a non-loopback host`}},
		{"metadata document without path", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    client_id_metadata_document: https://app.example.com\n",
			[]string{`grants.notes.client_id_metadata_document: "https://app.example.com" has no path`}},
		{"metadata document with a client", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    client: app\n    client_id_metadata_document: https://app.example.com/t.json\n",
			[]string{`grants.notes.client_id_metadata_document: applies to a grant without client: client "app" is pre-registered`}},
		{"resource param", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n    token_params: {resource: https://other.example.com}\n",
			[]string{`grants.notes.token_params.resource: is set by protected_resource`}},
		{"resource keys without resource", "  g:\n    client: app\n    type: authorization_code\n    authorization_server: https://as.example.com\n    client_id_metadata_document: https://app.example.com/t.json\n",
			[]string{`grants.g.authorization_server: applies to protected_resource grants only`, `grants.g.client_id_metadata_document: applies to protected_resource grants only`}},
		{"another grant's derived client", "  notes:\n    protected_resource: https://mcp.example.com/mcp\n  g:\n    client: \"resource:notes\"\n    type: authorization_code\n",
			[]string{`grants.g.client: client "resource:notes" is not defined under clients (defined: app)`}},
		{"provider-less client shared by two resources", "  a:\n    protected_resource: https://a.example.com/mcp\n    client: loose\n  b:\n    protected_resource: https://b.example.com/mcp\n    client: loose\n",
			[]string{`grants.b.client: client "loose" has no provider and already serves protected_resource grant "a"`}},
		{"provider-less client on an ordinary grant", "  a:\n    protected_resource: https://a.example.com/mcp\n    client: loose\n  g:\n    client: loose\n    type: authorization_code\n",
			[]string{`grants.g.client: client "loose" has no provider of its own: it serves protected_resource grant "a"`}},
		{"neither client nor resource", "  g:\n    type: authorization_code\n",
			[]string{`grants.g.client: must name a client (or the protected_resource the token is for)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := resourceBase
			if strings.Contains(tt.yml, "loose") {
				base = looseBase
			}
			_, _, err := parse(base + tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

func TestResourceGrantDerivesProviderAndClient(t *testing.T) {
	c := mustParse(t, looseBase+"  notes:\n    protected_resource: https://mcp.example.com/mcp\n    authorization_server: https://as.example.com\n    client_id_metadata_document: https://app.example.com/tokend.json\n    proxy: {listen: \"127.0.0.1:8790\"}\n  pre:\n    protected_resource: https://pre.example.com/\n    client: loose\n  explicit:\n    protected_resource: https://api.example.com/\n    client: app\n")
	g := c.Grants["notes"]
	if g.Type != GrantAuthorizationCode || g.Client != DerivedName("notes") {
		t.Fatalf("grant type %q client %q, want authorization_code and the derived client", g.Type, g.Client)
	}
	if g.Proxy == nil || g.Proxy.Listen != "127.0.0.1:8790" {
		t.Errorf("proxy = %+v", g.Proxy)
	}
	cl := c.Clients[g.Client]
	if cl.ForGrant != "notes" || cl.Provider != DerivedName("notes") || cl.MetadataDocument != "https://app.example.com/tokend.json" {
		t.Errorf("derived client = %+v", cl)
	}
	if cl.RedirectURI != "http://"+DefaultCallback+"/callback" {
		t.Errorf("derived client's redirect URI = %q, want the callback listener's", cl.RedirectURI)
	}
	if cl.AuthMethod != "" {
		t.Errorf("derived client's auth method = %q, want none chosen before registration", cl.AuthMethod)
	}
	pv := c.Providers[cl.Provider]
	if pv.Resource == nil || pv.Resource.Resource != "https://mcp.example.com/mcp" || pv.Resource.AuthorizationServer != "https://as.example.com" || pv.Resource.Grant != "notes" {
		t.Errorf("derived provider = %+v", pv.Resource)
	}
	if p := c.Clients["loose"].Provider; p != DerivedName("pre") {
		t.Errorf("provider-less client's provider = %q, want the derived one of grant pre", p)
	}
	// Defaults applied again (a reload path) change nothing.
	before := c.Clients[g.Client]
	c.ApplyDefaults()
	if after := c.Clients[c.Grants["notes"].Client]; after != before {
		t.Errorf("ApplyDefaults twice: %+v, then %+v", before, after)
	}

	var out bytes.Buffer
	c.Explain(&out)
	for _, want := range []string{
		"resource:notes: discovered from protected resource https://mcp.example.com/mcp",
		"protected resource: https://mcp.example.com/mcp",
		"authorization server: discovered from the resource: https://as.example.com",
		"client: https://app.example.com/tokend.json",
		`"client_id": "https://app.example.com/tokend.json"`,
		"proxy:    127.0.0.1:8790 -> https://mcp.example.com/mcp",
		"client: loose (pre-registered)",
		"authorization server: provider corp, as configured (nothing is discovered from the resource)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Explain lacks %q:\n%s", want, out.String())
		}
	}
	var doc map[string]any
	b, err := c.ClientMetadataDocumentFor("notes")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["client_id"] != "https://app.example.com/tokend.json" || doc["token_endpoint_auth_method"] != "none" {
		t.Errorf("metadata document = %v", doc)
	}
	if uris, _ := doc["redirect_uris"].([]any); len(uris) != 1 || uris[0] != cl.RedirectURI {
		t.Errorf("metadata document's redirect_uris = %v", doc["redirect_uris"])
	}
}
