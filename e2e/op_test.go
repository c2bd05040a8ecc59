package e2e

// Harness of the client-authentication and DPoP tests: a throw-away PKI, client keys
// and their public JWK Sets, and an independent DPoP-verifying resource
// server. The harness itself is checked against
// oidc-provider without tokend by op_selftest_test.go.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// NoLeakSeen registers, when the test ends (before tokend's own log check),
// every client assertion and DPoP proof op saw as secrets td must not log.
func NoLeakSeen(t testing.TB, td *Tokend, op *oidcop.Server) {
	t.Cleanup(func() {
		s := op.Seen()
		td.NoLeak(s.ClientAssertions...)
		td.NoLeak(s.DPoPProofs...)
	})
}

// NewSetupNoCallback is a Setup for tokend without a callback listener and with its
// metrics listener on a port it picks itself.
func NewSetupNoCallback(t testing.TB) *Setup {
	dir := t.TempDir()
	return &Setup{t: t, Dir: dir, Socket: filepath.Join(dir, "tokend.sock"), Callback: `"off"`, Metrics: "127.0.0.1:0"}
}

// --- keys and certificates

// pki is a throw-away certificate authority.
type pki struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	CAFile string
	Pool   *x509.CertPool
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(time.Now().UnixNano() + serial.n)
}

func newPKI(t testing.TB, dir, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, cert: cert, key: key, Pool: x509.NewCertPool()}
	p.Pool.AddCert(cert)
	p.CAFile = writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der, 0o644)
	return p
}

// issue signs a certificate for a fresh P-256 key and writes both; it
// returns the certificate and key files and the certificate.
func (p *pki) issue(t testing.TB, name string, tmpl *x509.Certificate) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent, signer := p.cert, crypto.Signer(p.key)
	if p.cert == nil { // self-signed
		parent, signer = tmpl, key
	}
	tmpl.SerialNumber = nextSerial()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	certFile = writePEM(t, filepath.Join(p.dir, name+".crt"), "CERTIFICATE", der, 0o644)
	keyFile = writeKey(t, filepath.Join(p.dir, name+".key"), key)
	return certFile, keyFile, cert
}

// serverCert issues a certificate for 127.0.0.1.
func (p *pki) serverCert(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	c, k, _ := p.issue(t, name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return c, k
}

// clientCert issues a client certificate with subject CN=cn valid from
// notBefore to notAfter; a pki with no CA (selfSigned) signs it with its own key.
func (p *pki) clientCert(t testing.TB, name, cn string, notBefore, notAfter time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	return p.issue(t, name, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// selfSigned is a pki whose certificates are self-signed.
func selfSigned(dir string) *pki { return &pki{dir: dir} }

func writePEM(t testing.TB, path, typ string, der []byte, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKey writes key as a PKCS #8 PEM file, mode 0600.
func writeKey(t testing.TB, path string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, path, "PRIVATE KEY", der, 0o600)
}

// parseKeyFile reads a PKCS #8 PEM key file written by writeKey.
func parseKeyFile(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// writeFile writes a 0600 file.
func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newKey generates a key: "EC" (P-256), "EC384", "RSA" (2048 bits) or "Ed25519".
func newKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "EC":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EC384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RSA":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "Ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		err = fmt.Errorf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keySecrets are strings of key's private part that must never be logged:
// the PEM file's text and each of its base64 lines, and the private JWK
// members.
func keySecrets(t testing.TB, keyFile string, key crypto.Signer) []string {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{strings.TrimSpace(string(b))}
	for _, l := range strings.Split(string(b), "\n") {
		if len(l) >= 32 && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	priv, err := json.Marshal(jose.JSONWebKey{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(priv, &m)
	for _, k := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if s, ok := m[k].(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// publicJWKS is the client metadata jwks of pub: one key with kid and alg
// (when not empty) and the certificate chain x5c (when given).
func publicJWKS(t testing.TB, pub crypto.PublicKey, kid, alg string, certs ...*x509.Certificate) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig", Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	var k map[string]any
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"keys": []any{k}}
}

// --- the resource server

// resourceServer is an API that accepts a DPoP-bound access token (RFC 9449
// §7) only with a valid proof: signed by the key the token is bound to (the
// provider's introspection says which), for this method and URL, fresh,
// with the token's hash, and never seen before.
type resourceServer struct {
	URL string
	op  *oidcop.Server

	mu       sync.Mutex
	jtis     map[string]bool
	accepted int
	refused  []string
	nonce    string // when set, proofs must carry it (RFC 9449 §9)
}

// requireNonce makes the server demand nonce in every proof from now on.
func (rs *resourceServer) requireNonce(nonce string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.nonce = nonce
}

func newResourceServer(t testing.TB, op *oidcop.Server) *resourceServer {
	rs := &resourceServer{op: op, jtis: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(rs.serve))
	t.Cleanup(srv.Close)
	rs.URL = srv.URL
	return rs
}

func (rs *resourceServer) serve(w http.ResponseWriter, r *http.Request) {
	if err := rs.check(r); errors.Is(err, errUseNonce) {
		rs.mu.Lock()
		w.Header().Set("DPoP-Nonce", rs.nonce)
		rs.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	} else if err != nil {
		rs.mu.Lock()
		rs.refused = append(rs.refused, err.Error())
		rs.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_dpop_proof"`)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rs.mu.Lock()
	rs.accepted++
	rs.mu.Unlock()
	fmt.Fprintln(w, "resource served")
}

func (rs *resourceServer) check(r *http.Request) error {
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != "DPoP" || tok == "" {
		return errors.New("no DPoP authorization")
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return fmt.Errorf("%d DPoP headers, want 1", len(proofs))
	}
	jws, err := jose.ParseSignedCompact(proofs[0], []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA})
	if err != nil {
		return fmt.Errorf("proof: %v", err)
	}
	h := jws.Signatures[0].Protected
	if h.ExtraHeaders["typ"] != "dpop+jwt" {
		return fmt.Errorf("proof typ %v", h.ExtraHeaders["typ"])
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return errors.New("proof without a public jwk")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return fmt.Errorf("proof signature: %v", err)
	}
	var c struct {
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		JTI   string `json:"jti"`
		ATH   string `json:"ath"`
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("proof claims: %v", err)
	}
	if c.HTM != r.Method {
		return fmt.Errorf("htm %q, request %s", c.HTM, r.Method)
	}
	if want := "http://" + r.Host + r.URL.Path; c.HTU != want {
		return fmt.Errorf("htu %q, request %s", c.HTU, want)
	}
	if d := time.Since(time.Unix(c.IAT, 0)); d > time.Minute || d < -time.Minute {
		return fmt.Errorf("iat %v away", d)
	}
	sum := sha256.Sum256([]byte(tok))
	if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return errors.New("ath is not the token's hash")
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return err
	}
	in := rs.op.Introspect(tok)
	if !in.Active || in.TokenType != "DPoP" {
		return fmt.Errorf("token active %t, type %q", in.Active, in.TokenType)
	}
	if in.Cnf.JKT != base64.RawURLEncoding.EncodeToString(tp) {
		return errors.New("proof key is not the token's cnf.jkt")
	}
	if c.JTI == "" {
		return errors.New("proof without jti")
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.nonce != "" && c.Nonce != rs.nonce {
		return errUseNonce
	}
	if rs.jtis[c.JTI] {
		return errors.New("proof replayed (jti seen)")
	}
	rs.jtis[c.JTI] = true
	return nil
}

var errUseNonce = errors.New("proof without the server's nonce")

// call sends one request to the resource server with the two header lines
// `tokend token --dpop` prints; it returns the status and body.
func (rs *resourceServer) call(t testing.TB, method, target, authorization, dpop string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("DPoP", dpop)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// dpopThumbprint is the RFC 7638 thumbprint of a proof's key.
func dpopThumbprint(t testing.TB, proof string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof: %v", err)
	}
	k := jws.Signatures[0].Protected.JSONWebKey
	if k == nil {
		t.Fatal("proof without jwk")
	}
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}
