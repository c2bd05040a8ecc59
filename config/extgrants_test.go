package config

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/oauth"
)

// extGrantsBase has a confidential client and one client_credentials grant
// that others exchange; tests append grants.
const extGrantsBase = corpApp + `    client_secret_file: /etc/app.secret
grants:
  base:
    client: app
    type: client_credentials
    readers: {users: [root]}
`

func TestExtGrantProblems(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string // nil: valid
	}{
		{"jwt_bearer", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion: {private_key_file: /k.pem, issuer: me, subject: you, audience: https://id.example.com, key_id: k1, signing_alg: ES256, lifetime: 10m, claims: {scope: x, nested: {a: [1, 2]}}}\n", nil},
		{"jwt_bearer without assertion", "  jb:\n    client: app\n    type: jwt_bearer\n",
			[]string{`x.yaml:15: grants.jb: the jwt_bearer grant needs an assertion`}},
		{"jwt_bearer without key", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion: {issuer: me}\n",
			[]string{`x.yaml:18: grants.jb.assertion: needs private_key_file or private_key_credential`}},
		{"jwt_bearer with two keys", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion: {private_key_file: /k.pem, private_key_credential: k}\n",
			[]string{`x.yaml:18: grants.jb.assertion: give private_key_file or private_key_credential, not both`}},
		{"jwt_bearer relative key", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n      private_key_file: k.pem\n",
			[]string{`x.yaml:19: grants.jb.assertion.private_key_file: "k.pem" must be an absolute path`}},
		{"assertion lifetime too long", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n      private_key_file: /k.pem\n      lifetime: 2h\n",
			[]string{`x.yaml:20: grants.jb.assertion.lifetime: 2h0m0s is longer than the maximum, 1h0m0s`}},
		{"assertion lifetime negative", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n      private_key_file: /k.pem\n      lifetime: -1m\n",
			[]string{`x.yaml:20: grants.jb.assertion.lifetime: -1m0s must not be negative`}},
		{"assertion alg", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n      private_key_file: /k.pem\n      signing_alg: HS256\n",
			[]string{`x.yaml:20: grants.jb.assertion.signing_alg: "HS256" is not one of`}},
		{"assertion reserved claims", "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n      private_key_file: /k.pem\n      claims:\n        iss: x\n        exp: 1\n        tenant: t\n",
			[]string{`x.yaml:21: grants.jb.assertion.claims.iss: tokend sets iss itself`, `x.yaml:22: grants.jb.assertion.claims.exp: tokend sets exp itself`}},
		{"assertion on client_credentials", "  cc:\n    client: app\n    type: client_credentials\n    assertion: {private_key_file: /k.pem}\n",
			[]string{`x.yaml:18: grants.cc.assertion: applies to the jwt_bearer grant only (this grant is client_credentials)`}},
		{"token_exchange", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    actor_grant: base\n    actor_token_type: urn:ietf:params:oauth:token-type:jwt\n    requested_token_type: jwt\n    audience: [reports]\n    resource: [https://reports.example.com/api]\n    scopes: [reports:read]\n", nil},
		{"token_exchange of a token_exchange", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n  tx2:\n    client: app\n    type: token_exchange\n    subject_grant: tx\n    subject_token_type: id_token\n", nil},
		{"token_exchange without subject", "  tx:\n    client: app\n    type: token_exchange\n",
			[]string{`x.yaml:15: grants.tx.subject_grant: the token_exchange grant needs subject_grant`}},
		{"token_exchange of itself", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: tx\n",
			[]string{`x.yaml:18: grants.tx.subject_grant: names the grant itself`}},
		{"token_exchange of an undefined grant", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: nope\n    actor_grant: nada\n",
			[]string{`x.yaml:18: grants.tx.subject_grant: grant "nope" is not defined under grants (defined: base, tx)`, `x.yaml:19: grants.tx.actor_grant: grant "nada" is not defined`}},
		{"token_exchange cycle", "  a:\n    client: app\n    type: token_exchange\n    subject_grant: b\n  b:\n    client: app\n    type: token_exchange\n    subject_grant: a\n",
			[]string{`x.yaml:15: grants.a: grants form a cycle: a → b → a`}},
		{"token_exchange cycle through an actor", "  a:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    actor_grant: c\n  b:\n    client: app\n    type: token_exchange\n    subject_grant: a\n  c:\n    client: app\n    type: token_exchange\n    subject_grant: b\n",
			[]string{`x.yaml:15: grants.a: grants form a cycle: a → c → b → a`}},
		{"token types", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    subject_token_type: refresh_token\n    actor_token_type: access_token\n    requested_token_type: saml\n",
			[]string{`x.yaml:19: grants.tx.subject_token_type: "refresh_token" is not one of access_token, id_token or a urn: token type`,
				`x.yaml:20: grants.tx.actor_token_type: is set but there is no actor_grant`,
				`x.yaml:21: grants.tx.requested_token_type: "saml" is not one of access_token, refresh_token, id_token, jwt or a urn: token type`}},
		{"resource and audience", "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    resource: [/api, \"https://r.example.com/#x\"]\n    audience: [\"a b\"]\n",
			[]string{`grants.tx.resource[0]: "/api" is not an absolute URI (RFC 8707)`, `grants.tx.resource[1]: "https://r.example.com/#x" must not have a fragment`, `grants.tx.audience[0]: "a b" is not a valid audience`}},
		{"token_exchange keys on client_credentials", "  cc:\n    client: app\n    type: client_credentials\n    subject_grant: base\n    audience: [x]\n    resource: [https://r.example.com]\n",
			[]string{`x.yaml:15: grants.cc: subject_grant, audience, resource apply to the token_exchange grant only (this grant is client_credentials)`}},
		{"dpop on every type", "  d1:\n    client: app\n    type: client_credentials\n    dpop: true\n  d2:\n    client: app\n    type: token_exchange\n    subject_grant: d1\n    dpop: true\n  d3:\n    client: app\n    type: jwt_bearer\n    assertion: {private_key_file: /k.pem, issuer: me}\n    dpop: true\n", nil},
		{"unknown type lists the new ones", "  u:\n    client: app\n    type: saml_bearer\n",
			[]string{`grants.u.type: unknown grant type "saml_bearer": valid types are authorization_code, client_credentials, password, device_code, jwt_bearer, token_exchange`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(extGrantsBase + tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

func TestTokenExchangeIDTokenOfMachineGrant(t *testing.T) {
	_, warns, err := parse(extGrantsBase + "  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    subject_token_type: id_token\n    readers: {users: [root]}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], `x.yaml:19: grants.tx.subject_token_type: is id_token but grant "base" is client_credentials, which gets no id token`) {
		t.Errorf("warnings = %q", warns)
	}
}

// The commented provider, client and grant examples in tokend.example.yaml
// (key and certificate client authentication, jwt_bearer, token_exchange),
// uncommented, are a valid configuration: the example cannot drift from
// the rules.
func TestExampleFileCommentedGrantsParse(t *testing.T) {
	data, err := os.ReadFile("../tokend.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	starts := []string{"entra:", "google:", "okta-svc:", "entra-app:", "gcp:", "reports-readonly:", "notes-mcp:"}
	comment := regexp.MustCompile(`^(\s*)# ( *\S.*)$`)
	var out []string
	found, active := map[string]bool{}, false
	for _, l := range strings.Split(string(data), "\n") {
		m := comment.FindStringSubmatch(l)
		switch {
		case m != nil && slices.ContainsFunc(starts, func(s string) bool { return strings.HasPrefix(m[2], s) }):
			active = true
			found[strings.Fields(m[2])[0]] = true
		case active && (m == nil || !strings.HasPrefix(m[2], "  ")):
			active = false
		}
		if active {
			l = m[1] + m[2]
		}
		out = append(out, l)
	}
	if len(found) != len(starts) {
		t.Fatalf("found the blocks %v, want %v", found, starts)
	}
	c, warns, err := exampleAccounts().loader().Parse([]byte(strings.Join(out, "\n")), "example-uncommented.yaml")
	if err != nil {
		t.Fatalf("the uncommented examples do not parse:\n%v", err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	if cl := c.Clients["google"]; !cl.Anonymous() || c.Clients["okta-svc"].AuthMethod != oauth.AuthPrivateKeyJWT || c.Grants["reports-readonly"].SubjectGrant != "reports-api" ||
		c.Grants["notes-mcp"].IdentityAssertion.SubjectGrant != "reports-api" {
		t.Errorf("clients %+v", c.Clients)
	}
}

func TestExtGrantDefaults(t *testing.T) {
	c := mustParse(t, extGrantsBase+"  jb:\n    client: app\n    type: jwt_bearer\n    assertion: {private_key_file: /k.pem, issuer: me}\n  tx:\n    client: app\n    type: token_exchange\n    subject_grant: base\n    actor_grant: jb\n")
	if lt := c.Grants["jb"].Assertion.Lifetime; lt != DefaultAssertionLifetime {
		t.Errorf("assertion lifetime %s, want %s", lt, DefaultAssertionLifetime)
	}
	tx := c.Grants["tx"]
	if tx.SubjectTokenType != "access_token" || tx.ActorTokenType != "access_token" {
		t.Errorf("token types %q %q, want access_token", tx.SubjectTokenType, tx.ActorTokenType)
	}
	if id, typ := tx.SubjectToken(); id || typ != oauth.TokenTypeAccess {
		t.Errorf("SubjectToken = %v %q", id, typ)
	}
	tx.SubjectTokenType = "id_token"
	if id, typ := tx.SubjectToken(); !id || typ != oauth.TokenTypeID {
		t.Errorf("SubjectToken(id_token) = %v %q", id, typ)
	}
	if id, typ := (Grant{}).ActorToken(); id || typ != "" {
		t.Errorf("ActorToken without actor = %v %q", id, typ)
	}
	if got := c.Grants["tx"].RequestedTokenType; got != "" {
		t.Errorf("requested_token_type defaulted to %q", got)
	}
	if got := TokenTypeURN("jwt"); got != oauth.TokenTypeJWT {
		t.Errorf("TokenTypeURN(jwt) = %q", got)
	}
	if got := TokenTypeURN("urn:x:y"); got != "urn:x:y" {
		t.Errorf("TokenTypeURN(urn) = %q", got)
	}
}

// Keys are read by Load: PEM files and service-account JSON, with the
// file-mode rule of client secrets, parsed once.
func TestSigningKeysLoad(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	ec := newECKey(t)
	ecFile := writeFile(t, dir, "ec.pem", keyPEM(t, ec), 0o600)
	openFile := writeFile(t, dir, "open.pem", keyPEM(t, ec), 0o640)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaFile := writeFile(t, dir, "rsa.pem", keyPEM(t, rk), 0o600)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edFile := writeFile(t, dir, "ed.pem", keyPEM(t, ed), 0o600)
	const garbageText = "c2VjcmV0LWJ1dC1ub3QtYS1rZXk"
	garbage := writeFile(t, dir, "garbage.pem", "-----BEGIN PRIVATE KEY-----\n"+garbageText+"\n-----END PRIVATE KEY-----\n", 0o600)
	saFile := writeFile(t, dir, "sa.json", serviceAccountJSON(t, ec), 0o600)
	client := func(keys string) string { return withClient("    client_id: tokend\n" + keys) }

	t.Run("private_key_jwt", func(t *testing.T) {
		c, warns, err := loadYAML(t, dir, client("    private_key_file: "+ecFile+"\n    key_id: kid-7\n"))
		if err != nil || len(warns) != 0 {
			t.Fatalf("%v, warnings %q", err, warns)
		}
		k := c.Clients["app"].Key
		if k == nil || k.KeyID != "kid-7" || k.Alg != "" || !ec.PublicKey.Equal(k.Signer.Public()) {
			t.Fatalf("key = %v", k)
		}
		var out bytes.Buffer
		c.Explain(&out)
		if want := "  app: provider corp, client_id tokend, private_key_jwt, key from " + ecFile + " (EC P-256, alg from the key and the provider, kid kid-7)"; !strings.Contains(out.String(), want) {
			t.Errorf("Explain lacks %q:\n%s", want, out.String())
		}
		if strings.Contains(out.String(), "PRIVATE KEY") {
			t.Error("Explain shows key material")
		}
	})
	t.Run("algorithms", func(t *testing.T) {
		for _, tt := range []struct{ file, alg, want string }{
			{rsaFile, "PS256", "RSA 2048, PS256, no kid"},
			{edFile, "EdDSA", "Ed25519, EdDSA, no kid"},
			{ecFile, "ES256", "EC P-256, ES256, no kid"},
		} {
			c, _, err := loadYAML(t, dir, client("    private_key_file: "+tt.file+"\n    signing_alg: "+tt.alg+"\n"))
			if err != nil {
				t.Fatalf("%s %s: %v", tt.file, tt.alg, err)
			}
			var out bytes.Buffer
			c.Explain(&out)
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("Explain lacks %q:\n%s", tt.want, out.String())
			}
		}
	})
	t.Run("alg that does not fit the key", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, client("    private_key_file: "+ecFile+"\n    signing_alg: RS256\n"))
		wantProblems(t, err, "config.yaml:9: clients.app.private_key_file: "+ecFile+": ")
		if !strings.Contains(err.Error(), "RS256") {
			t.Errorf("the error does not name the alg: %v", err)
		}
	})
	t.Run("bad mode warns", func(t *testing.T) {
		_, warns, err := loadYAML(t, dir, client("    private_key_file: "+openFile+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0], "clients.app.private_key_file: "+openFile+" is readable by group or others (mode 0640): chmod 0600 it") {
			t.Errorf("warnings = %q", warns)
		}
	})
	t.Run("garbage never quoted", func(t *testing.T) {
		_, warns, err := loadYAML(t, dir, client("    private_key_file: "+garbage+"\n"))
		wantProblems(t, err, "config.yaml:9: clients.app.private_key_file: "+garbage+": ")
		decoded, _ := base64.RawStdEncoding.DecodeString(garbageText)
		for _, s := range []string{garbageText, string(decoded)} {
			if strings.Contains(err.Error()+strings.Join(warns, ""), s) {
				t.Errorf("key file content in messages: %v", err)
			}
		}
	})
	t.Run("credential", func(t *testing.T) {
		creds := t.TempDir()
		writeFile(t, creds, "app.key", keyPEM(t, ec), 0o400)
		t.Setenv("CREDENTIALS_DIRECTORY", creds)
		c, _, err := loadYAML(t, dir, client("    private_key_credential: app.key\n"))
		if err != nil || c.Clients["app"].Key == nil {
			t.Fatalf("%v", err)
		}
		_, _, err = loadYAML(t, dir, client("    private_key_credential: other.key\n"))
		wantProblems(t, err, `clients.app.private_key_credential: credential "other.key" not found in $CREDENTIALS_DIRECTORY`)
	})

	secret := writeFile(t, dir, "app.secret", "s3cret\n", 0o600)
	jb := func(assertion string) string {
		return strings.Replace(extGrantsBase, "/etc/app.secret", secret, 1) + "  jb:\n    client: app\n    type: jwt_bearer\n    assertion:\n" + assertion
	}
	t.Run("service account", func(t *testing.T) {
		c, _, err := loadYAML(t, dir, jb("      private_key_file: "+saFile+"\n      claims: {scope: https://www.googleapis.com/auth/cloud-platform}\n"))
		if err != nil {
			t.Fatal(err)
		}
		a := c.Grants["jb"].Assertion
		if a.Issuer != "robot@demo.iam.gserviceaccount.com" || a.Subject != a.Issuer || a.Audience != "https://oauth2.googleapis.com/token" ||
			a.Key.KeyID != "sa-kid-1" || a.ServiceAccount == nil || a.Lifetime != 5*time.Minute {
			t.Errorf("assertion = %+v", a)
		}
		var out bytes.Buffer
		c.Explain(&out)
		for _, want := range []string{
			"  jb: jwt_bearer via client app (provider corp)",
			"    assertion: iss robot@demo.iam.gserviceaccount.com, sub robot@demo.iam.gserviceaccount.com, aud https://oauth2.googleapis.com/token, lifetime 5m0s",
			"    assertion key: " + saFile + " (service account), EC P-256, alg from the key and the provider, kid sa-kid-1",
			"    assertion claims: scope",
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("Explain lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("service account with explicit values", func(t *testing.T) {
		c, _, err := loadYAML(t, dir, jb("      private_key_file: "+saFile+"\n      subject: user@example.com\n      audience: https://aud.example.com\n      key_id: mine\n"))
		if err != nil {
			t.Fatal(err)
		}
		a := c.Grants["jb"].Assertion
		if a.Issuer != "robot@demo.iam.gserviceaccount.com" || a.Subject != "user@example.com" || a.Audience != "https://aud.example.com" || a.Key.KeyID != "mine" {
			t.Errorf("assertion = %+v", a)
		}
	})
	// An assertion is addressed to the server that receives it: a key
	// file's token_uri, or an audience, that is not the provider's
	// configured token endpoint (or issuer) is refused, naming both.
	atEndpoint := func(yml, endpoint string) string {
		return strings.Replace(yml, "    issuer: https://id.example.com\n", "    issuer: https://id.example.com\n    token_endpoint: "+endpoint+"\n", 1)
	}
	t.Run("service account token_uri of another server", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, atEndpoint(jb("      private_key_file: "+saFile+"\n"), "https://id.example.com/oauth2/token"))
		wantProblems(t, err, `grants.jb.assertion.private_key_file: the key file's token_uri https://oauth2.googleapis.com/token is not provider "corp"'s token endpoint https://id.example.com/oauth2/token nor its issuer https://id.example.com, where the assertion is sent`)
		if _, _, err := loadYAML(t, dir, atEndpoint(jb("      private_key_file: "+saFile+"\n"), "https://oauth2.googleapis.com/token")); err != nil {
			t.Fatalf("token_uri = token endpoint: %v", err)
		}
	})
	t.Run("assertion audience of another server", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, atEndpoint(jb("      private_key_file: "+ecFile+"\n      issuer: me\n      audience: https://other.example.com/token\n"), "https://id.example.com/oauth2/token"))
		wantProblems(t, err, `grants.jb.assertion.audience: https://other.example.com/token is not provider "corp"'s token endpoint https://id.example.com/oauth2/token nor its issuer https://id.example.com`)
		for _, aud := range []string{"https://id.example.com/oauth2/token", "https://id.example.com", "https://id.example.com/"} {
			if _, _, err := loadYAML(t, dir, atEndpoint(jb("      private_key_file: "+ecFile+"\n      issuer: me\n      audience: "+aud+"\n"), "https://id.example.com/oauth2/token")); err != nil {
				t.Errorf("audience %s: %v", aud, err)
			}
		}
	})
	t.Run("client assertion audience of another server", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, atEndpoint(client("    private_key_file: "+ecFile+"\n    assertion_audience: https://other.example.com/token\n"), "https://id.example.com/oauth2/token"))
		wantProblems(t, err, `clients.app.assertion_audience: https://other.example.com/token is not provider "corp"'s token endpoint https://id.example.com/oauth2/token nor its issuer https://id.example.com`)
	})
	t.Run("long assertion lifetime warns", func(t *testing.T) {
		_, warns, err := loadYAML(t, dir, jb("      private_key_file: "+ecFile+"\n      issuer: me\n      lifetime: 1h\n"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(warns, func(w string) bool {
			return strings.Contains(w, "grants.jb.assertion.lifetime: 1h0m0s: whoever holds an assertion can use it that long")
		}) {
			t.Errorf("warnings = %q", warns)
		}
	})
	t.Run("PEM needs an issuer", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, jb("      private_key_file: "+ecFile+"\n"))
		wantProblems(t, err, "grants.jb.assertion.issuer: must be set (only a service-account key file gives a default)")
		c, _, err := loadYAML(t, dir, jb("      private_key_file: "+ecFile+"\n      issuer: client-1\n"))
		if err != nil {
			t.Fatal(err)
		}
		if a := c.Grants["jb"].Assertion; a.Subject != "client-1" || a.Audience != "" || a.ServiceAccount != nil {
			t.Errorf("assertion = %+v", a)
		}
	})
	t.Run("bad key file", func(t *testing.T) {
		_, _, err := loadYAML(t, dir, jb("      private_key_file: "+garbage+"\n      issuer: x\n"))
		wantProblems(t, err, "config.yaml:19: grants.jb.assertion.private_key_file: "+garbage+": ")
	})
}

func TestExtGrantExplain(t *testing.T) {
	c := mustParse(t, extGrantsBase+`  tx:
    client: app
    type: token_exchange
    subject_grant: base
    audience: [reports]
    resource: [https://reports.example.com/]
    scopes: [reports:read]
    dpop: true
  tx2:
    client: app
    type: token_exchange
    subject_grant: tx
    actor_grant: base
    requested_token_type: jwt
`)
	var out bytes.Buffer
	c.Explain(&out)
	for _, want := range []string{
		"  tx: token_exchange via client app (provider corp)",
		"    exchanges: access_token of base (client_credentials)",
		"    audience: reports",
		"    resource: https://reports.example.com/",
		"    dpop:     DPoP-bound tokens",
		"    exchanges: access_token of tx (token_exchange of base (client_credentials))",
		"    actor:     access_token of base (client_credentials)",
		"    requested token type: urn:ietf:params:oauth:token-type:jwt",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Explain lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("Explain:\n%s", out.String())
	}
}
