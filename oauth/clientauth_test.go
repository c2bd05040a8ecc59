package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/tokend/tokend/internal/testutil"
)

// testJWTSecret is long enough for HS512 (RFC 7518 §3.2).
const testJWTSecret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var allAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512,
}

func pemOf(t testing.TB, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t testing.TB, k any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PRIVATE KEY", der)
}

// verifier checks client assertions as a provider does, with go-jose:
// signature, iss = sub = client_id, aud, iat and exp from the test clock,
// and a jti never seen before.
type verifier struct {
	t     *testing.T
	key   any // public key, or []byte for client_secret_jwt
	aud   string
	clock *testClock

	mu   sync.Mutex
	jtis map[string]bool
	seen []string // assertions received, in order
}

func newVerifier(t *testing.T, key any, aud string, clock *testClock) *verifier {
	return &verifier{t: t, key: key, aud: aud, clock: clock, jtis: map[string]bool{}}
}

// check verifies the client authentication of a form request that has been
// parsed (r.ParseForm) and reports through t.Errorf.
func (v *verifier) check(r *http.Request) {
	t := v.t
	if got := r.PostForm.Get("client_assertion_type"); got != assertionTypeJWT {
		t.Errorf("%s: client_assertion_type = %q", r.URL.Path, got)
	}
	if r.PostForm.Get("client_id") != testClientID {
		t.Errorf("%s: client_id = %q", r.URL.Path, r.PostForm.Get("client_id"))
	}
	if r.PostForm.Has("client_secret") || r.Header.Get("Authorization") != "" {
		t.Errorf("%s: a client secret was sent besides the assertion", r.URL.Path)
	}
	if n := len(r.PostForm["client_assertion"]); n != 1 {
		t.Errorf("%s: %d client_assertion values", r.URL.Path, n)
		return
	}
	a := r.PostForm.Get("client_assertion")
	v.mu.Lock()
	v.seen = append(v.seen, a)
	v.mu.Unlock()
	tok, err := jwt.ParseSigned(a, allAlgs)
	if err != nil {
		t.Errorf("%s: assertion does not parse: %v", r.URL.Path, err)
		return
	}
	var c jwt.Claims
	if err := tok.Claims(v.key, &c); err != nil {
		t.Errorf("%s: assertion signature: %v", r.URL.Path, err)
		return
	}
	now := v.clock.Now()
	if c.Issuer != testClientID || c.Subject != testClientID || !c.Audience.Contains(v.aud) || len(c.Audience) != 1 {
		t.Errorf("%s: iss, sub, aud = %q, %q, %q", r.URL.Path, c.Issuer, c.Subject, c.Audience)
	}
	if c.IssuedAt == nil || !c.IssuedAt.Time().Equal(now) || c.Expiry == nil || !c.Expiry.Time().Equal(now.Add(60*time.Second)) {
		t.Errorf("%s: iat, exp = %v, %v; want %v and 60 s later", r.URL.Path, c.IssuedAt, c.Expiry, now)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: testClientID, Subject: testClientID, AnyAudience: jwt.Audience{v.aud}, Time: now}, 0); err != nil {
		t.Errorf("%s: claims: %v", r.URL.Path, err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c.ID == "" || v.jtis[c.ID] {
		t.Errorf("%s: jti %q empty or reused", r.URL.Path, c.ID)
	}
	v.jtis[c.ID] = true
}

// tokenAnswer is a valid token endpoint answer.
func tokenAnswer(w http.ResponseWriter, typ string) {
	writeJSON(w, 200, map[string]any{"access_token": "at-1", "token_type": typ, "expires_in": 3600, "refresh_token": "rt-2"})
}

// assertionServer serves /token, /revoke and /device, checking every
// request's client assertion with v. The device flow's first poll is
// answered authorization_pending, so polling sends two assertions.
func assertionServer(t *testing.T, v *verifier) (*httptest.Server, *map[string]int) {
	var mu sync.Mutex
	counts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("ParseForm: %v", err)
		}
		v.check(r)
		gt := r.PostForm.Get("grant_type")
		mu.Lock()
		counts[gt]++
		n := counts[gt]
		mu.Unlock()
		switch {
		case r.URL.Path == "/revoke":
			w.WriteHeader(200)
		case r.URL.Path == "/device":
			writeJSON(w, 200, map[string]any{"device_code": "dc-1", "user_code": "U", "verification_uri": "https://id.example.com/d", "interval": 1})
		case gt == "urn:ietf:params:oauth:grant-type:device_code" && n == 1:
			writeJSON(w, 400, map[string]any{"error": "authorization_pending"})
		default:
			tokenAnswer(w, "Bearer")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &counts
}

// nineRequests makes one request of each kind that authenticates the client.
func nineRequests(t *testing.T, p *Provider) {
	t.Helper()
	ctx := context.Background()
	steps := []struct {
		name string
		do   func() error
	}{
		{"exchange", func() error { _, err := p.Exchange(ctx, "code-1", NewVerifier(), nil); return err }},
		{"refresh", func() error { _, err := p.Refresh(ctx, NewSecret("rt-1"), nil, nil); return err }},
		{"client_credentials", func() error { _, err := p.ClientCredentials(ctx, []string{"a"}, nil); return err }},
		{"password", func() error { _, err := p.Password(ctx, "u", NewSecret("pw-secret"), nil, nil); return err }},
		{"jwt_bearer", func() error { _, err := p.JWTBearer(ctx, NewSecret("grant.assertion.jwt"), nil, nil); return err }},
		{"token_exchange", func() error {
			_, err := p.TokenExchange(ctx, ExchangeRequest{SubjectToken: NewSecret("subject-token")})
			return err
		}},
		{"revoke", func() error { return p.Revoke(ctx, NewSecret("rt-1"), "refresh_token") }},
		{"device", func() error {
			da, err := p.StartDevice(ctx, nil, nil)
			if err != nil {
				return err
			}
			_, err = p.AwaitDevice(ctx, da)
			return err
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
	}
}

// TestClientAssertionEveryRequest sends each of the nine kinds of request
// that authenticate the client (the device flow is two, its polling two
// polls) and verifies each one's assertion as a provider would.
func TestClientAssertionEveryRequest(t *testing.T) {
	ec := testutil.ECKey(t, elliptic.P256())
	cases := []struct {
		name string
		m    AuthMethod
		key  *SigningKey
		pub  any
		algs []string // the provider's token_endpoint_auth_signing_alg_values_supported
		aud  string   // Client.AssertionAudience
	}{
		{"private_key_jwt/EC", AuthPrivateKeyJWT, &SigningKey{Signer: ec, KeyID: "k1"}, &ec.PublicKey, nil, ""},
		{"private_key_jwt/RSA-PS256", AuthPrivateKeyJWT, &SigningKey{Signer: testutil.RSAKey(t)}, &testutil.RSAKey(t).PublicKey, []string{"PS256"}, "issuer"},
		{"client_secret_jwt", AuthSecretJWT, nil, []byte(testJWTSecret), []string{"HS512", "RS256"}, "url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if testing.Short() {
				t.Skip("the device flow polls on real time for 2 s")
			}
			clock := newClock()
			v := newVerifier(t, c.pub, "", clock)
			srv, counts := assertionServer(t, v)
			p := newTestProvider(srv, c.m, clock)
			p.Client.Secret = NewSecret(testJWTSecret)
			p.Client.Key = c.key
			p.Client.AssertionAudience = c.aud
			p.Endpoints.TokenAuthSigningAlgs = c.algs
			switch c.aud {
			case "", "url":
				v.aud = srv.URL + "/token"
			case "issuer":
				v.aud = srv.URL
			}
			if c.aud == "url" {
				p.Client.AssertionAudience = srv.URL + "/token" // written out: the endpoint that receives it
			}
			nineRequests(t, p)
			if len(v.seen) != 10 || len(v.jtis) != 10 {
				t.Errorf("%d assertions, %d distinct jti; want 10 (9 kinds, 2 device polls): %v", len(v.seen), len(v.jtis), *counts)
			}
			for _, a := range v.seen {
				h, err := jose.ParseSignedCompact(a, allAlgs)
				if err != nil {
					t.Fatal(err)
				}
				alg := h.Signatures[0].Header.Algorithm
				switch {
				case c.m == AuthSecretJWT && alg != "HS512",
					c.name == "private_key_jwt/EC" && (alg != "ES256" || h.Signatures[0].Header.KeyID != "k1"),
					c.name == "private_key_jwt/RSA-PS256" && (alg != "PS256" || h.Signatures[0].Header.KeyID != ""):
					t.Errorf("alg, kid = %s, %q", alg, h.Signatures[0].Header.KeyID)
				}
			}
		})
	}
}

func TestClientAssertionConfigurationErrors(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++; tokenAnswer(w, "Bearer") }))
	defer srv.Close()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		set  func(p *Provider)
		want string
	}{
		{"no key", func(p *Provider) { p.Client.AuthMethod = AuthPrivateKeyJWT }, "needs a private key"},
		{"alg not offered", func(p *Provider) {
			p.Client.AuthMethod = AuthPrivateKeyJWT
			p.Client.Key = &SigningKey{Signer: testutil.Ed25519Key(t)}
			p.Endpoints.TokenAuthSigningAlgs = []string{"RS256", "ES256"}
		}, "client_credentials: the provider accepts RS256, ES256, none of which a Ed25519 key can make"},
		{"short secret", func(p *Provider) { p.Client.AuthMethod = AuthSecretJWT }, "at least 32 bytes"},
		{"no client_id", func(p *Provider) {
			p.Client.AuthMethod = AuthSecretJWT
			p.Client.Secret = NewSecret(testJWTSecret)
			p.Client.ID = ""
		}, "needs a client_id"},
		{"no HMAC offered", func(p *Provider) {
			p.Client.AuthMethod = AuthSecretJWT
			p.Client.Secret = NewSecret(testJWTSecret)
			p.Endpoints.TokenAuthSigningAlgs = []string{"RS256"}
		}, "accepts none of HS256"},
		{"issuer audience without issuer", func(p *Provider) {
			p.Client.AuthMethod = AuthSecretJWT
			p.Client.Secret = NewSecret(testJWTSecret)
			p.Client.AssertionAudience = "issuer"
			p.Endpoints.Issuer = ""
		}, "has none"},
		// A signed assertion goes only to its audience.
		{"audience of another server", func(p *Provider) {
			p.Client.AuthMethod = AuthSecretJWT
			p.Client.Secret = NewSecret(testJWTSecret)
			p.Client.AssertionAudience = "https://other.example.com/token"
		}, "assertion audience https://other.example.com/token is neither the token endpoint"},
	} {
		p := newTestProvider(srv, AuthBasic, newClock())
		c.set(p)
		_, err := p.ClientCredentials(ctx, nil, nil)
		if ClassOf(err) != Configuration || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want a Configuration error saying %q", c.name, err, c.want)
		}
		if err := p.Revoke(ctx, NewSecret("tok"), ""); ClassOf(err) != Configuration {
			t.Errorf("%s: revoke: %v", c.name, err)
		}
	}
	if calls != 0 {
		t.Errorf("%d requests sent with a broken configuration", calls)
	}
}

func TestChooseAlg(t *testing.T) {
	rsaK, p256, p384, ed := testutil.RSAKey(t), testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P384()), testutil.Ed25519Key(t)
	for _, c := range []struct {
		key       crypto.Signer
		alg       string
		supported []string
		want      string // "" : an error
	}{
		{rsaK, "", nil, "RS256"},
		{p256, "", nil, "ES256"},
		{p384, "", nil, "ES384"},
		{ed, "", nil, "EdDSA"},
		{rsaK, "", []string{"HS256", "PS256", "RS256"}, "RS256"}, // the preferred one when offered
		{rsaK, "", []string{"HS256", "PS384", "ES256"}, "PS384"}, // else the first that fits
		{p256, "", []string{"RS256", "ES384", "ES256"}, "ES256"},
		{p384, "", []string{"ES256"}, ""},
		{ed, "", []string{"ES256", "RS256"}, ""},
		{rsaK, "PS256", nil, "PS256"},
		{rsaK, "PS256", []string{"RS256", "PS256"}, "PS256"},
		{rsaK, "PS256", []string{"RS256"}, ""}, // configured, not offered
		{rsaK, "ES256", nil, ""},               // does not fit the key
		{p256, "ES384", nil, ""},
		{p384, "ES384", nil, "ES384"},
		{ed, "EdDSA", []string{"EdDSA"}, "EdDSA"},
		{ed, "HS256", nil, ""},
	} {
		got, err := SigningKey{Signer: c.key, Alg: c.alg}.ChooseAlg(c.supported)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("%s alg %q supported %v: %q, %v; want %q", keyType(c.key), c.alg, c.supported, got, err, c.want)
		}
		if err != nil && ClassOf(err) != Configuration {
			t.Errorf("error class %v", ClassOf(err))
		}
	}
}

func TestParseSigningKey(t *testing.T) {
	rsaK, p256, p384, ed := testutil.RSAKey(t), testutil.ECKey(t, elliptic.P256()), testutil.ECKey(t, elliptic.P384()), testutil.Ed25519Key(t)
	sec1, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	cert := pemOf(t, "CERTIFICATE", []byte("not parsed"))
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"pkcs8 rsa":        {pkcs8(t, rsaK), "RSA 2048"},
		"pkcs1 rsa":        {pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaK)), "RSA 2048"},
		"pkcs8 p256":       {pkcs8(t, p256), "EC P-256"},
		"sec1 p384":        {append(pemOf(t, "EC PARAMETERS", []byte{6, 5, 43, 129, 4, 0, 34}), pemOf(t, "EC PRIVATE KEY", sec1)...), "EC P-384"},
		"pkcs8 ed25519":    {pkcs8(t, ed), "Ed25519"},
		"key after a cert": {append(cert, pkcs8(t, p256)...), "EC P-256"},
	} {
		k, sa, err := ParseSigningKey(c.data)
		if err != nil || sa != nil || keyType(k.Signer) != c.want {
			t.Errorf("%s: %v, %v, %v", name, k, sa, err)
		}
	}

	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521 := testutil.ECKey(t, elliptic.P521())
	garbage := pemOf(t, "PRIVATE KEY", []byte("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-secret-bytes"))
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"rsa 1024":   {pkcs8(t, small), "at least 2048"},
		"p521":       {pkcs8(t, p521), "P-256 or P-384"},
		"encrypted":  {pemOf(t, "ENCRYPTED PRIVATE KEY", []byte("x")), "encrypted"},
		"garbage":    {garbage, "does not hold a valid private key"},
		"no pem":     {[]byte("just text"), "no PEM private key"},
		"two keys":   {append(pkcs8(t, p256), pkcs8(t, ed)...), "more than one"},
		"public key": {pemOf(t, "PUBLIC KEY", []byte("x")), "no PEM private key"},
		"bad json":   {[]byte(`{"private_key": "-----BEGIN`), "not valid JSON"},
		"sa no key":  {[]byte(`{"type":"service_account","client_email":"a@b"}`), "no private_key"},
	} {
		_, _, err := ParseSigningKey(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) || ClassOf(err) != Configuration {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "secret-bytes") || strings.Contains(err.Error(), "MII") {
			t.Errorf("%s: error quotes the key: %v", name, err)
		}
	}
}

func TestParseServiceAccount(t *testing.T) {
	rsaK := testutil.RSAKey(t)
	f, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "p", "private_key_id": "abc123",
		"private_key": string(pkcs8(t, rsaK)), "client_email": "sa@p.iam.gserviceaccount.com",
		"client_id": "1234", "token_uri": "https://oauth2.googleapis.com/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	k, sa, err := ParseSigningKey(f)
	if err != nil {
		t.Fatal(err)
	}
	if sa == nil || *sa != (ServiceAccount{ClientEmail: "sa@p.iam.gserviceaccount.com", TokenURI: "https://oauth2.googleapis.com/token", ClientID: "1234"}) {
		t.Errorf("ServiceAccount = %+v", sa)
	}
	if k.KeyID != "abc123" || !rsaK.Equal(k.Signer) {
		t.Errorf("key = %v", k)
	}
}

func TestSignAssertion(t *testing.T) {
	ec := testutil.ECKey(t, elliptic.P384())
	now := newClock().Now()
	a := Assertion{Issuer: "sa@x", Audience: "https://as/token", Key: SigningKey{Signer: ec, KeyID: "kid9"}, Claims: map[string]any{"scope": "a b"}}
	s, err := SignAssertion(a, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(s.Reveal(), []jose.SignatureAlgorithm{jose.ES384})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	var extra struct {
		Scope string `json:"scope"`
	}
	if err := tok.Claims(&ec.PublicKey, &c, &extra); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "sa@x" || c.Subject != "" || !c.Audience.Contains("https://as/token") || extra.Scope != "a b" ||
		!c.IssuedAt.Time().Equal(now) || !c.Expiry.Time().Equal(now.Add(5*time.Minute)) || c.ID == "" || tok.Headers[0].KeyID != "kid9" {
		t.Errorf("claims %+v, scope %q, kid %q", c, extra.Scope, tok.Headers[0].KeyID)
	}
	a.Subject = "user@x"
	s2, err := SignAssertion(a, now)
	if err != nil {
		t.Fatal(err)
	}
	var c2 jwt.Claims
	if tok2, err := jwt.ParseSigned(s2.Reveal(), []jose.SignatureAlgorithm{jose.ES384}); err != nil || tok2.Claims(&ec.PublicKey, &c2) != nil || c2.ID == c.ID || c2.Subject != "user@x" {
		t.Errorf("second assertion: jti %q, first %q (%v)", c2.ID, c.ID, err)
	}
	a.Claims = map[string]any{"exp": 1}
	if _, err := SignAssertion(a, now); ClassOf(err) != Configuration || err == nil {
		t.Errorf("overriding exp: %v", err)
	}
}

func TestSigningKeyJWKS(t *testing.T) {
	ec := testutil.ECKey(t, elliptic.P256())
	b, err := SigningKey{Signer: ec, KeyID: "k1"}.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID != "k1" || set.Keys[0].Use != "sig" || set.Keys[0].Algorithm != "ES256" {
		t.Errorf("JWKS = %s", b)
	}
	if bytes.Contains(b, []byte(`"d"`)) {
		t.Errorf("JWKS holds the private key: %s", b)
	}
	// RSA: no alg unless configured, since it may sign RS256 or PS256.
	for alg, want := range map[string]string{"": "", "PS256": "PS256"} {
		b, err := SigningKey{Signer: testutil.RSAKey(t), Alg: alg}.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &set); err != nil || set.Keys[0].Algorithm != want || !set.Keys[0].IsPublic() {
			t.Errorf("RSA alg %q: JWKS %s (%v)", alg, b, err)
		}
	}
}

// TestKeysPrintRedacted prints keys every way a log line or status could.
func TestKeysPrintRedacted(t *testing.T) {
	ec := testutil.ECKey(t, elliptic.P256())
	rsaK := testutil.RSAKey(t)
	ed := testutil.Ed25519Key(t)
	dk, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := dk.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var jwk struct {
		D string `json:"d"`
	}
	if err := json.Unmarshal(priv, &jwk); err != nil || jwk.D == "" {
		t.Fatalf("Marshal gives no private key: %v", err)
	}
	ecD, err := ec.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(ecD)
	forbidden := []string{
		d.String(), d.Text(16), rsaK.D.String()[:40], rsaK.D.Text(16)[:40],
		base64.RawURLEncoding.EncodeToString(ecD), jwk.D, "BEGIN",
		fmt.Sprintf("%x", ed.Seed()), strings.Trim(fmt.Sprint([]byte(ed.Seed())), "[]")[:20],
	}
	edKey := SigningKey{Signer: ed}
	ecKey := SigningKey{Signer: ec, KeyID: "kid-1"}
	rsaKey := &SigningKey{Signer: rsaK}
	client := Client{ID: "c", Key: &ecKey}
	type holder struct {
		Key  SigningKey
		DPoP *DPoPKey
	}
	var out bytes.Buffer
	for _, v := range []any{ecKey, rsaKey, edKey, &edKey, dk, client, holder{ecKey, dk}, &holder{edKey, dk}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b)
	}
	log := slog.New(slog.NewJSONHandler(&out, nil))
	log.Info("keys", "signing", ecKey, "rsa", rsaKey, "ed", edKey, "dpop", dk, "holder", holder{edKey, dk})
	slog.New(slog.NewTextHandler(&out, nil)).Info("keys", "signing", ecKey, "ed", edKey, "dpop", dk)
	for _, f := range forbidden {
		if strings.Contains(out.String(), f) {
			t.Fatalf("key material %q… printed in:\n%s", f[:min(len(f), 12)], out.String())
		}
	}
	if !strings.Contains(out.String(), redacted) || !strings.Contains(out.String(), "kid-1") || !strings.Contains(out.String(), dk.Thumbprint()) {
		t.Errorf("keys do not describe themselves:\n%s", out.String())
	}
}

// TestMTLSAliases: a client authenticating with a certificate sends to the
// mtls_endpoint_aliases, with its client_id and no secret; others do not.
func TestMTLSAliases(t *testing.T) {
	for _, m := range []AuthMethod{AuthTLS, AuthSelfSignedTLS, AuthPost} {
		t.Run(string(m), func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseForm(); err != nil {
					t.Error(err)
				}
				mu.Lock()
				paths = append(paths, r.URL.Path)
				mu.Unlock()
				if r.PostForm.Get("client_id") != testClientID {
					t.Errorf("client_id = %q", r.PostForm.Get("client_id"))
				}
				if m != AuthPost && (r.PostForm.Has("client_secret") || r.Header.Get("Authorization") != "" || r.PostForm.Has("client_assertion")) {
					t.Errorf("%s sent a secret or assertion: %v", m, r.PostForm)
				}
				switch r.URL.Path {
				case "/revoke", "/mtls/revoke":
				case "/device", "/mtls/device":
					writeJSON(w, 200, map[string]any{"device_code": "dc", "user_code": "U", "verification_uri": "https://v.example/"})
				default:
					tokenAnswer(w, "Bearer")
				}
			}))
			defer srv.Close()
			p := newTestProvider(srv, m, newClock())
			p.Endpoints.MTLS = &MTLSAliases{
				Token: srv.URL + "/mtls/token", Revocation: srv.URL + "/mtls/revoke", DeviceAuthorization: srv.URL + "/mtls/device",
			}
			ctx := context.Background()
			if _, err := p.ClientCredentials(ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Refresh(ctx, NewSecret("rt"), nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := p.Revoke(ctx, NewSecret("rt"), ""); err != nil {
				t.Fatal(err)
			}
			if _, err := p.StartDevice(ctx, nil, nil); err != nil {
				t.Fatal(err)
			}
			want := []string{"/mtls/token", "/mtls/token", "/mtls/revoke", "/mtls/device"}
			if m == AuthPost {
				want = []string{"/token", "/token", "/revoke", "/device"}
			}
			if !slices.Equal(paths, want) {
				t.Errorf("paths = %v, want %v", paths, want)
			}
		})
	}
	e := Endpoints{Token: "https://a/t", Registration: "https://a/r", MTLS: &MTLSAliases{Registration: "https://mtls.a/r"}}.ForTLSClientAuth()
	if e.Token != "https://a/t" || e.Registration != "https://mtls.a/r" {
		t.Errorf("ForTLSClientAuth = %+v", e)
	}
}

func TestJWTBearerAndTokenExchangeBodies(t *testing.T) {
	var got url.Values
	answer := map[string]any{"access_token": "at-x", "token_type": "N_A", "issued_token_type": TokenTypeJWT, "expires_in": 60}
	srv := formServer(t, &got, answer)
	p := newTestProvider(srv, AuthNone, newClock())
	p.Client.ID = "" // an anonymous client, as Google's JWT-bearer grant has
	ctx := context.Background()

	tok, err := p.JWTBearer(ctx, NewSecret("ey.assert.ion"), []string{"s1", "s2"}, Params{"extra": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {"ey.assert.ion"}, "scope": {"s1 s2"}, "extra": {"x"}}
	if got.Encode() != want.Encode() {
		t.Errorf("jwt-bearer body = %v, want %v", got, want)
	}
	if tok.AccessToken.Reveal() != "at-x" {
		t.Errorf("token = %+v", tok)
	}

	p.Client.ID = testClientID
	tok, err = p.TokenExchange(ctx, ExchangeRequest{
		SubjectToken: NewSecret("subj"), SubjectTokenType: TokenTypeID,
		ActorToken: NewSecret("actor"), RequestedTokenType: TokenTypeJWT,
		Audience: []string{"a1", "a2"}, Resource: []string{"https://r1/", "https://r2/"}, Scopes: []string{"read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want = url.Values{
		"grant_type":    {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token": {"subj"}, "subject_token_type": {TokenTypeID},
		"actor_token": {"actor"}, "actor_token_type": {TokenTypeAccess},
		"requested_token_type": {TokenTypeJWT},
		"audience":             {"a1", "a2"}, "resource": {"https://r1/", "https://r2/"},
		"scope": {"read"}, "client_id": {testClientID},
	}
	if got.Encode() != want.Encode() {
		t.Errorf("token-exchange body =\n %v\nwant\n %v", got, want)
	}
	if tok.TokenType != "N_A" || tok.IssuedTokenType != TokenTypeJWT || tok.ExpiresIn != time.Minute {
		t.Errorf("token = %+v", tok)
	}
	tok, err = p.TokenExchange(ctx, ExchangeRequest{SubjectToken: NewSecret("subj")})
	if err != nil || got.Get("subject_token_type") != TokenTypeAccess || got.Has("actor_token") || got.Has("audience") || tok.IssuedTokenType != TokenTypeJWT {
		t.Errorf("minimal exchange: %v, body %v", err, got)
	}

	for _, params := range []Params{{"subject_token": "x"}, {"audience": "x"}, {"resource": "x"}, {"actor_token_type": "x"}} {
		if _, err := p.TokenExchange(ctx, ExchangeRequest{SubjectToken: NewSecret("s"), Params: params}); ClassOf(err) != Configuration || err == nil {
			t.Errorf("params %v: %v", params, err)
		}
	}
	if _, err := p.JWTBearer(ctx, NewSecret("a"), nil, Params{"assertion": "b"}); ClassOf(err) != Configuration || err == nil {
		t.Errorf("assertion in params: %v", err)
	}
	if _, err := p.JWTBearer(ctx, Secret{}, nil, nil); ClassOf(err) != Configuration || err == nil {
		t.Errorf("no assertion: %v", err)
	}
}

// TestGrantSecretsScrubbed: a provider that echoes the request in its error
// description gets none of the grant's or the client's secrets into the
// message, the client assertion (made inside the probe) included.
func TestGrantSecretsScrubbed(t *testing.T) {
	ec := testutil.ECKey(t, elliptic.P256())
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		q, _ := url.ParseQuery(string(b))
		sent = []string{q.Get("client_assertion"), q.Get("assertion"), q.Get("subject_token"), q.Get("actor_token"), r.Header.Get("DPoP")}
		echo := strings.Join(sent, " ") + " " + string(b)
		writeJSON(w, 400, map[string]any{"error": "invalid_grant", "error_description": echo})
	}))
	defer srv.Close()
	dk, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(srv, AuthPrivateKeyJWT, newClock())
	p.Client.Key = &SigningKey{Signer: ec}
	ctx := context.Background()
	_, err1 := p.JWTBearer(ctx, NewSecret("grant-assertion-secret"), nil, nil)
	s1 := sent
	_, err2 := p.WithDPoP(dk).TokenExchange(ctx, ExchangeRequest{SubjectToken: NewSecret("subject-secret"), ActorToken: NewSecret("actor-secret")})
	s2 := sent
	for i, c := range []struct {
		err  error
		sent []string
	}{{err1, s1}, {err2, s2}} {
		if c.err == nil || ClassOf(c.err) != Reauthorize {
			t.Fatalf("%d: %v", i, c.err)
		}
		msg := c.err.Error()
		for _, s := range c.sent {
			if s == "" {
				continue
			}
			// The JWS header is not secret and short; the rest is.
			if parts := strings.Split(s, "."); len(parts) == 3 && strings.Contains(msg, parts[1]) || strings.Contains(msg, s) {
				t.Errorf("%d: message holds a secret that was sent: %s", i, msg)
			}
		}
		if !strings.Contains(msg, redacted) {
			t.Errorf("%d: nothing redacted in %s", i, msg)
		}
	}
}

func TestDiscoveryClientAuthFields(t *testing.T) {
	var doc map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, 200, doc)
	}))
	defer srv.Close()
	doc = map[string]any{
		"issuer": srv.URL, "token_endpoint": srv.URL + "/token",
		"mtls_endpoint_aliases": map[string]any{
			"token_endpoint": "https://mtls.example.com/token", "revocation_endpoint": "https://mtls.example.com/revoke",
			"device_authorization_endpoint": "https://mtls.example.com/device", "registration_endpoint": "https://mtls.example.com/reg",
		},
		"token_endpoint_auth_signing_alg_values_supported": []string{"PS256", "ES256"},
		"dpop_signing_alg_values_supported":                []string{"ES256"},
	}
	ep, err := Discover(context.Background(), srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := MTLSAliases{Token: "https://mtls.example.com/token", Revocation: "https://mtls.example.com/revoke", DeviceAuthorization: "https://mtls.example.com/device", Registration: "https://mtls.example.com/reg"}
	if ep.MTLS == nil || *ep.MTLS != want || !slices.Equal(ep.TokenAuthSigningAlgs, []string{"PS256", "ES256"}) || !slices.Equal(ep.DPoPSigningAlgs, []string{"ES256"}) {
		t.Errorf("Endpoints = %+v, MTLS %+v", ep, ep.MTLS)
	}
	for _, bad := range []string{"http://mtls.example.com/token", "javascript:alert(1)"} {
		doc["mtls_endpoint_aliases"] = map[string]any{"token_endpoint": bad}
		_, err := Discover(context.Background(), srv.Client(), srv.URL)
		if err == nil || !strings.Contains(err.Error(), "mtls_endpoint_aliases.token_endpoint") {
			t.Errorf("alias %q: %v", bad, err)
		}
	}
}

func TestRegisterClientAuthFields(t *testing.T) {
	var got map[string]json.RawMessage
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = nil
		_ = json.NewDecoder(r.Body).Decode(&got)
		writeJSON(w, 201, map[string]any{"client_id": "new", "token_endpoint_auth_method": "private_key_jwt"})
	}))
	defer srv.Close()
	jwks, err := SigningKey{Signer: testutil.ECKey(t, elliptic.P256()), KeyID: "k"}.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Register(context.Background(), srv.Client(), srv.URL+"/reg", RegistrationRequest{
		ClientName: "tokend", GrantTypes: []string{"client_credentials"}, AuthMethod: AuthPrivateKeyJWT,
		JWKS: jwks, SigningAlg: "ES256", DPoPBound: true,
	})
	if err != nil || reg.AuthMethod != AuthPrivateKeyJWT {
		t.Fatal(reg, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(got["jwks"], &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k" {
		t.Errorf("jwks = %s (%v)", got["jwks"], err)
	}
	if string(got["token_endpoint_auth_signing_alg"]) != `"ES256"` || string(got["dpop_bound_access_tokens"]) != "true" || string(got["token_endpoint_auth_method"]) != `"private_key_jwt"` {
		t.Errorf("metadata = %v", got)
	}
	if _, err := Register(context.Background(), srv.Client(), srv.URL+"/reg", RegistrationRequest{ClientName: "x"}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"jwks", "token_endpoint_auth_signing_alg", "dpop_bound_access_tokens"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s sent although not set", k)
		}
	}
}

// FuzzParseSigningKey: any input is a key tokend can sign with or an error
// of class Configuration; nothing panics.
func FuzzParseSigningKey(f *testing.F) {
	f.Add(pkcs8(f, testutil.ECKey(f, elliptic.P256())))
	f.Add(pkcs8(f, testutil.Ed25519Key(f)))
	f.Add([]byte(`{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n","client_email":"a@b"}`))
	f.Add(pemOf(f, "EC PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01, 0x01}))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, _, err := ParseSigningKey(data)
		if err != nil {
			if ClassOf(err) != Configuration {
				t.Errorf("class %v: %v", ClassOf(err), err)
			}
			return
		}
		if _, err := k.ChooseAlg(nil); err != nil {
			t.Errorf("parsed key cannot sign: %v", err)
		}
	})
}
