package e2e

// Client authentication beyond shared secrets against
// oidc-provider: private_key_jwt (EC P-256 and RSA keys, audience the token
// endpoint or the issuer), client_secret_jwt, self_signed_tls_client_auth
// and tls_client_auth over https with a private CA (ca_file), the
// provider's mtls_endpoint_aliases; a wrong key, an expired certificate;
// what check-config says; and that no key or assertion shows in tokend's
// log or CLI output.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

const jwtSecret = "hs-secret-e2e-0123456789abcdef0123456789abcdef"

// ccClient is oidc-provider metadata of a client_credentials client.
func ccClient(id, method string, extra map[string]any) map[string]any {
	c := map[string]any{
		"client_id": id, "grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{},
		"token_endpoint_auth_method": method,
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// ccGrant is the grants section of one client_credentials grant "api" of
// client "svc" with extra lines (indented by four spaces).
func ccGrant(extra string) string {
	return "  api:\n    client: svc\n    type: client_credentials\n    scopes: [api:read]\n" + extra + "    {{READERS}}\n"
}

// withCAFile adds ca_file to provider op of a Setup.Config text.
func withCAFile(cfg, issuer, caFile string) string {
	return strings.Replace(cfg, "    issuer: "+issuer+"\n", "    issuer: "+issuer+"\n    ca_file: "+caFile+"\n", 1)
}

// checkConfig runs `tokend check-config FILE` and returns its output and exit code.
func checkConfig(t *testing.T, path string) (string, int) {
	t.Helper()
	requireTokend(t)
	out, err := exec.Command(tokendBin, "check-config", path).CombinedOutput()
	if err != nil && exitCode(err) < 0 {
		t.Fatal(err)
	}
	return string(out), exitCode(err)
}

// noSecretIn fails the test when out contains one of secrets.
func noSecretIn(t *testing.T, what, out string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s contains a secret (%d chars, starts %q)", what, len(s), s[:min(4, len(s))])
		}
	}
}

// jwtParts decodes a compact JWT's header and claims, unverified.
func jwtParts(t *testing.T, jwt string) (header, claims map[string]any) {
	t.Helper()
	p := strings.Split(jwt, ".")
	if len(p) != 3 {
		t.Fatalf("not a compact JWS (%d parts)", len(p))
	}
	for i, v := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(p[i])
		if err != nil || json.Unmarshal(b, v) != nil {
			t.Fatalf("JWT part %d does not decode", i)
		}
	}
	return header, claims
}

// TestClientAuthJWT: tokend authenticates with a client assertion
// (private_key_jwt with EC P-256, RSA, EC P-384 and Ed25519 keys, the
// algorithm chosen from the key and the provider's list, audience the token
// endpoint or the issuer; and HMAC client_secret_jwt), obtains a client_credentials token and renews it
// on schedule, each assertion fresh (unique jti, short exp); the key and
// the assertions appear in no log or CLI output.
func TestClientAuthJWT(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, tc := range []struct {
		name, method, keyKind, kid, alg, audience string
		providerAlgs                              []string // nil: oidc-provider's default
	}{
		{"es256", "private_key_jwt", "EC", "e2e-ec", "ES256", "", nil},
		{"rs256-issuer-audience", "private_key_jwt", "RSA", "e2e-rsa", "RS256", "issuer", nil},
		{"es384", "private_key_jwt", "EC384", "", "ES384", "", []string{"RS256", "ES256", "ES384"}},
		{"ed25519", "private_key_jwt", "Ed25519", "e2e-ed", "EdDSA|Ed25519", "", nil},
		{"client_secret_jwt", "client_secret_jwt", "", "", "HS256", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewSetupNoCallback(t)
			var clientLines string
			var secrets []string
			var meta map[string]any
			if tc.keyKind != "" {
				key := newKey(t, tc.keyKind)
				keyFile := writeKey(t, s.Dir+"/client.key", key)
				secrets = keySecrets(t, keyFile, key)
				meta = ccClient("pk", tc.method, map[string]any{"jwks": publicJWKS(t, key.Public(), tc.kid, "")})
				clientLines = fmt.Sprintf("    private_key_file: %s\n", keyFile)
				if tc.kid != "" {
					clientLines += "    key_id: " + tc.kid + "\n"
				}
			} else {
				secrets = []string{jwtSecret}
				meta = ccClient("pk", tc.method, map[string]any{"client_secret": jwtSecret})
				clientLines = fmt.Sprintf("    client_secret_file: %s\n", s.SecretFile("pk", jwtSecret))
			}
			if tc.audience != "" {
				clientLines += "    assertion_audience: " + tc.audience + "\n"
			}
			op := oidcop.Start(t, oidcop.Config{ClientCredentialsTTL: 15, Clients: []map[string]any{meta}, ClientAuthSigningAlgs: tc.providerAlgs})
			cfg := s.Config(op.Issuer, "  svc:\n    provider: op\n    client_id: pk\n    auth_method: "+tc.method+"\n"+clientLines, ccGrant(""))
			td := StartTokend(t, s, cfg)
			td.NoLeak(secrets...)
			NoLeakSeen(t, td, op)

			first := td.WaitToken("api", 20*time.Second)
			if in := op.Introspect(first.AccessToken); !in.Active || in.ClientID != "pk" || in.Scope != "api:read" {
				t.Errorf("introspection = %+v, want active for pk with api:read", in)
			}
			// Renewed before expiry (15 s tokens, fraction 0.75).
			eventually(t, 25*time.Second, 250*time.Millisecond, "a renewed token", func() error {
				if tok := td.MustToken("api"); tok.AccessToken == first.AccessToken {
					return fmt.Errorf("still the first token")
				}
				return nil
			})
			st := op.Stats()
			if st.TokenSuccess["client_credentials"] < 2 || len(st.ClientAuthErrors) != 0 {
				t.Errorf("provider stats = %+v, want 2 tokens and no client authentication error", st)
			}

			// Every assertion tokend sent: iss = sub = client_id, the
			// configured audience, a unique jti, a short life, the key id.
			wantAud := op.Issuer + "/token"
			if tc.audience == "issuer" {
				wantAud = op.Issuer
			}
			seen := op.Seen().ClientAssertions
			if len(seen) < 2 {
				t.Fatalf("the provider saw %d client assertions, want 2 or more", len(seen))
			}
			jtis := map[string]bool{}
			for _, a := range seen {
				h, c := jwtParts(t, a)
				if !slices.Contains(strings.Split(tc.alg, "|"), fmt.Sprint(h["alg"])) || (tc.kid != "" && h["kid"] != tc.kid) || (tc.kid == "" && h["kid"] != nil) {
					t.Errorf("assertion header %v, want alg %s kid %q", h, tc.alg, tc.kid)
				}
				aud := fmt.Sprint(c["aud"])
				if l, ok := c["aud"].([]any); ok && len(l) == 1 {
					aud = fmt.Sprint(l[0])
				}
				if c["iss"] != "pk" || c["sub"] != "pk" || aud != wantAud {
					t.Errorf("assertion iss %v sub %v aud %v, want pk, pk, %s", c["iss"], c["sub"], c["aud"], wantAud)
				}
				jti, _ := c["jti"].(string)
				if jti == "" || jtis[jti] {
					t.Errorf("assertion jti %q empty or used before", jti)
				}
				jtis[jti] = true
				exp, _ := c["exp"].(float64)
				if life := time.Until(time.Unix(int64(exp), 0)); life > 10*time.Minute {
					t.Errorf("assertion lives %v more, want a short exp", life)
				}
			}

			// Operators' views: no key, no assertion.
			var outs strings.Builder
			cc, code := checkConfig(t, td.cfgPath)
			if code != 0 || !strings.Contains(cc, tc.method) {
				t.Errorf("check-config exit %d, want 0 and the method %s explained:\n%s", code, tc.method, cc)
			}
			outs.WriteString(cc)
			outs.WriteString(td.MustCLI("status", "api"))
			outs.WriteString(td.MustCLI("status", "api", "--json"))
			noSecretIn(t, "check-config and status output", outs.String(), append(secrets, seen...))
		})
	}
}

// TestClientAuthWrongKey: a private_key_jwt client whose key is not the one
// registered gets no token; the grant's status says the provider refused
// the client's credentials, and the key is in no output.
func TestClientAuthWrongKey(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	registered, used := newKey(t, "EC"), newKey(t, "EC")
	keyFile := writeKey(t, s.Dir+"/client.key", used)
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{
		ccClient("pk", "private_key_jwt", map[string]any{"jwks": publicJWKS(t, registered.Public(), "", "ES256")}),
	}})
	cfg := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: pk\n    auth_method: private_key_jwt\n    private_key_file: %s\n", keyFile), ccGrant(""))
	td := StartTokend(t, s, cfg)
	secrets := keySecrets(t, keyFile, used)
	td.NoLeak(secrets...)
	NoLeakSeen(t, td, op)

	st := waitFailure(t, td, "api")
	if st.State != api.StateCredentialsError || !strings.Contains(st.LastError, "invalid_client") {
		t.Errorf("state %q, last error %q: want credentials_error naming the provider's invalid_client", st.State, st.LastError)
	}
	if _, code, _ := td.Token("api"); code == 200 {
		t.Errorf("a token was served")
	}
	if st := op.Stats(); len(st.ClientAuthErrors) == 0 || st.TokenSuccess["client_credentials"] != 0 {
		t.Errorf("provider stats = %+v, want client authentication errors and no token", st)
	}
	out, errOut, _ := td.CLI("token", "api")
	noSecretIn(t, "tokend token output", out+errOut+td.MustCLI("status", "api", "--json"), secrets)
}

// waitFailure waits until grant's status has an error and returns it.
func waitFailure(t *testing.T, td *Tokend, grant string) api.GrantStatus {
	t.Helper()
	var st api.GrantStatus
	eventually(t, 20*time.Second, 200*time.Millisecond, "an error in the status of "+grant, func() error {
		st = td.Status(grant)
		if st.LastError == "" || st.State == api.StateRefreshing {
			return fmt.Errorf("state %q, no error", st.State)
		}
		return nil
	})
	t.Logf("status of %s: state %s, last error %q", grant, st.State, st.LastError)
	return st
}

// TestClientAuthUnsupportedAlg: an RSA key for a provider that takes only
// ES256 client assertions: no token, and a configuration error that names
// the algorithms; nothing is sent that the provider must refuse.
func TestClientAuthUnsupportedAlg(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	key := newKey(t, "RSA")
	keyFile := writeKey(t, s.Dir+"/client.key", key)
	op := oidcop.Start(t, oidcop.Config{Clients: []map[string]any{
		ccClient("pk", "private_key_jwt", map[string]any{"jwks": publicJWKS(t, key.Public(), "", "")}),
	}, ClientAuthSigningAlgs: []string{"ES256"}})
	cfg := s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: pk\n    auth_method: private_key_jwt\n    private_key_file: %s\n", keyFile), ccGrant(""))
	td := StartTokend(t, s, cfg)
	td.NoLeak(keySecrets(t, keyFile, key)...)
	NoLeakSeen(t, td, op)

	st := waitFailure(t, td, "api")
	if st.State == api.StateValid || !strings.Contains(st.LastError, "ES256") {
		t.Errorf("state %q, last error %q: want a failure naming the provider's ES256", st.State, st.LastError)
	}
	if _, code, _ := td.Token("api"); code == 200 {
		t.Errorf("a token was served")
	}
	if st := op.Stats(); st.TokenRequests["client_credentials"] != 0 {
		t.Errorf("tokend sent %d token requests with an assertion the provider cannot take", st.TokenRequests["client_credentials"])
	}
}

// TestClientAuthMTLS: over https with a private CA given as the provider's
// ca_file, tokend authenticates with a client certificate: self-signed
// (self_signed_tls_client_auth, the certificate registered in jwks) at the
// provider's advertised mtls_endpoint_aliases, and CA-issued
// (tls_client_auth, subject DN registered) at a token endpoint that asks
// every client for a certificate; the self-signed client's tokens are
// certificate-bound (cnf x5t#S256). An expired client certificate is
// refused by check-config, saying so; without ca_file the provider's
// certificate is refused.
func TestClientAuthMTLS(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, tc := range []struct {
		name, method string
		alias        bool
	}{
		{"self_signed_at_alias", "self_signed_tls_client_auth", true},
		{"pki", "tls_client_auth", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewSetupNoCallback(t)
			ca := newPKI(t, s.Dir, "server-ca")
			srvCert, srvKey := ca.serverCert(t, "op")
			clientCA := newPKI(t, s.Dir, "client-ca")
			issuer := clientCA
			if tc.method == "self_signed_tls_client_auth" {
				issuer = selfSigned(s.Dir)
			}
			certFile, keyFile, cert := issuer.clientCert(t, "client", "tokend-e2e", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
			meta := ccClient("tls", tc.method, map[string]any{"tls_client_auth_subject_dn": "CN=tokend-e2e"})
			if tc.method == "self_signed_tls_client_auth" {
				meta = ccClient("tls", tc.method, map[string]any{"jwks": publicJWKS(t, cert.PublicKey, "", "", cert),
					"tls_client_certificate_bound_access_tokens": true})
			}
			op := oidcop.Start(t, oidcop.Config{
				ClientCredentialsTTL: 15,
				Clients:              []map[string]any{meta},
				TLS:                  &oidcop.TLS{Cert: srvCert, Key: srvKey, ClientCA: clientCA.CAFile},
				MTLS:                 &oidcop.MTLS{TLSClientAuth: true, SelfSignedTLSClientAuth: true, CertificateBoundAccessTokens: true, Alias: tc.alias},
				RootCAs:              ca.Pool,
			})
			cfg := withCAFile(s.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: tls\n    auth_method: %s\n    tls_cert_file: %s\n    tls_key_file: %s\n",
				tc.method, certFile, keyFile), ccGrant("")), op.Issuer, ca.CAFile)
			td := StartTokend(t, s, cfg)
			secrets := keySecretsPEM(t, keyFile)
			td.NoLeak(secrets...)

			first := td.WaitToken("api", 20*time.Second)
			in := op.Introspect(first.AccessToken)
			if !in.Active || in.ClientID != "tls" {
				t.Errorf("introspection = %+v, want active for tls", in)
			}
			if sum := sha256.Sum256(cert.Raw); tc.method == "self_signed_tls_client_auth" && in.Cnf.X5TS256 != base64.RawURLEncoding.EncodeToString(sum[:]) {
				t.Errorf("token bound to certificate %q, want tokend's %x", in.Cnf.X5TS256, sum)
			}
			eventually(t, 25*time.Second, 250*time.Millisecond, "a renewed token", func() error {
				if tok := td.MustToken("api"); tok.AccessToken == first.AccessToken {
					return fmt.Errorf("still the first token")
				}
				return nil
			})
			st := op.Stats()
			if st.TokenSuccess["client_credentials"] < 2 || len(st.ClientAuthErrors) != 0 || st.ClientCertificates < 2 {
				t.Errorf("provider stats = %+v, want 2 tokens with a certificate, no client authentication error", st)
			}
			if tc.alias && st.AliasRequests < 2 {
				t.Errorf("%d requests at the mtls alias: tokend did not use mtls_endpoint_aliases", st.AliasRequests)
			}
			cc, code := checkConfig(t, td.cfgPath)
			if code != 0 || !strings.Contains(cc, tc.method) || !strings.Contains(cc, ca.CAFile) {
				t.Errorf("check-config exit %d, want 0 explaining %s and the CA bundle:\n%s", code, tc.method, cc)
			}
			noSecretIn(t, "check-config and status output", cc+td.MustCLI("status", "api", "--json"), secrets)

			// The same client with an expired certificate: check-config
			// refuses it and says why.
			expCert, expKey, _ := issuer.clientCert(t, "expired", "tokend-e2e", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
			bad := strings.NewReplacer(certFile, expCert, keyFile, expKey).Replace(cfg)
			badPath := s.Dir + "/expired.yaml"
			writeFile(t, badPath, bad)
			out, code := checkConfig(t, badPath)
			if code == 0 || !strings.Contains(out, "expired") || !strings.Contains(out, "tls_cert_file") {
				t.Errorf("check-config of an expired client certificate: exit %d, want a failure naming tls_cert_file and saying expired:\n%s", code, out)
			}
			noSecretIn(t, "check-config output", out, keySecretsPEM(t, expKey))
			t.Logf("check-config of an expired certificate: %s", strings.TrimSpace(out))

			// Without ca_file the provider's certificate is not trusted:
			// no token, and the status says why.
			if tc.alias {
				return
			}
			s2 := NewSetupNoCallback(t)
			cfg2 := s2.Config(op.Issuer, fmt.Sprintf("  svc:\n    provider: op\n    client_id: tls\n    auth_method: %s\n    tls_cert_file: %s\n    tls_key_file: %s\n",
				tc.method, certFile, keyFile), ccGrant(""))
			td2 := StartTokend(t, s2, cfg2)
			td2.NoLeak(secrets...)
			st2 := waitFailure(t, td2, "api")
			if st2.State == api.StateValid || !strings.Contains(st2.LastError, "certificate") {
				t.Errorf("without ca_file: state %q, last error %q; want no token and a certificate error", st2.State, st2.LastError)
			}
		})
	}
}

// keySecretsPEM are the strings of a PEM key file that must never be logged.
func keySecretsPEM(t testing.TB, keyFile string) []string {
	t.Helper()
	k, err := parseKeyFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return keySecrets(t, keyFile, k)
}

// TestCheckConfigExplainsAssertionAndExchange: oidc-provider has neither the JWT-bearer grant nor
// token exchange (the in-process provider's tests cover them against
// tokend); here check-config explains them — the assertion's issuer,
// subject, audience and key (a PEM key and a Google-style service-account
// key file), the exchange's subject grant, dpop — without showing a key, and
// says what is wrong with a bad one.
func TestCheckConfigExplainsAssertionAndExchange(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	key := newKey(t, "EC")
	keyFile := writeKey(t, s.Dir+"/assertion.key", key)
	secrets := keySecrets(t, keyFile, key)
	pemText, _ := os.ReadFile(keyFile)
	sa, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "e2e", "private_key_id": "sa-key-1", "private_key": string(pemText),
		"client_email": "robot@e2e.iam.example", "client_id": "1234", "token_uri": "https://oauth2.example/token",
	})
	saFile := s.Dir + "/sa.json"
	writeFile(t, saFile, string(sa))
	good := s.Config("https://op.example", fmt.Sprintf(`  svc:
    provider: op
    client_id: cc
    client_secret_file: %s
    auth_method: client_secret_basic
  google:
    provider: op
    auth_method: none
`, s.SecretFile("cc", ccSecret)), fmt.Sprintf(`  bearer:
    client: svc
    type: jwt_bearer
    scopes: [api:read]
    assertion:
      issuer: svc@e2e.example
      subject: user@e2e.example
      private_key_file: %s
      key_id: k1
      lifetime: 2m
    {{READERS}}
  robot:
    client: google
    type: jwt_bearer
    assertion:
      private_key_file: %s
    {{READERS}}
  base:
    client: svc
    type: client_credentials
    dpop: true
    {{READERS}}
  narrow:
    client: svc
    type: token_exchange
    subject_grant: base
    audience: [api.example]
    scopes: [api:read]
    {{READERS}}
`, keyFile, saFile))
	path := s.Dir + "/config.yaml"
	writeFile(t, path, good)
	out, code := checkConfig(t, path)
	defer func() {
		if t.Failed() {
			t.Logf("check-config of the good configuration:\n%s", out)
		}
	}()
	for _, want := range []string{"jwt_bearer", "svc@e2e.example", "user@e2e.example", "robot@e2e.iam.example", "service account", "sa-key-1",
		"token_exchange", "DPoP"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q", want)
		}
	}
	if code != 0 || !regexp.MustCompile(`narrow[^\n]*\n(\s+[^\n]*\n)*?\s+exchanges:[^\n]*\bbase\b`).MatchString(out) {
		t.Errorf("check-config exit %d; want 0 and narrow's subject grant base explained", code)
	}
	noSecretIn(t, "check-config output", out, append(secrets, string(sa)))

	// A key file its group can read: a warning, as for a client secret;
	// one every user can read: refused.
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	if out, code := checkConfig(t, path); code != 0 || !strings.Contains(out, keyFile+" is readable by group or others") {
		t.Errorf("check-config does not warn of a key file of mode 0640 (exit %d):\n%s", code, out)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := checkConfig(t, path); code == 0 || !strings.Contains(out, keyFile+" is readable by every user") {
		t.Errorf("check-config does not refuse a key file of mode 0644 (exit %d):\n%s", code, out)
	}
	os.Chmod(keyFile, 0o600)

	for _, tc := range []struct{ name, from, to, want string }{
		{"unknown subject grant", "subject_grant: base", "subject_grant: nosuch", "nosuch"},
		{"no assertion key", "      private_key_file: " + keyFile + "\n", "", "private_key_file"},
		{"unsupported alg", "      key_id: k1\n", "      key_id: k1\n      signing_alg: RS256\n", "RS256"},
	} {
		bad := strings.Replace(good, tc.from, tc.to, 1)
		if bad == good {
			t.Fatalf("%s: the replacement did not apply", tc.name)
		}
		writeFile(t, path, bad)
		out, code := checkConfig(t, path)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%s: check-config exit %d, want a failure naming %q:\n%s", tc.name, code, tc.want, out)
		}
		noSecretIn(t, "check-config output", out, secrets)
	}
}

// TestClientAuthRegistration: a private_key_jwt client without client_id
// registers itself (RFC 7591) with its public key as jwks, then
// authenticates with assertions that key signs; no secret is issued.
func TestClientAuthRegistration(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	key := newKey(t, "EC")
	keyFile := writeKey(t, s.Dir+"/client.key", key)
	op := oidcop.Start(t, oidcop.Config{})
	td := StartTokend(t, s, s.Config(op.Issuer, fmt.Sprintf("  dyn:\n    provider: op\n    client_name: tokend e2e\n    auth_method: private_key_jwt\n    private_key_file: %s\n    key_id: dyn-1\n", keyFile),
		strings.Replace(ccGrant(""), "client: svc", "client: dyn", 1)))
	td.NoLeak(keySecrets(t, keyFile, key)...)
	NoLeakSeen(t, td, op)
	tok := td.WaitToken("api", 20*time.Second)
	in := op.Introspect(tok.AccessToken)
	if !in.Active || in.ClientID == "" {
		t.Fatalf("introspection = %+v", in)
	}
	st := op.Stats()
	if st.Registrations != 1 || len(st.ClientAuthErrors) != 0 {
		t.Errorf("provider stats = %+v, want one registration and no client authentication error", st)
	}
	if !strings.Contains(op.Logs(), "registered client "+in.ClientID+" private_key_jwt") {
		t.Errorf("the client was not registered for private_key_jwt:\n%s", op.Logs())
	}
	seen := op.Seen().ClientAssertions
	if len(seen) == 0 {
		t.Fatal("no client assertion seen")
	}
	h, c := jwtParts(t, seen[len(seen)-1])
	if c["iss"] != in.ClientID || h["kid"] != "dyn-1" {
		t.Errorf("assertion iss %v kid %v, want the registered %s and dyn-1", c["iss"], h["kid"], in.ClientID)
	}
}

// TestDeviceFlowPrivateKeyJWTDPoP: a device_code grant of a private_key_jwt
// client with dpop: true. Every call to the provider is authenticated with
// an assertion (device authorization, polling, refresh, revocation); the
// tokens are DPoP-bound to one key, kept across a restart.
func TestDeviceFlowPrivateKeyJWTDPoP(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	s := NewSetupNoCallback(t)
	key := newKey(t, "EC")
	keyFile := writeKey(t, s.Dir+"/client.key", key)
	op := oidcop.Start(t, oidcop.Config{AccessTokenTTL: 60, Clients: []map[string]any{{
		"client_id": "tv", "grant_types": []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"},
		"response_types": []string{}, "redirect_uris": []string{},
		"token_endpoint_auth_method": "private_key_jwt", "jwks": publicJWKS(t, key.Public(), "", ""),
	}}})
	td := StartTokend(t, s, s.Config(op.Issuer, fmt.Sprintf("  tv:\n    provider: op\n    client_id: tv\n    auth_method: private_key_jwt\n    private_key_file: %s\n", keyFile),
		"  tv:\n    client: tv\n    type: device_code\n    scopes: [openid]\n    dpop: true\n    {{READERS}}\n"))
	td.NoLeak(keySecrets(t, keyFile, key)...)
	NoLeakSeen(t, td, op)

	cli := td.StartCLI("authorize", "tv")
	approveDevice(t, op.Issuer, cli.WaitOutput(userCodeRe, 20*time.Second)[0])
	tok := td.WaitToken("tv", 30*time.Second)
	if code := cli.Wait(30 * time.Second); code != 0 {
		t.Errorf("tokend authorize exited %d:\n%s", code, cli.Output())
	}
	in := op.Introspect(tok.AccessToken)
	if !in.Active || in.ClientID != "tv" || in.TokenType != "DPoP" || in.Cnf.JKT == "" {
		t.Fatalf("introspection = %+v, want an active DPoP-bound token of tv", in)
	}
	td.Restart()
	td.MustCLI("refresh", "tv")
	tok2 := td.MustToken("tv")
	if in2 := op.Introspect(tok2.AccessToken); tok2.AccessToken == tok.AccessToken || !in2.Active || in2.Cnf.JKT != in.Cnf.JKT {
		t.Errorf("after restart and refresh: new token %t, introspection %+v, want bound to %s", tok2.AccessToken != tok.AccessToken, in2, in.Cnf.JKT)
	}
	td.MustCLI("revoke", "tv")
	if op.Introspect(tok2.AccessToken).Active {
		t.Errorf("token still active after tokend revoke")
	}
	st := op.Stats()
	if len(st.ClientAuthErrors) != 0 || st.RevocationErrors != 0 || st.Revocations < 1 || st.DeviceAuthorizations != 1 || st.InvalidGrant != 0 {
		t.Errorf("provider stats = %+v, want a device authorization, a revocation, no errors", st)
	}
	for _, route := range []string{"device_authorization", "token", "revocation"} {
		if st.ClientAssertions[route] == 0 {
			t.Errorf("no client assertion at the %s endpoint (assertions by endpoint: %v)", route, st.ClientAssertions)
		}
	}
	if st.DPoPTokens != 2 || len(st.DPoPErrors) != 0 {
		t.Errorf("provider stats = %+v, want 2 DPoP tokens (device code, refresh), no proof refused", st)
	}
}
