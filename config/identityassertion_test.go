package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/oauth"
)

// idjagBase adds an identity provider with a public client, a resource
// authorization server with a confidential client, and a grant at the
// identity provider whose id token is exchanged; tests append a grant.
const idjagBase = `
providers:
  idp:
    issuer: https://idp.example.com
  as:
    issuer: https://as.example.com
  bare:
    token_endpoint: https://bare.example.com/token
clients:
  at-idp:
    provider: idp
    client_id: tokend-at-idp
  at-as:
    provider: as
    client_id: tokend-at-as
    client_secret_file: /etc/as.secret
  at-bare:
    provider: bare
    client_id: tokend-at-bare
    client_secret_file: /etc/bare.secret
  dyn:
    provider: idp
grants:
  sso:
    client: at-idp
    type: authorization_code
    scopes: [openid]
    readers: {users: [root]}
  machine:
    client: at-as
    type: client_credentials
    readers: {users: [root]}
`

func TestIdentityAssertionProblems(t *testing.T) {
	const head = "  ea:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion:\n"
	tests := []struct {
		name string
		yml  string
		want []string // nil: valid
	}{
		{"from a grant's id token", head + "      client: at-idp\n      subject_grant: sso\n      resource: [https://mcp.example.com/mcp]\n", nil},
		{"from a file, audience the issuer", head + "      client: at-idp\n      subject_token_file: /etc/id.token\n      audience: https://as.example.com/\n", nil},
		{"from a credential, a SAML assertion", head + "      client: at-idp\n      subject_token_credential: id.token\n      subject_token_type: urn:ietf:params:oauth:token-type:saml2\n", nil},
		{"with an assertion too", head + "      client: at-idp\n      subject_grant: sso\n    assertion: {private_key_file: /k.pem, issuer: me}\n",
			[]string{`grants.ea: give assertion (signed by tokend) or identity_assertion (issued by an identity provider), not both`}},
		{"no client, no subject", head + "      audience: https://as.example.com\n",
			[]string{`grants.ea.identity_assertion.client: must name the client tokend is at the identity provider`,
				`grants.ea.identity_assertion: needs the token to exchange at the identity provider: subject_grant, subject_token_file or subject_token_credential`}},
		{"undefined client", head + "      client: nope\n      subject_grant: sso\n",
			[]string{`grants.ea.identity_assertion.client: client "nope" is not defined under clients`}},
		{"a client to register", head + "      client: dyn\n      subject_grant: sso\n",
			[]string{`grants.ea.identity_assertion.client: client "dyn" has no client_id`}},
		{"two subjects", head + "      client: at-idp\n      subject_grant: sso\n      subject_token_file: /etc/id.token\n",
			[]string{`grants.ea.identity_assertion: give one of subject_grant, subject_token_file and subject_token_credential`}},
		{"itself, undefined, relative", head + "      client: at-idp\n      subject_token_file: id.token\n      subject_token_type: refresh_token\n",
			[]string{`grants.ea.identity_assertion.subject_token_file: "id.token" must be an absolute path`,
				`grants.ea.identity_assertion.subject_token_type: "refresh_token" is not one of access_token, id_token or a urn: token type`}},
		{"subject is itself", head + "      client: at-idp\n      subject_grant: ea\n",
			[]string{`grants.ea.identity_assertion.subject_grant: names the grant itself`}},
		{"subject undefined", head + "      client: at-idp\n      subject_grant: nope\n",
			[]string{`grants.ea.identity_assertion.subject_grant: grant "nope" is not defined under grants`}},
		{"audience of another server", head + "      client: at-idp\n      subject_grant: sso\n      audience: https://other.example.com\n",
			[]string{`grants.ea.identity_assertion.audience: https://other.example.com is not the issuer https://as.example.com of provider "as", where the ID-JAG is sent`}},
		{"audience not a URL", head + "      client: at-idp\n      subject_grant: sso\n      audience: as\n",
			[]string{`grants.ea.identity_assertion.audience: "as" is not an https URL`}},
		{"no issuer to address", "  ea:\n    client: at-bare\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion:\n      client: at-idp\n      subject_grant: sso\n",
			[]string{`grants.ea.identity_assertion.audience: must be set: provider "bare" has no issuer`}},
		{"no issuer, audience set", "  ea:\n    client: at-bare\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion:\n      client: at-idp\n      subject_grant: sso\n      audience: https://bare.example.com\n", nil},
		{"resources", head + "      client: at-idp\n      subject_grant: sso\n      resource: [/mcp, \"https://mcp.example.com/#x\"]\n",
			[]string{`grants.ea.identity_assertion.resource[0]: "/mcp" is not an absolute URI`, `grants.ea.identity_assertion.resource[1]: "https://mcp.example.com/#x" must not have a fragment`}},
		{"on another type", "  ea:\n    client: at-as\n    type: client_credentials\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: sso}\n",
			[]string{`grants.ea.identity_assertion: applies to the jwt_bearer grant only (this grant is client_credentials)`}},
		{"cycle through identity assertions", "  a:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: b}\n" +
			"  b:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: a}\n",
			[]string{`grants.a: grants form a cycle: a → b → a`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(idjagBase + tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

// An id token is what an identity provider exchanges for an ID-JAG: the
// default subject type, and a warning when the subject grant gets none.
func TestIdentityAssertionSubjectType(t *testing.T) {
	c, warns, err := parse(idjagBase + "  ea:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: sso}\n")
	if err != nil || len(warns) != 0 {
		t.Fatalf("err %v, warnings %q", err, warns)
	}
	ia := c.Grants["ea"].IdentityAssertion
	if ia.SubjectTokenType != TokenTypeIDToken || ia.SubjectTokenURN() != oauth.TokenTypeID {
		t.Errorf("subject token type = %q (%s)", ia.SubjectTokenType, ia.SubjectTokenURN())
	}
	_, warns, err = parse(idjagBase + "  ea:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: machine}\n")
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], `grants.ea.identity_assertion.subject_token_type: is id_token but grant "machine" is client_credentials, which gets no id token`) {
		t.Errorf("err %v, warnings %q", err, warns)
	}
}

// A subject token file is a secret: read at load, with the rules of other
// secret files (refused when every user may read it), never echoed.
func TestIdentityAssertionSubjectTokenFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	token := writeFile(t, dir, "id.token", "eyJ.the-id-token.sig\n", 0o600)
	secret := writeFile(t, dir, "as.secret", "as-secret\n", 0o600)
	yml := strings.ReplaceAll(idjagBase, "/etc/as.secret", secret)
	yml = strings.ReplaceAll(yml, "/etc/bare.secret", secret)
	yml += "  ea:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_token_file: " + token + "}\n"
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := testLoader.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Grants["ea"].IdentityAssertion.SubjectToken.Reveal(); got != "eyJ.the-id-token.sig" {
		t.Errorf("subject token = %q", got)
	}
	chmod(t, token, 0o644)
	_, _, err = testLoader.Load(cfg)
	if err == nil || !strings.Contains(err.Error(), "grants.ea.identity_assertion.subject_token_file: "+token+" is readable by every user") {
		t.Fatalf("a subject token every user may read: %v", err)
	}
	if strings.Contains(err.Error(), "the-id-token") {
		t.Errorf("the token is in the error: %v", err)
	}
}

func TestIdentityAssertionExplain(t *testing.T) {
	c := mustParse(t, idjagBase+"  ea:\n    client: at-as\n    type: jwt_bearer\n    readers: {users: [root]}\n    identity_assertion: {client: at-idp, subject_grant: sso, resource: [https://mcp.example.com/mcp]}\n")
	var b strings.Builder
	c.explainExtGrant(func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }, c.Grants["ea"])
	for _, want := range []string{
		"identity assertion: ID-JAG from idp (client at-idp), exchanging the id_token of sso (authorization_code)",
		"identity assertion audience: the issuer of the grant's provider",
		"identity assertion resource: https://mcp.example.com/mcp",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, b.String())
		}
	}
}

// The machine grants of a protected resource, as the MCP extensions
// configure them: client_credentials with client_secret_basic or with
// private_key_jwt (an ES256 PKCS #8 key, assertions addressed to the
// issuer discovery finds), and a jwt_bearer grant whose assertion an
// identity provider issues for the resource.
func TestResourceMachineGrantsLoad(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "cc.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600)
	secret := writeFile(t, dir, "cc.secret", "cc-secret\n", 0o600)
	idToken := writeFile(t, dir, "id.token", "eyJ.id.token\n", 0o600)
	yml := `
providers:
  idp:
    token_endpoint: http://127.0.0.1:9001/token
clients:
  cc-basic:
    client_id: conformance-test-client
    client_secret_file: ` + secret + `
  cc-jwt:
    client_id: conformance-test-client
    private_key_file: ` + keyFile + `
    signing_alg: ES256
    assertion_audience: issuer
  xaa:
    client_id: conformance-test-xaa-client
    client_secret_file: ` + secret + `
  at-idp:
    provider: idp
    client_id: conformance-test-idp-client
grants:
  basic:
    protected_resource: http://127.0.0.1:9000/mcp
    type: client_credentials
    client: cc-basic
    readers: {users: [root]}
  jwt:
    protected_resource: http://127.0.0.1:9002/mcp
    type: client_credentials
    client: cc-jwt
    readers: {users: [root]}
  ea:
    protected_resource: http://127.0.0.1:9003/mcp
    type: jwt_bearer
    client: xaa
    identity_assertion:
      client: at-idp
      subject_token_file: ` + idToken + `
    readers: {users: [root]}
`
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, warns, err := testLoader.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	if cl := c.Clients["cc-basic"]; cl.AuthMethod != oauth.AuthBasic || cl.Secret.Reveal() != "cc-secret" || cl.Provider != DerivedName("basic") {
		t.Errorf("cc-basic: %+v", cl)
	}
	if cl := c.Clients["cc-jwt"]; cl.AuthMethod != oauth.AuthPrivateKeyJWT || cl.Key == nil || cl.Key.Signer == nil || cl.AssertionAudience != "issuer" || cl.Provider != DerivedName("jwt") {
		t.Errorf("cc-jwt: %+v", cl)
	}
	ia := c.Grants["ea"].IdentityAssertion
	if ia.SubjectToken.Reveal() != "eyJ.id.token" || ia.SubjectTokenURN() != oauth.TokenTypeID || len(ia.Resource) != 0 || ia.Audience != "" {
		t.Errorf("identity assertion: %+v", ia)
	}
	if c.Clients["xaa"].Provider != DerivedName("ea") {
		t.Errorf("xaa's provider: %q", c.Clients["xaa"].Provider)
	}
}
