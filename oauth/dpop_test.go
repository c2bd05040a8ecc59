package oauth

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/tokend/tokend/internal/testutil"
)

// dpopClaims are a proof's claims.
type dpopClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce"`
	ATH   string `json:"ath"`
}

// verifyProof checks a proof as a server does (RFC 9449 §4.3): typ, alg,
// a public jwk header whose key verifies the signature; it returns the
// claims and the key's thumbprint.
func verifyProof(t *testing.T, proof string) (dpopClaims, string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("proof does not parse: %v", err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "dpop+jwt" || h.Algorithm != "ES256" || h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("proof header = %+v", h)
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("proof signature: %v", err)
	}
	var c dpopClaims
	if err := jsonUnmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return c, base64.RawURLEncoding.EncodeToString(tp)
}

func TestDPoPProof(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	now := newClock().Now()
	at := NewSecret("access-token-1")
	p1, err := k.Proof("GET", "https://API.example.com:8443/x/y?q=1&r=2#frag", at, "n-1", now)
	if err != nil {
		t.Fatal(err)
	}
	c, jkt := verifyProof(t, p1.Reveal())
	sum := sha256.Sum256([]byte("access-token-1"))
	if c.HTM != "GET" || c.HTU != "https://api.example.com:8443/x/y" || c.IAT != now.Unix() || c.Nonce != "n-1" ||
		c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) || c.JTI == "" {
		t.Errorf("claims = %+v", c)
	}
	if jkt != k.Thumbprint() {
		t.Errorf("jwk thumbprint %s, Thumbprint() %s", jkt, k.Thumbprint())
	}
	p2, err := k.Proof("POST", "https://as.example.com/token", Secret{}, "", now)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := verifyProof(t, p2.Reveal())
	if c2.JTI == c.JTI || c2.ATH != "" || c2.Nonce != "" || c2.HTU != "https://as.example.com/token" {
		t.Errorf("second proof = %+v", c2)
	}
	for _, bad := range []string{"/relative", "ftp://x/y", "::"} {
		if _, err := k.Proof("GET", bad, Secret{}, "", now); err == nil {
			t.Errorf("target %q accepted", bad)
		}
	}
	if _, err := k.Proof("GET\r\nX: y", "https://a/", Secret{}, "", now); err == nil {
		t.Error("method with CRLF accepted")
	}
}

func TestDPoPKeyMarshal(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseDPoPKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Thumbprint() != k.Thumbprint() || k.Thumbprint() == "" {
		t.Errorf("thumbprints %s, %s", k.Thumbprint(), k2.Thumbprint())
	}
	p, err := k2.Proof("GET", "https://a/", Secret{}, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, jkt := verifyProof(t, p.Reveal()); jkt != k.Thumbprint() {
		t.Error("restored key signs with another key")
	}
	// RFC 7638 §3.1's example key and thumbprint, for an EC key computed
	// the same way: the thumbprint is go-jose's, checked there.
	pub, err := (&jose.JSONWebKey{Key: k.signer.Public()}).Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(pub) != k.Thumbprint() {
		t.Errorf("Thumbprint is not the public key's RFC 7638 thumbprint")
	}
	for _, bad := range [][]byte{[]byte("{"), []byte(`{"kty":"oct","k":"AAAA"}`), mustPublicJWK(t, k)} {
		if _, err := ParseDPoPKey(bad); err == nil || strings.Contains(err.Error(), string(bad)) {
			t.Errorf("ParseDPoPKey(%.20s…) = %v", bad, err)
		}
	}
	p384, err := (jose.JSONWebKey{Key: testutil.ECKey(t, elliptic.P384())}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDPoPKey(p384); err == nil {
		t.Error("P-384 DPoP key accepted as ES256")
	}
}

func mustPublicJWK(t *testing.T, k *DPoPKey) []byte {
	b, err := (jose.JSONWebKey{Key: k.signer.Public()}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dpopServer is a token endpoint that verifies DPoP proofs. nonces says
// which nonce the n-th request (from 0) must carry: when it carries
// another, the answer is use_dpop_nonce with that nonce.
type dpopServer struct {
	t      *testing.T
	srv    *httptest.Server
	clock  *testClock
	typ    string           // token_type answered
	nonce  func(int) string // the nonce request n must carry; "" none
	mu     sync.Mutex
	proofs []dpopClaims
	jkts   []string
	// missing are the paths of requests without a proof.
	missing []string
}

func newDPoPServer(t *testing.T, clock *testClock) *dpopServer {
	d := &dpopServer{t: t, clock: clock, typ: "DPoP", nonce: func(int) string { return "" }}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proof := r.Header.Get("DPoP")
		if proof == "" {
			d.mu.Lock()
			d.missing = append(d.missing, r.URL.Path)
			d.mu.Unlock()
			writeJSON(w, 400, map[string]any{"error": "invalid_dpop_proof"})
			return
		}
		c, jkt := verifyProof(t, proof)
		if c.HTM != "POST" || c.HTU != d.srv.URL+r.URL.Path || c.IAT != clock.Now().Unix() || c.ATH != "" {
			t.Errorf("claims = %+v", c)
		}
		d.mu.Lock()
		n := len(d.proofs)
		for _, p := range d.proofs {
			if p.JTI == c.JTI {
				t.Errorf("jti %s reused", c.JTI)
			}
		}
		d.proofs = append(d.proofs, c)
		d.jkts = append(d.jkts, jkt)
		d.mu.Unlock()
		if want := d.nonce(n); want != c.Nonce {
			w.Header().Set("DPoP-Nonce", want)
			writeJSON(w, 400, map[string]any{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce in DPoP proof"})
			return
		}
		if r.URL.Path == "/device" {
			writeJSON(w, 200, map[string]any{"device_code": "dc", "user_code": "U", "verification_uri": "https://v.example/"})
			return
		}
		tokenAnswer(w, d.typ)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func TestDPoPTokenRequests(t *testing.T) {
	clock := newClock()
	d := newDPoPServer(t, clock)
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	d.typ = "dpop" // any case
	p := newTestProvider(d.srv, AuthPost, clock).WithDPoP(k)
	ctx := context.Background()
	for name, do := range map[string]func() (*Token, error){
		"client_credentials": func() (*Token, error) { return p.ClientCredentials(ctx, nil, nil) },
		"refresh":            func() (*Token, error) { return p.Refresh(ctx, NewSecret("rt"), nil, nil) },
		"exchange":           func() (*Token, error) { return p.Exchange(ctx, "code", Secret{}, nil) },
		"jwt_bearer":         func() (*Token, error) { return p.JWTBearer(ctx, NewSecret("a.b.c"), nil, nil) },
		"token_exchange": func() (*Token, error) {
			return p.TokenExchange(ctx, ExchangeRequest{SubjectToken: NewSecret("s")})
		},
	} {
		tok, err := do()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tok.TokenType != "DPoP" {
			t.Errorf("%s: TokenType = %q", name, tok.TokenType)
		}
	}
	if len(d.proofs) != 5 {
		t.Errorf("%d proofs for 5 requests", len(d.proofs))
	}
	for _, jkt := range d.jkts {
		if jkt != k.Thumbprint() {
			t.Errorf("proof made with another key")
		}
	}
	// The device authorization endpoint is not the token endpoint.
	if _, err := p.StartDevice(ctx, nil, nil); err == nil || len(d.proofs) != 5 || len(d.missing) != 1 {
		t.Errorf("device authorization: %v, %d proofs, without: %v", err, len(d.proofs), d.missing)
	}
}

// TestDPoPNonce: the server's first answer demands a nonce; the request is
// sent again once with it, with a fresh proof and a fresh client
// assertion; the nonce is remembered for the next request.
func TestDPoPNonce(t *testing.T) {
	clock := newClock()
	d := newDPoPServer(t, clock)
	d.nonce = func(int) string { return "nonce-A" }
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	ec := testutil.ECKey(t, elliptic.P256())
	v := newVerifier(t, &ec.PublicKey, d.srv.URL+"/token", clock)
	inner := d.srv.Config.Handler
	d.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Error(err)
		}
		v.check(r)
		inner.ServeHTTP(w, r)
	})
	p := newTestProvider(d.srv, AuthPrivateKeyJWT, clock)
	p.Client.Key = &SigningKey{Signer: ec}
	p = p.WithDPoP(k)
	ctx := context.Background()
	if _, err := p.Refresh(ctx, NewSecret("rt"), nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.proofs) != 2 || d.proofs[0].Nonce != "" || d.proofs[1].Nonce != "nonce-A" || len(v.jtis) != 2 {
		t.Fatalf("proofs = %+v, %d assertions", d.proofs, len(v.jtis))
	}
	if got := k.Nonce(d.srv.URL + "/anything?x"); got != "nonce-A" {
		t.Errorf("Nonce = %q", got)
	}
	clock.Advance(time.Minute)
	if _, err := p.ClientCredentials(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.proofs) != 3 || d.proofs[2].Nonce != "nonce-A" {
		t.Errorf("remembered nonce not used: %+v", d.proofs)
	}
	// The server rotates its nonce: one more round trip, once.
	d.nonce = func(int) string { return "nonce-B" }
	if _, err := p.ClientCredentials(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	if len(d.proofs) != 5 || d.proofs[4].Nonce != "nonce-B" {
		t.Errorf("rotated nonce: %+v", d.proofs)
	}
	if k.Nonce("https://other.example/") != "" {
		t.Error("nonce of another origin")
	}
}

// TestDPoPNonceLoop: a server that demands a new nonce every time gets the
// request twice, and the caller a Transient error naming the loop.
func TestDPoPNonceLoop(t *testing.T) {
	clock := newClock()
	d := newDPoPServer(t, clock)
	d.nonce = func(n int) string { return "nonce-" + string(rune('a'+n)) }
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(d.srv, AuthBasic, clock).WithDPoP(k)
	_, err = p.ClientCredentials(context.Background(), nil, nil)
	if !errors.Is(err, ErrDPoPNonceLoop) || ClassOf(err) != Transient || !strings.Contains(err.Error(), "nonce loop") {
		t.Errorf("err = %v (class %v)", err, ClassOf(err))
	}
	if len(d.proofs) != 2 {
		t.Errorf("%d requests, want 2", len(d.proofs))
	}
	// Through the device flow's polling too.
	d.proofs = nil
	_, err = p.AwaitDevice(context.Background(), &DeviceAuth{DeviceCode: NewSecret("dc"), Interval: time.Second})
	if !errors.Is(err, ErrDPoPNonceLoop) || len(d.proofs) != 2 {
		t.Errorf("device polling: %v, %d requests", err, len(d.proofs))
	}
}

// TestDPoPNonce401: the challenge as a resource server words it (401,
// WWW-Authenticate), which some token endpoints use too.
func TestDPoPNonce401(t *testing.T) {
	var nonces []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verifyProof(t, r.Header.Get("DPoP"))
		nonces = append(nonces, c.Nonce)
		if c.Nonce != "n401" {
			w.Header().Set("DPoP-Nonce", "n401")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`)
			w.WriteHeader(401)
			return
		}
		tokenAnswer(w, "DPoP")
	}))
	defer srv.Close()
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(srv, AuthBasic, newClock()).WithDPoP(k)
	if _, err := p.ClientCredentials(context.Background(), nil, nil); err != nil || len(nonces) != 2 || nonces[1] != "n401" {
		t.Errorf("err %v, nonces %q", err, nonces)
	}
	// A loop said in the header is a loop too, not a credentials failure.
	k2, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("DPoP-Nonce", NewState())
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
		w.WriteHeader(401)
	})
	_, err = p.WithDPoP(k2).ClientCredentials(context.Background(), nil, nil)
	if !errors.Is(err, ErrDPoPNonceLoop) || ClassOf(err) != Transient {
		t.Errorf("401 loop: %v (class %v)", err, ClassOf(err))
	}
}

// TestDPoPNonceWithoutHeader: use_dpop_nonce without a DPoP-Nonce header
// cannot be answered; it is not re-sent.
func TestDPoPNonceWithoutHeader(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		writeJSON(w, 400, map[string]any{"error": "use_dpop_nonce"})
	}))
	defer srv.Close()
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = newTestProvider(srv, AuthBasic, newClock()).WithDPoP(k).ClientCredentials(context.Background(), nil, nil)
	if calls != 1 || ClassOf(err) != Transient || !strings.Contains(err.Error(), "no DPoP-Nonce header") {
		t.Errorf("%d calls, err = %v", calls, err)
	}
}

// TestDPoPDowngrade: a provider that answers a Bearer token to a DPoP
// request is refused, never silently accepted.
func TestDPoPDowngrade(t *testing.T) {
	clock := newClock()
	d := newDPoPServer(t, clock)
	d.typ = "Bearer"
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	p := newTestProvider(d.srv, AuthBasic, clock)
	tok, err := p.WithDPoP(k).ClientCredentials(context.Background(), nil, nil)
	if tok != nil || !errors.Is(err, ErrDPoPDowngrade) || ClassOf(err) != Configuration || !strings.Contains(err.Error(), `"Bearer"`) {
		t.Errorf("token %v, err = %v", tok, err)
	}
	// The original provider is unchanged: WithDPoP made a copy.
	if _, err := p.ClientCredentials(context.Background(), nil, nil); err == nil || len(d.missing) != 1 {
		t.Error("plain provider sent a DPoP proof") // the server refuses requests without one
	}
}

func BenchmarkDPoPProof(b *testing.B) {
	k, err := NewDPoPKey()
	if err != nil {
		b.Fatal(err)
	}
	at, now := NewSecret("access-token-abcdefghijklmnopqrstuvwxyz"), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Proof("GET", "https://api.example.com/v1/things?page=2", at, "server-nonce", now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientAssertion(b *testing.B) {
	for _, c := range []struct {
		name string
		key  *SigningKey
		m    AuthMethod
	}{
		{"ES256", &SigningKey{Signer: testutil.ECKey(b, elliptic.P256())}, AuthPrivateKeyJWT},
		{"RS256", &SigningKey{Signer: testutil.RSAKey(b)}, AuthPrivateKeyJWT},
		{"EdDSA", &SigningKey{Signer: testutil.Ed25519Key(b)}, AuthPrivateKeyJWT},
		{"HS256", nil, AuthSecretJWT},
	} {
		b.Run(c.name, func(b *testing.B) {
			p := &Provider{
				Endpoints: Endpoints{Issuer: "https://as.example.com", Token: "https://as.example.com/token"},
				Client:    Client{ID: testClientID, AuthMethod: c.m, Key: c.key, Secret: NewSecret(testJWTSecret)},
			}
			a, err := p.assertionMaker("bench")
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.make(now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestDPoPKeyConcurrent: one key serves the daemon's /dpop requests and
// its refreshes at once (run with -race).
func TestDPoPKeyConcurrent(t *testing.T) {
	k, err := NewDPoPKey()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	proofs := make([]Secret, 16)
	for i := range proofs {
		wg.Go(func() {
			k.SetNonce("https://rs.example/x", "n")
			p, err := k.Proof("GET", "https://rs.example/x", NewSecret("at"), k.Nonce("https://rs.example/"), time.Now())
			if err != nil {
				t.Error(err)
			}
			proofs[i] = p
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, p := range proofs {
		c, _ := verifyProof(t, p.Reveal())
		if seen[c.JTI] || c.Nonce != "n" {
			t.Errorf("jti %s twice, or nonce %q", c.JTI, c.Nonce)
		}
		seen[c.JTI] = true
	}
}
