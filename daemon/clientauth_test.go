package daemon

// Client authentication beyond shared secrets against the in-process
// provider: private_key_jwt, client_secret_jwt and tls_client_auth keep a
// grant refreshing, a key or certificate the provider refuses is a
// credentials error, and dynamic registration sends the public key. Each
// test also scans the log for the keys and every assertion the provider
// received.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
)

func ecSigningKey(t *testing.T) oauth.SigningKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return oauth.SigningKey{Signer: k, KeyID: "k1"}
}

// privateParts are the encodings a private key's scalar would show in a
// log: base64url (a JWK's d), base64 and hex.
func privateParts(t *testing.T, k oauth.SigningKey) []string {
	t.Helper()
	b, err := k.Signer.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return []string{base64.RawURLEncoding.EncodeToString(b), base64.StdEncoding.EncodeToString(b)[:40], hex.EncodeToString(b)}
}

func publicJWKS(t *testing.T, k oauth.SigningKey) json.RawMessage {
	t.Helper()
	b, err := k.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tlsClient adds client "mc" at the provider and to the configuration: it
// authenticates with method m (tls_client_auth, or
// self_signed_tls_client_auth with its certificate in the client's JWKS)
// and a certificate for CN=mtls-app valid until notAfter.
func (h *harness) tlsClient(m string, notAfter time.Time) {
	h.t.Helper()
	oc := devprovider.Client{ID: "mc", AuthMethod: m}
	var cert, err = h.prov.IssueClientCert(pkix.Name{CommonName: "mtls-app"}, notAfter)
	if m == devprovider.AuthMethodSelfSignedTLS {
		cert, err = h.prov.SelfSignedClientCert("mtls-app", notAfter)
		oc.JWKS = devprovider.CertJWKS(cert)
	} else {
		oc.TLSSubjectDN = "CN=mtls-app"
	}
	if err != nil {
		h.t.Fatal(err)
	}
	h.prov.AddClient(oc)
	h.cfg.Clients["mc"] = config.Client{Provider: "test", ClientID: "mc", AuthMethod: oauth.AuthMethod(m), TLSCert: &cert}
}

// reobtained runs a client_credentials-like grant through two token
// lifetimes and checks each brought a new token.
func reobtained(t *testing.T, h *harness, name string) {
	t.Helper()
	first := h.token(name)
	h.advance(10 * time.Minute)
	second := h.token(name)
	if first.AccessToken == second.AccessToken {
		t.Fatalf("%s was not re-obtained", name)
	}
	if !h.prov.Valid(second.AccessToken) {
		t.Fatalf("%s: the provider does not know the new token", name)
	}
	if st := h.status(name); st.State != api.StateValid || st.Generation < 2 {
		t.Fatalf("status: %+v", st)
	}
}

func TestClientAssertionAuthRefreshes(t *testing.T) {
	for _, m := range []string{devprovider.AuthMethodPrivateKeyJWT, devprovider.AuthMethodSecretJWT} {
		t.Run(m, func(t *testing.T) {
			k := ecSigningKey(t)
			secret := "a-client-secret-long-enough-for-HS256!!"
			oc := devprovider.Client{ID: "kc", AuthMethod: m}
			cc := config.Client{Provider: "test", ClientID: "kc", AuthMethod: oauth.AuthMethod(m)}
			if m == devprovider.AuthMethodPrivateKeyJWT {
				oc.JWKS, cc.Key = publicJWKS(t, k), &k
			} else {
				oc.Secret, cc.Secret = secret, oauth.NewSecret(secret)
			}
			h := newHarness(t, harnessOpts{prov: devprovider.Options{Clients: []devprovider.Client{oc}}, config: func(c *config.Config) {
				c.Clients["kc"] = cc
				c.Grants = map[string]config.Grant{"svc": {Client: "kc", Type: config.GrantClientCredentials, Scopes: []string{"read"}}}
			}})
			reobtained(t, h, "svc")
			s := h.prov.Stats()
			if s.ClientAuthFailures != 0 || s.AssertionFailures != 0 || s.ByGrant["client_credentials"] < 2 {
				t.Fatalf("provider stats: %+v", s)
			}
			h.logMustNotContain(h.prov.Issued()...)
			h.logMustNotContain(secret)
			h.logMustNotContain(privateParts(t, k)...)
		})
	}
}

func TestTLSClientAuthRefreshes(t *testing.T) {
	for _, m := range []string{devprovider.AuthMethodTLS, devprovider.AuthMethodSelfSignedTLS} {
		t.Run(m, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true, noRun: true})
			h.tlsClient(m, time.Now().Add(time.Hour))
			h.cfg.Grants = map[string]config.Grant{"svc": {Client: "mc", Type: config.GrantClientCredentials, Scopes: []string{"read"}}}
			h.start()
			reobtained(t, h, "svc")
			if s := h.prov.Stats(); s.ClientAuthFailures != 0 || s.ByGrant["client_credentials"] < 2 {
				t.Fatalf("provider stats: %+v", s)
			}
			h.logMustNotContain(h.prov.Issued()...)
		})
	}
}

// A private_key_jwt client registers its public key and then
// authenticates with assertions; a client with a dpop grant asks for
// DPoP-bound tokens; the new grant types are registered.
func TestRegistrationOfKeyAndDPoPClients(t *testing.T) {
	k := ecSigningKey(t)
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AllowRegistration: true, AssertionIssuers: []devprovider.AssertionIssuer{{Issuer: "svc@example", JWKS: publicJWKS(t, k)}}},
		config: func(c *config.Config) {
			c.Clients["dyn"] = config.Client{Provider: "test", AuthMethod: devprovider.AuthMethodPrivateKeyJWT, Key: &k}
			c.Grants = map[string]config.Grant{
				"dyn": {Client: "dyn", Type: config.GrantClientCredentials, DPoP: true},
				"sa": {Client: "dyn", Type: config.GrantJWTBearer,
					Assertion: &config.Assertion{Issuer: "svc@example", Key: k}},
			}
		}})
	got := h.token("dyn")
	if info, _ := h.prov.TokenInfo(got.AccessToken); got.TokenType != "DPoP" || info.JKT == "" || info.ClientID == "" {
		t.Fatalf("token of the registered client: %+v %+v", got, info)
	}
	if s := h.prov.Stats(); s.Registrations != 1 || s.ClientAuthFailures != 0 {
		t.Fatalf("provider stats: %+v", s)
	}
	h.d.mu.RLock()
	c := h.d.clients["dyn"]
	h.d.mu.RUnlock()
	prov, err := h.d.providerFor(context.Background(), h.d.grant("dyn"))
	if err != nil {
		t.Fatal(err)
	}
	req := h.d.registrationRequest(c)
	if err := registrationKey(c, prov.Endpoints, &req); err != nil {
		t.Fatal(err)
	}
	if !req.DPoPBound || len(req.JWKS) == 0 || req.SigningAlg != "ES256" || req.AuthMethod != oauth.AuthPrivateKeyJWT {
		t.Fatalf("registration request: %+v", req)
	}
	if !slices.Contains(req.GrantTypes, "urn:ietf:params:oauth:grant-type:jwt-bearer") || slices.Contains(req.GrantTypes, "refresh_token") {
		t.Fatalf("grant types: %v", req.GrantTypes)
	}
	if bytes.Contains(req.JWKS, []byte(`"d"`)) {
		t.Fatal("the registration carries the private key")
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// A private_key_jwt client whose key the provider does not know is a
// credentials error, not retried.
func TestWrongClientKeyIsCredentialsError(t *testing.T) {
	known, wrong := ecSigningKey(t), ecSigningKey(t)
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Clients: []devprovider.Client{{ID: "kc", AuthMethod: devprovider.AuthMethodPrivateKeyJWT, JWKS: publicJWKS(t, known)}}},
		config: func(c *config.Config) {
			c.Clients["kc"] = config.Client{Provider: "test", ClientID: "kc", AuthMethod: devprovider.AuthMethodPrivateKeyJWT, Key: &wrong}
			c.Grants = map[string]config.Grant{"svc": {Client: "kc", Type: config.GrantClientCredentials}}
		}})
	// The first obtain runs at start; on a loaded machine it may still be
	// on its way when the harness hands over.
	waitFor(t, "credentials error", func() bool { return h.status("svc").State == api.StateCredentialsError })
	h.advance(time.Minute)
	if n := h.prov.Stats().ClientAuthFailures; n != 1 {
		t.Fatalf("%d client authentication failures, want 1", n)
	}
	h.logMustNotContain(h.prov.Issued()...)
}

// A client certificate that expired (config refuses one at load; this one
// expired while tokend ran: before t0, the provider's clock) is the
// client's credentials failing.
func TestExpiredClientCertificate(t *testing.T) {
	for _, m := range []string{devprovider.AuthMethodTLS, devprovider.AuthMethodSelfSignedTLS} {
		t.Run(m, func(t *testing.T) {
			h := newHarness(t, harnessOpts{tls: true, noRun: true})
			h.tlsClient(m, t0.Add(-time.Minute))
			h.cfg.Grants = map[string]config.Grant{"svc": {Client: "mc", Type: config.GrantClientCredentials}}
			h.start()
			if st := h.status("svc"); st.State != api.StateCredentialsError {
				t.Fatalf("status: %+v", st)
			}
		})
	}
}
