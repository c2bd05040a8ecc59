package config

// Client authentication beyond shared secrets: private_key_jwt
// and client_secret_jwt (RFC 7523 §2.2), tls_client_auth and
// self_signed_tls_client_auth (RFC 8705), and the providers' CA bundles for
// private PKI. Validation checks which keys go with which method; Load reads
// the keys and certificates once, with the rules of client secrets
// (secrets.go), and keeps them parsed in Client.Key and Client.TLSCert.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/systemd"
)

// authMethods lists the valid values of clients.*.auth_method, in the order
// messages show them.
var authMethods = []string{
	string(oauth.AuthBasic), string(oauth.AuthPost), string(oauth.AuthSecretJWT), string(oauth.AuthPrivateKeyJWT),
	string(oauth.AuthTLS), string(oauth.AuthSelfSignedTLS), string(oauth.AuthNone),
}

// Signing algorithms: of a private key (private_key_jwt, jwt_bearer) and
// of a client secret (client_secret_jwt).
var (
	keyAlgs    = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}
	secretAlgs = []string{"HS256", "HS384", "HS512"}
)

// minHMACSecret is the shortest client secret client_secret_jwt can sign
// with (HS256).
const minHMACSecret = 32

// certNow is the clock certificates are checked against; tests move it.
var certNow = time.Now

// Anonymous reports whether the client authenticates to nobody and
// registers nowhere: auth_method none, no client_id, and used only by
// jwt_bearer grants (decided by ApplyDefaults). Providers such as Google
// take a JWT-bearer assertion with no client authentication at all; such a
// client must not be registered dynamically.
func (c Client) Anonymous() bool { return c.anonymous }

func hasPrivateKey(cl Client) bool {
	return cl.PrivateKeyFile != "" || cl.PrivateKeyCredential != "" || cl.Key != nil
}

func hasTLSCert(cl Client) bool {
	return cl.TLSCertFile != "" || cl.TLSCertCredential != "" || cl.TLSKeyFile != "" || cl.TLSKeyCredential != "" || cl.TLSCert != nil
}

// applyClientAuthDefaults runs before the other client defaults: a client
// with a private key and no auth_method uses private_key_jwt, one with a
// certificate tls_client_auth; and an auth_method none client without a
// client_id that serves only jwt_bearer grants is anonymous, not dynamic.
func (c *Config) applyClientAuthDefaults() {
	users := map[string][]string{} // client → grant types using it
	for _, g := range c.Grants {
		users[g.Client] = append(users[g.Client], g.Type)
	}
	for name, cl := range c.Clients {
		if cl.AuthMethod == "" {
			switch {
			case hasPrivateKey(cl) && !hasClientSecret(cl) && !hasTLSCert(cl):
				cl.AuthMethod = oauth.AuthPrivateKeyJWT
			case hasTLSCert(cl) && !hasClientSecret(cl) && !hasPrivateKey(cl):
				cl.AuthMethod = oauth.AuthTLS
			}
		}
		types := users[name]
		cl.anonymous = cl.ClientID == "" && cl.AuthMethod == oauth.AuthNone && len(types) > 0 &&
			!slices.ContainsFunc(types, func(t string) bool { return t != GrantJWTBearer })
		c.Clients[name] = cl
	}
}

// validateClientAuth checks the authentication keys of client cl at path:
// each method's own keys present, the others' absent.
func validateClientAuth(p *problems, path string, cl Client, pv Provider, providerOK bool) {
	m := cl.AuthMethod
	switch m {
	case oauth.AuthBasic, oauth.AuthPost, oauth.AuthSecretJWT:
		if !cl.Dynamic() && !hasClientSecret(cl) {
			p.errorf(path+".auth_method", "%s needs client_secret_file or client_secret_credential", m)
		}
	case oauth.AuthNone:
		if hasClientSecret(cl) {
			p.errorf(path+".auth_method", "is none but a client secret is configured")
		}
	case oauth.AuthPrivateKeyJWT:
		if hasClientSecret(cl) {
			p.errorf(path, "private_key_jwt authenticates with a private key: remove client_secret_file/client_secret_credential")
		}
		switch {
		case cl.PrivateKeyFile != "" && cl.PrivateKeyCredential != "":
			p.errorf(path, "give private_key_file or private_key_credential, not both")
		case !hasPrivateKey(cl):
			p.errorf(path+".auth_method", "private_key_jwt needs private_key_file or private_key_credential")
		}
	case oauth.AuthTLS, oauth.AuthSelfSignedTLS:
		if hasClientSecret(cl) {
			p.errorf(path, "%s authenticates with a certificate: remove client_secret_file/client_secret_credential", m)
		}
		if cl.TLSCert == nil {
			checkPair(p, path, "tls_cert_file", cl.TLSCertFile, "tls_cert_credential", cl.TLSCertCredential, string(m)+" needs a certificate: tls_cert_file or tls_cert_credential")
			checkPair(p, path, "tls_key_file", cl.TLSKeyFile, "tls_key_credential", cl.TLSKeyCredential, string(m)+" needs the certificate's key: tls_key_file or tls_key_credential")
		}
		if cl.ClientID == "" {
			p.errorf(path+".client_id", "%s needs a client_id: tokend does not register certificate clients dynamically", m)
		}
	default:
		p.errorf(path+".auth_method", "%q is not one of %s", m, strings.Join(authMethods, ", "))
		return
	}

	// Keys of one method on a client of another.
	if m != oauth.AuthPrivateKeyJWT && (cl.PrivateKeyFile != "" || cl.PrivateKeyCredential != "" || cl.KeyID != "") {
		p.errorf(path, "private_key_file, private_key_credential and key_id apply to auth_method private_key_jwt only (auth_method is %s)", m)
	}
	if !m.IsCertificate() && hasTLSCert(cl) {
		p.errorf(path, "tls_cert_file, tls_key_file, tls_cert_credential and tls_key_credential apply to auth_method tls_client_auth and self_signed_tls_client_auth only (auth_method is %s)", m)
	}
	switch {
	case cl.SigningAlg == "":
	case m == oauth.AuthPrivateKeyJWT:
		if !slices.Contains(keyAlgs, cl.SigningAlg) {
			p.errorf(path+".signing_alg", "%q is not one of %s", cl.SigningAlg, strings.Join(keyAlgs, ", "))
		}
	case m == oauth.AuthSecretJWT:
		p.errorf(path+".signing_alg", "applies to auth_method private_key_jwt only: client_secret_jwt signs with the first of %s the provider accepts", strings.Join(secretAlgs, ", "))
	default:
		p.errorf(path+".signing_alg", "applies to auth_method private_key_jwt only (auth_method is %s)", m)
	}
	switch a := cl.AssertionAudience; {
	case a == "":
	case m != oauth.AuthPrivateKeyJWT && m != oauth.AuthSecretJWT:
		p.errorf(path+".assertion_audience", "applies to auth_method private_key_jwt and client_secret_jwt only (auth_method is %s)", m)
	case a == "issuer":
		// A provider derived from a protected resource has the issuer
		// discovery finds; the daemon refuses to sign without one.
		if providerOK && pv.Issuer == "" && pv.Resource == nil {
			p.errorf(path+".assertion_audience", "is issuer but provider %q has no issuer", cl.Provider)
		}
	default:
		if err := oauth.CheckEndpointURL(a); err != nil {
			p.errorf(path+".assertion_audience", "must be empty (the token endpoint), issuer, or a URL: %v", err)
		} else if why := misaddressed(a, pv, cl.Provider); providerOK && why != "" {
			p.errorf(path+".assertion_audience", "%s", why)
		}
	}
	for _, f := range []struct{ key, v string }{
		{"private_key_file", cl.PrivateKeyFile},
		{"tls_cert_file", cl.TLSCertFile},
		{"tls_key_file", cl.TLSKeyFile},
	} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.errorf(path+"."+f.key, "%q must be an absolute path", f.v)
		}
	}
	for _, f := range []struct{ key, v string }{
		{"private_key_credential", cl.PrivateKeyCredential},
		{"tls_cert_credential", cl.TLSCertCredential},
		{"tls_key_credential", cl.TLSKeyCredential},
	} {
		if f.v != "" {
			checkCredentialName(p, path+"."+f.key, f.v)
		}
	}
}

// checkPair reports a missing or doubled source: exactly one of the file
// and the credential.
func checkPair(p *problems, path, fileKey, file, credKey, cred, missing string) {
	switch {
	case file != "" && cred != "":
		p.errorf(path, "give %s or %s, not both", fileKey, credKey)
	case file == "" && cred == "":
		p.errorf(path+".auth_method", "%s", missing)
	}
}

// checkCAFile checks providers.*.ca_file.
func checkCAFile(p *problems, path string, pv Provider) {
	if pv.CAFile != "" && !filepath.IsAbs(pv.CAFile) {
		p.errorf(path+".ca_file", "%q must be an absolute path", pv.CAFile)
	}
}

// sourceKey returns the key path and the file or credential a secret comes
// from, for reading with readSecret.
func sourceKey(path, fileKey, file, credKey string) string {
	if file != "" {
		return path + "." + fileKey
	}
	return path + "." + credKey
}

// resolveClientAuth reads the providers' CA bundles and the clients' keys
// and certificates. Only what validation let through is read: a relative
// path was reported already.
func (c *Config) resolveClientAuth(p *problems) {
	for _, name := range sortedKeys(c.Providers) {
		pv := c.Providers[name]
		if pv.CAFile == "" || pv.CAs != nil || !filepath.IsAbs(pv.CAFile) {
			continue
		}
		key := "providers." + name + ".ca_file"
		data, err := os.ReadFile(pv.CAFile)
		if err != nil {
			p.errorf(key, "cannot read %s: %s", pv.CAFile, errText(err))
			continue
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			p.errorf(key, "%s holds no PEM certificate (a bundle of -----BEGIN CERTIFICATE----- blocks is expected)", pv.CAFile)
			continue
		}
		pv.CAs = pool
		c.Providers[name] = pv
	}
	for _, name := range sortedKeys(c.Clients) {
		cl := c.Clients[name]
		path := "clients." + name
		// RFC 7518 §3.2: an HMAC key at least as long as the hash; HS256,
		// the shortest, needs 32 bytes. A shorter secret never works.
		if cl.AuthMethod == oauth.AuthSecretJWT && !cl.Secret.IsZero() && len(cl.Secret.Reveal()) < minHMACSecret {
			p.errorf(sourceKey(path, "client_secret_file", cl.ClientSecretFile, "client_secret_credential"),
				"client_secret_jwt needs a client secret of at least %d bytes (RFC 7518 §3.2); this one has %d", minHMACSecret, len(cl.Secret.Reveal()))
		}
		switch {
		case cl.AuthMethod == oauth.AuthPrivateKeyJWT && cl.Key == nil:
			if cl.PrivateKeyFile != "" && cl.PrivateKeyCredential != "" || cl.PrivateKeyFile != "" && !filepath.IsAbs(cl.PrivateKeyFile) {
				continue
			}
			if cl.PrivateKeyFile == "" && cl.PrivateKeyCredential == "" {
				continue
			}
			key := sourceKey(path, "private_key_file", cl.PrivateKeyFile, "private_key_credential")
			k, _, ok := readSigningKey(p, key, cl.PrivateKeyFile, cl.PrivateKeyCredential, cl.KeyID, cl.SigningAlg)
			if !ok {
				continue
			}
			cl.Key = &k
		case cl.AuthMethod.IsCertificate() && cl.TLSCert == nil:
			cert, ok := readTLSCert(p, path, cl)
			if !ok {
				continue
			}
			cl.TLSCert = cert
		default:
			continue
		}
		c.Clients[name] = cl
	}
}

// readSigningKey reads and parses a private key from a file or credential
// (PEM, or a service-account JSON key file), applying the configured key
// id and algorithm. Messages name the file, never its contents.
func readSigningKey(p *problems, key, file, credential, keyID, alg string) (oauth.SigningKey, *oauth.ServiceAccount, bool) {
	s, ok := readSecret(p, key, file, credential)
	if !ok {
		return oauth.SigningKey{}, nil, false
	}
	src := file
	if src == "" {
		src = "credential " + credential
	}
	k, sa, err := oauth.ParseSigningKey([]byte(s))
	if err != nil {
		p.errorf(key, "%s: %v", src, err)
		return oauth.SigningKey{}, nil, false
	}
	if keyID != "" {
		k.KeyID = keyID
	}
	k.Alg = alg
	// A key type tokend cannot sign with, or an algorithm the key cannot
	// make, is found now rather than at the first request.
	if _, err := k.ChooseAlg(nil); err != nil {
		p.errorf(key, "%s: %v", src, err)
		return oauth.SigningKey{}, nil, false
	}
	return k, sa, true
}

// readTLSCert reads a client's certificate and key and checks that they
// match and that the certificate is valid now.
func readTLSCert(p *problems, path string, cl Client) (*tls.Certificate, bool) {
	if cl.TLSCertFile != "" && cl.TLSCertCredential != "" || cl.TLSKeyFile != "" && cl.TLSKeyCredential != "" {
		return nil, false // reported by validate
	}
	if cl.TLSCertFile == "" && cl.TLSCertCredential == "" || cl.TLSKeyFile == "" && cl.TLSKeyCredential == "" {
		return nil, false
	}
	if cl.TLSCertFile != "" && !filepath.IsAbs(cl.TLSCertFile) || cl.TLSKeyFile != "" && !filepath.IsAbs(cl.TLSKeyFile) {
		return nil, false
	}
	certKey := sourceKey(path, "tls_cert_file", cl.TLSCertFile, "tls_cert_credential")
	keyKey := sourceKey(path, "tls_key_file", cl.TLSKeyFile, "tls_key_credential")
	certSrc, keySrc := cl.TLSCertFile, cl.TLSKeyFile
	if certSrc == "" {
		certSrc = "credential " + cl.TLSCertCredential
	}
	if keySrc == "" {
		keySrc = "credential " + cl.TLSKeyCredential
	}
	// The certificate is public: read it without the secret-file warning.
	certPEM, ok := readCert(p, certKey, cl.TLSCertFile, cl.TLSCertCredential)
	if !ok {
		return nil, false
	}
	keyPEM, ok := readSecret(p, keyKey, cl.TLSKeyFile, cl.TLSKeyCredential)
	if !ok {
		return nil, false
	}
	leafBlock, _ := pem.Decode(certPEM)
	if leafBlock == nil || leafBlock.Type != "CERTIFICATE" {
		p.errorf(certKey, "%s holds no PEM certificate", certSrc)
		return nil, false
	}
	leaf, err := x509.ParseCertificate(leafBlock.Bytes)
	if err != nil {
		p.errorf(certKey, "%s: the certificate does not parse: %v", certSrc, err)
		return nil, false
	}
	now := certNow()
	switch {
	case now.After(leaf.NotAfter):
		p.errorf(certKey, "%s: the certificate expired on %s (valid from %s until %s)", certSrc,
			leaf.NotAfter.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		return nil, false
	case now.Before(leaf.NotBefore):
		p.errorf(certKey, "%s: the certificate is not valid before %s (valid from %s until %s)", certSrc,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
		return nil, false
	}
	if kb, _ := pem.Decode([]byte(keyPEM)); kb == nil || !strings.Contains(kb.Type, "PRIVATE KEY") {
		p.errorf(keyKey, "%s holds no PEM private key", keySrc)
		return nil, false
	}
	// X509KeyPair's messages say what is wrong without quoting the key.
	cert, err := tls.X509KeyPair(certPEM, []byte(keyPEM))
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			p.errorf(keyKey, "%s is not the key of the certificate in %s", keySrc, certSrc)
		} else {
			p.errorf(keyKey, "%s: %v", keySrc, err)
		}
		return nil, false
	}
	return &cert, true
}

// readCert reads a public file (a certificate) from a file or credential.
func readCert(p *problems, key, file, credential string) ([]byte, bool) {
	path := file
	if file == "" {
		cp, ok := systemd.Credential(credential)
		if !ok {
			p.errorf(key, "credential %q not found in $CREDENTIALS_DIRECTORY", credential)
			return nil, false
		}
		path = cp
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.errorf(key, "cannot read %s: %s", path, errText(err))
		return nil, false
	}
	return data, true
}

// keyType describes a key for messages and Explain: its type and size,
// never its material.
func keyType(s any) string {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PrivateKey, *ed25519.PrivateKey:
		return "Ed25519"
	case nil:
		return "no key"
	}
	return fmt.Sprintf("%T", s)
}

// explainClientAuth says how a client authenticates: the method's
// credential, its key type, algorithm and key id, or its certificate's
// subject and validity. Never key material.
func explainClientAuth(cl Client) (string, bool) {
	src := func(file, cred string) string {
		if file != "" {
			return file
		}
		return "credential " + cred
	}
	switch cl.AuthMethod {
	case oauth.AuthPrivateKeyJWT:
		s := "key from " + src(cl.PrivateKeyFile, cl.PrivateKeyCredential)
		if cl.Key != nil {
			s += " (" + signingKeyText(*cl.Key) + ")"
		}
		return s, true
	case oauth.AuthTLS, oauth.AuthSelfSignedTLS:
		s := "certificate from " + src(cl.TLSCertFile, cl.TLSCertCredential) + ", key from " + src(cl.TLSKeyFile, cl.TLSKeyCredential)
		if cl.TLSCert != nil && len(cl.TLSCert.Certificate) > 0 {
			if leaf, err := x509.ParseCertificate(cl.TLSCert.Certificate[0]); err == nil {
				s += fmt.Sprintf(" (subject %s, issuer %s, expires %s)", leaf.Subject, leaf.Issuer, leaf.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		return s, true
	case oauth.AuthNone:
		if cl.Anonymous() {
			return "no client authentication (anonymous client for jwt_bearer grants)", true
		}
	}
	return "", false
}

// signingKeyText describes a signing key: type, algorithm, key id.
func signingKeyText(k oauth.SigningKey) string {
	s := keyType(k.Signer)
	if k.Alg != "" {
		s += ", " + k.Alg
	} else {
		s += ", alg from the key and the provider"
	}
	if k.KeyID != "" {
		s += ", kid " + k.KeyID
	} else {
		s += ", no kid"
	}
	return s
}
