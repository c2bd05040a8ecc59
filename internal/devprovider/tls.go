package devprovider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// mtlsPrefix is where the mtls_endpoint_aliases (RFC 8705 §5) are served
// when the server runs TLS: /mtls/token, /mtls/revoke, /mtls/device.
const mtlsPrefix = "/mtls"

// Certificates are valid over a wide fixed span, so that they verify by
// the real clock (the TLS handshake) and by any test clock.
var (
	certNotBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	certNotAfter  = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// authority is the server's own CA: it signs the server's TLS certificate
// and, through IssueClientCert, client certificates for tls_client_auth.
type authority struct {
	once sync.Once
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	err  error
}

func (s *Server) authority() (*authority, error) {
	a := &s.ca
	a.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			a.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: "oauthtest CA"},
			NotBefore:             certNotBefore,
			NotAfter:              certNotAfter,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			a.err = err
			return
		}
		a.cert, _ = x509.ParseCertificate(der)
		a.key = key
		a.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	if a.err != nil {
		return nil, fmt.Errorf("devprovider: make CA: %w", a.err)
	}
	return a, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return n
}

// CACertPEM returns the PEM certificate of the server's CA, which signs its
// TLS certificate ([Server.StartTLS]) and the client certificates of
// [Server.IssueClientCert]: what a client configures as the provider's CA
// bundle.
func (s *Server) CACertPEM() []byte {
	a, err := s.authority()
	if err != nil {
		return nil
	}
	return a.pem
}

// CertPool returns a pool holding the server's CA certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	if a, err := s.authority(); err == nil {
		p.AddCert(a.cert)
	}
	return p
}

// IssueClientCert returns a client certificate (ECDSA P-256) for subject
// signed by the server's CA and valid until notAfter (from 2000; the zero
// time means 2100). The server trusts it for tls_client_auth unless
// Options.ClientCAs says otherwise; its key is added to [Server.Issued].
func (s *Server) IssueClientCert(subject pkix.Name, notAfter time.Time) (tls.Certificate, error) {
	a, err := s.authority()
	if err != nil {
		return tls.Certificate{}, err
	}
	if notAfter.IsZero() {
		notAfter = certNotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subject,
		NotBefore:    certNotBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return s.issueCert(tmpl, a.cert, a.key)
}

// SelfSignedClientCert returns a self-signed client certificate (ECDSA
// P-256) for self_signed_tls_client_auth, valid until notAfter (the zero
// time means 2100). Pin it in the client's JWKS with [CertJWKS]. Its key is
// added to [Server.Issued].
func (s *Server) SelfSignedClientCert(commonName string, notAfter time.Time) (tls.Certificate, error) {
	if notAfter.IsZero() {
		notAfter = certNotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    certNotBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return s.issueCert(tmpl, nil, nil)
}

// issueCert makes a certificate from tmpl signed by parent and parentKey,
// or self-signed when parent is nil.
func (s *Server) issueCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("devprovider: make certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	s.mu.Lock()
	s.recordLocked(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})))
	s.mu.Unlock()
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serverTLSConfig returns the TLS configuration of StartTLS: a certificate
// for 127.0.0.1, ::1 and localhost signed by the server's CA, and client
// certificates requested but not required (each client's method decides).
func (s *Server) serverTLSConfig() (*tls.Config, error) {
	a, err := s.authority()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "oauthtest"},
		NotBefore:    certNotBefore,
		NotAfter:     certNotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	cert, err := s.issueCert(tmpl, a.cert, a.key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// NewTLS is [New] with TLS: the server listens on 127.0.0.1 with a random
// port and serves HTTPS (see [Server.StartTLS]). It panics if it cannot.
func NewTLS(o Options) *Server {
	s := NewUnstarted(o)
	if err := s.StartTLS("127.0.0.1:0"); err != nil {
		panic(err)
	}
	return s
}

// StartTLS is [Server.Start] with TLS: the issuer becomes https://addr,
// the server's certificate is signed by its CA ([Server.CACertPEM]), client
// certificates are requested (not required), and discovery advertises
// mtls_endpoint_aliases under /mtls/, where tls_client_auth and
// self_signed_tls_client_auth clients authenticate.
func (s *Server) StartTLS(addr string) error {
	cfg, err := s.serverTLSConfig()
	if err != nil {
		return err
	}
	return s.start(addr, cfg)
}

// TLS reports whether the server was started with StartTLS.
func (s *Server) TLS() bool {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.tls
}

var errStarted = errors.New("devprovider: server already started or closed")

// CertJWKS returns a JWK set holding the public key and certificate of
// cert, to pin it for self_signed_tls_client_auth (Client.JWKS).
func CertJWKS(cert tls.Certificate) json.RawMessage {
	leaf := cert.Leaf
	if leaf == nil {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: leaf.PublicKey, Certificates: []*x509.Certificate{leaf}, Use: "sig"}}}
	b, _ := json.Marshal(set)
	return b
}

// JWKS returns a JWK set of public keys (*ecdsa.PublicKey, *rsa.PublicKey,
// ed25519.PublicKey), without kid (which matches any kid an assertion
// names), for Client.JWKS or AssertionIssuer.JWKS. It panics on another
// key type.
func JWKS(keys ...crypto.PublicKey) json.RawMessage {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		jwk := jose.JSONWebKey{Key: k, Use: "sig"}
		if !jwk.Valid() || !jwk.IsPublic() {
			panic(fmt.Sprintf("devprovider: JWKS: %T is not a public key", k))
		}
		set.Keys = append(set.Keys, jwk)
	}
	b, err := json.Marshal(set)
	if err != nil {
		panic("devprovider: JWKS: " + err.Error())
	}
	return b
}
