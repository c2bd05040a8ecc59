package config

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/oauth"
)

// withClient is minimal with the client's keys replaced by keys.
func withClient(keys string) string {
	return strings.Replace(minimal, "    client_id: tokend\n", keys, 1)
}

func TestClientAuthProblems(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	tests := []struct {
		name string
		yml  string
		want []string // nil: valid
	}{
		{"private_key_jwt with a key file", withClient("    client_id: tokend\n    auth_method: private_key_jwt\n    private_key_file: /k.pem\n    key_id: k1\n    signing_alg: ES256\n    assertion_audience: issuer\n"), nil},
		{"private_key_jwt with a credential", withClient("    client_id: tokend\n    auth_method: private_key_jwt\n    private_key_credential: app.key\n"), nil},
		{"private_key_jwt without a key", withClient("    client_id: tokend\n    auth_method: private_key_jwt\n"),
			[]string{`x.yaml:9: clients.app.auth_method: private_key_jwt needs private_key_file or private_key_credential`}},
		{"private_key_jwt with two keys", withClient("    client_id: tokend\n    auth_method: private_key_jwt\n    private_key_file: /k.pem\n    private_key_credential: app.key\n"),
			[]string{`x.yaml:6: clients.app: give private_key_file or private_key_credential, not both`}},
		{"private_key_jwt with a secret", withClient("    client_id: tokend\n    auth_method: private_key_jwt\n    private_key_file: /k.pem\n    client_secret_file: /s\n"),
			[]string{`clients.app: private_key_jwt authenticates with a private key: remove client_secret_file/client_secret_credential`}},
		{"private key with client_secret_basic", withClient("    client_id: tokend\n    client_secret_file: /s\n    private_key_file: /k.pem\n"),
			[]string{`x.yaml:6: clients.app: private_key_file, private_key_credential and key_id apply to auth_method private_key_jwt only (auth_method is client_secret_basic)`}},
		{"relative key file", withClient("    client_id: tokend\n    private_key_file: k.pem\n"),
			[]string{`x.yaml:9: clients.app.private_key_file: "k.pem" must be an absolute path`}},
		{"credential with a slash", withClient("    client_id: tokend\n    private_key_credential: a/b\n"),
			[]string{`x.yaml:9: clients.app.private_key_credential: "a/b" is not a credential name`}},
		{"HMAC alg for a private key", withClient("    client_id: tokend\n    private_key_file: /k.pem\n    signing_alg: HS256\n"),
			[]string{`x.yaml:10: clients.app.signing_alg: "HS256" is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA`}},
		{"client_secret_jwt", withClient("    client_id: tokend\n    auth_method: client_secret_jwt\n    client_secret_file: /s\n    assertion_audience: issuer\n"), nil},
		{"client_secret_jwt without a secret", withClient("    client_id: tokend\n    auth_method: client_secret_jwt\n"),
			[]string{`clients.app.auth_method: client_secret_jwt needs client_secret_file or client_secret_credential`}},
		{"client_secret_jwt with signing_alg", withClient("    client_id: tokend\n    auth_method: client_secret_jwt\n    client_secret_file: /s\n    signing_alg: HS256\n"),
			[]string{`clients.app.signing_alg: applies to auth_method private_key_jwt only: client_secret_jwt signs with the first of HS256, HS384, HS512 the provider accepts`}},
		{"signing_alg with client_secret_basic", withClient("    client_id: tokend\n    client_secret_file: /s\n    signing_alg: RS256\n"),
			[]string{`clients.app.signing_alg: applies to auth_method private_key_jwt only (auth_method is client_secret_basic)`}},
		{"assertion audience URL", withClient("    client_id: tokend\n    private_key_file: /k.pem\n    assertion_audience: https://id.example.com/oauth2/token\n"), nil},
		{"assertion audience loopback http", withClient("    client_id: tokend\n    private_key_file: /k.pem\n    assertion_audience: http://127.0.0.1:9000/token\n"), nil},
		{"assertion audience plain http", withClient("    client_id: tokend\n    private_key_file: /k.pem\n    assertion_audience: http://id.example.com/token\n"),
			[]string{`clients.app.assertion_audience: must be empty (the token endpoint), issuer, or a URL`}},
		{"assertion audience not a URL", withClient("    client_id: tokend\n    private_key_file: /k.pem\n    assertion_audience: token-endpoint\n"),
			[]string{`clients.app.assertion_audience: must be empty (the token endpoint), issuer, or a URL`}},
		{"assertion audience with a secret", withClient("    client_id: tokend\n    client_secret_file: /s\n    assertion_audience: issuer\n"),
			[]string{`clients.app.assertion_audience: applies to auth_method private_key_jwt and client_secret_jwt only`}},
		{"assertion audience issuer without an issuer", strings.Replace(withClient("    client_id: tokend\n    private_key_file: /k.pem\n    assertion_audience: issuer\n"),
			"issuer: https://id.example.com", "token_endpoint: https://id.example.com/token\n    authorization_endpoint: https://id.example.com/auth", 1),
			[]string{`clients.app.assertion_audience: is issuer but provider "corp" has no issuer`}},
		{"tls_client_auth", withClient("    client_id: tokend\n    auth_method: tls_client_auth\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"), nil},
		{"self-signed with credentials", withClient("    client_id: tokend\n    auth_method: self_signed_tls_client_auth\n    tls_cert_credential: app.crt\n    tls_key_credential: app.key\n"), nil},
		{"tls_client_auth without a certificate", withClient("    client_id: tokend\n    auth_method: tls_client_auth\n"),
			[]string{`clients.app.auth_method: tls_client_auth needs a certificate: tls_cert_file or tls_cert_credential`,
				`clients.app.auth_method: tls_client_auth needs the certificate's key: tls_key_file or tls_key_credential`}},
		{"tls_client_auth with two certificates", withClient("    client_id: tokend\n    auth_method: tls_client_auth\n    tls_cert_file: /c.pem\n    tls_cert_credential: c\n    tls_key_file: /k.pem\n"),
			[]string{`clients.app: give tls_cert_file or tls_cert_credential, not both`}},
		{"tls_client_auth without client_id", withClient("    auth_method: tls_client_auth\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"),
			[]string{`clients.app.client_id: tls_client_auth needs a client_id: tokend does not register certificate clients dynamically`}},
		{"certificate with a secret method", withClient("    client_id: tokend\n    client_secret_file: /s\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"),
			[]string{`clients.app: tls_cert_file, tls_key_file, tls_cert_credential and tls_key_credential apply to auth_method tls_client_auth and self_signed_tls_client_auth only (auth_method is client_secret_basic)`}},
		{"relative certificate", withClient("    client_id: tokend\n    tls_cert_file: c.pem\n    tls_key_file: /k.pem\n"),
			[]string{`clients.app.tls_cert_file: "c.pem" must be an absolute path`}},
		{"none with a private key", withClient("    client_id: tokend\n    auth_method: none\n    private_key_file: /k.pem\n"),
			[]string{`clients.app: private_key_file, private_key_credential and key_id apply to auth_method private_key_jwt only (auth_method is none)`}},
		{"dynamic private_key_jwt", withClient("    private_key_file: /k.pem\n"), nil},
		{"client_credentials with a key", strings.Replace(withClient("    client_id: tokend\n    private_key_file: /k.pem\n"), "authorization_code", "client_credentials", 1), nil},
		{"client_credentials with a certificate", strings.Replace(withClient("    client_id: tokend\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"), "authorization_code", "client_credentials", 1), nil},
		{"relative ca_file", strings.Replace(minimal, "issuer: https://id.example.com", "issuer: https://id.example.com\n    ca_file: ca.pem", 1),
			[]string{`x.yaml:5: providers.corp.ca_file: "ca.pem" must be an absolute path`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

func TestClientAuthDefaults(t *testing.T) {
	c := mustParse(t, withClient("    client_id: tokend\n    private_key_file: /k.pem\n"))
	if m := c.Clients["app"].AuthMethod; m != oauth.AuthPrivateKeyJWT {
		t.Errorf("a client with a private key: auth_method %q, want private_key_jwt", m)
	}
	c = mustParse(t, withClient("    client_id: tokend\n    tls_cert_file: /c.pem\n    tls_key_file: /k.pem\n"))
	if m := c.Clients["app"].AuthMethod; m != oauth.AuthTLS {
		t.Errorf("a client with a certificate: auth_method %q, want tls_client_auth", m)
	}
	c = mustParse(t, withClient("    private_key_file: /k.pem\n"))
	if cl := c.Clients["app"]; !cl.Dynamic() || cl.AuthMethod != oauth.AuthPrivateKeyJWT {
		t.Errorf("a private_key_jwt client without client_id: dynamic %v, auth_method %q", cl.Dynamic(), cl.AuthMethod)
	}
}

// An auth_method none client without client_id that serves only
// jwt_bearer grants is anonymous: never registered. Used by another grant
// type, it is a public client registered dynamically, as before.
func TestClientAnonymous(t *testing.T) {
	const yml = `
providers:
  google:
    token_endpoint: https://oauth2.googleapis.com/token
    registration_endpoint: https://oauth2.googleapis.com/register
clients:
  anon:
    provider: google
    auth_method: none
grants:
  sa:
    client: anon
    type: jwt_bearer
    assertion: {private_key_file: /sa.json}
    readers: {users: [root]}
`
	c := mustParse(t, yml)
	if cl := c.Clients["anon"]; cl.Dynamic() || !cl.Anonymous() {
		t.Errorf("jwt_bearer only: dynamic %v, anonymous %v; want an anonymous client", cl.Dynamic(), cl.Anonymous())
	}
	var buf bytes.Buffer
	c.Explain(&buf)
	if want := "  anon: provider google, no client_id, none, no client authentication (anonymous client for jwt_bearer grants)"; !strings.Contains(buf.String(), want) {
		t.Errorf("Explain lacks %q:\n%s", want, buf.String())
	}

	c = mustParse(t, strings.Replace(yml, "    registration_endpoint:", "    device_authorization_endpoint: https://oauth2.googleapis.com/device\n    registration_endpoint:", 1)+"  dev:\n    client: anon\n    type: device_code\n    readers: {users: [root]}\n")
	if cl := c.Clients["anon"]; !cl.Dynamic() || cl.Anonymous() {
		t.Errorf("also device_code: dynamic %v, anonymous %v; want dynamic registration", cl.Dynamic(), cl.Anonymous())
	}
	// A provider with no registration endpoint and no issuer is no problem
	// for an anonymous client, which is never registered.
	if _, _, err := parse(strings.Replace(yml, "    registration_endpoint: https://oauth2.googleapis.com/register\n", "", 1)); err != nil {
		t.Errorf("anonymous client of a provider without registration: %v", err)
	}
	// Without auth_method none the client is registered (client_secret_basic).
	c = mustParse(t, strings.Replace(yml, "    auth_method: none\n", "", 1))
	if cl := c.Clients["anon"]; !cl.Dynamic() {
		t.Errorf("no auth_method: dynamic %v, want true", cl.Dynamic())
	}
}

func TestClientTLSCertLoad(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	now := time.Now()
	key := newECKey(t)
	valid := writeFile(t, dir, "valid.crt", certPEM(t, key, "tokend-app", now.Add(-time.Hour), now.Add(90*24*time.Hour)), 0o644)
	expired := writeFile(t, dir, "expired.crt", certPEM(t, key, "tokend-app", time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)), 0o644)
	future := writeFile(t, dir, "future.crt", certPEM(t, key, "tokend-app", now.Add(48*time.Hour), now.Add(96*time.Hour)), 0o644)
	keyFile := writeFile(t, dir, "app.key", keyPEM(t, key), 0o600)
	otherKey := writeFile(t, dir, "other.key", keyPEM(t, newECKey(t)), 0o600)
	openKey := writeFile(t, dir, "open.key", keyPEM(t, key), 0o640)
	garbage := writeFile(t, dir, "garbage.crt", "not a certificate\n", 0o644)
	keyCert := writeFile(t, dir, "keycert.crt", certPEM(t, key, "tokend-app", now.Add(-time.Hour), now.Add(90*24*time.Hour)), 0o600)
	cfg := func(cert, key string) string {
		return withClient("    client_id: tokend\n    auth_method: tls_client_auth\n    tls_cert_file: " + cert + "\n    tls_key_file: " + key + "\n")
	}

	c, warns, err := loadYAML(t, dir, cfg(valid, keyFile))
	if err != nil || len(warns) != 0 {
		t.Fatalf("valid certificate: %v, warnings %q", err, warns)
	}
	cl := c.Clients["app"]
	if cl.TLSCert == nil || cl.TLSCert.PrivateKey == nil {
		t.Fatalf("TLSCert not loaded: %+v", cl.TLSCert)
	}
	var out bytes.Buffer
	c.Explain(&out)
	if want := "certificate from " + valid + ", key from " + keyFile + " (subject CN=tokend-app, issuer CN=tokend-app, expires "; !strings.Contains(out.String(), want) {
		t.Errorf("Explain lacks %q:\n%s", want, out.String())
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if b64 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}); strings.Contains(out.String(), string(b64[30:60])) {
		t.Error("Explain shows key material")
	}

	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"expired", expired, keyFile, "config.yaml:10: clients.app.tls_cert_file: " + expired + ": the certificate expired on 2025-01-01T00:00:00Z (valid from 2024-01-01T00:00:00Z until 2025-01-01T00:00:00Z)"},
		{"not yet valid", future, keyFile, "clients.app.tls_cert_file: " + future + ": the certificate is not valid before "},
		{"key of another certificate", valid, otherKey, "config.yaml:11: clients.app.tls_key_file: " + otherKey + " is not the key of the certificate in " + valid},
		{"not a certificate", garbage, keyFile, "clients.app.tls_cert_file: " + garbage + " holds no PEM certificate"},
		{"key is a certificate", valid, keyCert, "clients.app.tls_key_file: " + keyCert + " holds no PEM private key"},
		{"key readable by every user", valid, valid, "clients.app.tls_key_file: " + valid + " is readable by every user (mode 0644)"},
		{"missing key", valid, filepath.Join(dir, "nope.key"), "clients.app.tls_key_file: cannot read " + filepath.Join(dir, "nope.key") + ": no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := loadYAML(t, dir, cfg(tt.cert, tt.key))
			wantProblems(t, err, tt.want)
		})
	}

	t.Run("key readable by its group warns", func(t *testing.T) {
		_, warns, err := loadYAML(t, dir, cfg(valid, openKey))
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0], "clients.app.tls_key_file: "+openKey+" is readable by group or others (mode 0640)") {
			t.Errorf("warnings = %q", warns)
		}
	})

	t.Run("credentials", func(t *testing.T) {
		creds := t.TempDir()
		writeFile(t, creds, "app.crt", certPEM(t, key, "cred", now.Add(-time.Hour), now.Add(time.Hour)), 0o400)
		writeFile(t, creds, "app.key", keyPEM(t, key), 0o400)
		t.Setenv("CREDENTIALS_DIRECTORY", creds)
		c, _, err := loadYAML(t, dir, withClient("    client_id: tokend\n    auth_method: self_signed_tls_client_auth\n    tls_cert_credential: app.crt\n    tls_key_credential: app.key\n"))
		if err != nil || c.Clients["app"].TLSCert == nil {
			t.Fatalf("err %v", err)
		}
	})
}

func TestClientSecretJWTLength(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	short := writeFile(t, dir, "short.secret", "0123456789abcdef0123456789abcde\n", 0o600) // 31 bytes
	long := writeFile(t, dir, "long.secret", "0123456789abcdef0123456789abcdef\n", 0o600)
	cfg := func(f string) string {
		return withClient("    client_id: tokend\n    auth_method: client_secret_jwt\n    client_secret_file: " + f + "\n")
	}
	_, _, err := loadYAML(t, dir, cfg(short))
	wantProblems(t, err, "config.yaml:10: clients.app.client_secret_file: client_secret_jwt needs a client secret of at least 32 bytes (RFC 7518 §3.2); this one has 31")
	if _, _, err := loadYAML(t, dir, cfg(long)); err != nil {
		t.Fatal(err)
	}
	// The same short secret is fine for client_secret_basic.
	if _, _, err := loadYAML(t, dir, withClient("    client_id: tokend\n    client_secret_file: "+short+"\n")); err != nil {
		t.Fatal(err)
	}
}

func TestProviderCAFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	now := time.Now()
	bundle := writeFile(t, dir, "ca.pem", certPEM(t, newECKey(t), "Corp Root", now.Add(-time.Hour), now.Add(time.Hour))+certPEM(t, newECKey(t), "Corp Root 2", now.Add(-time.Hour), now.Add(time.Hour)), 0o644)
	empty := writeFile(t, dir, "empty.pem", "", 0o644)
	garbage := writeFile(t, dir, "garbage.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", 0o644)
	cfg := func(ca string) string {
		return strings.Replace(minimal, "issuer: https://id.example.com", "issuer: https://id.example.com\n    ca_file: "+ca, 1)
	}
	c, _, err := loadYAML(t, dir, cfg(bundle))
	if err != nil {
		t.Fatal(err)
	}
	if c.Providers["corp"].CAs == nil {
		t.Fatal("CAs not loaded")
	}
	var out bytes.Buffer
	c.Explain(&out)
	if !strings.Contains(out.String(), "    CA bundle:            "+bundle) {
		t.Errorf("Explain:\n%s", out.String())
	}
	for _, f := range []string{empty, garbage} {
		_, _, err := loadYAML(t, dir, cfg(f))
		wantProblems(t, err, "config.yaml:5: providers.corp.ca_file: "+f+" holds no PEM certificate")
	}
	_, _, err = loadYAML(t, dir, cfg(filepath.Join(dir, "none.pem")))
	wantProblems(t, err, "providers.corp.ca_file: cannot read "+filepath.Join(dir, "none.pem")+": no such file or directory")
}
