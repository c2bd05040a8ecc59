package oauth

// Signing keys: the private keys that sign client assertions and JWT-bearer
// assertions, parsed from PEM or a service-account key file, their
// algorithms and public JWK Set, and the JWS signing both kinds of
// assertion share.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// SigningKey is a private key that signs JWTs: client assertions, JWT-bearer
// assertions. It prints redacted (fmt, slog, JSON).
type SigningKey struct {
	Signer crypto.Signer // *rsa.PrivateKey, *ecdsa.PrivateKey (P-256, P-384), ed25519.PrivateKey
	KeyID  string        // "kid" header; empty sends none
	Alg    string        // "" chooses from the key (ChooseAlg)
}

// describe names the key without any of its material: type, kid, alg.
func (k SigningKey) describe() string {
	var b strings.Builder
	b.WriteString("SigningKey{")
	b.WriteString(keyType(k.Signer))
	if k.KeyID != "" {
		fmt.Fprintf(&b, " kid=%q", Printable(k.KeyID))
	}
	if k.Alg != "" {
		fmt.Fprintf(&b, " alg=%s", Printable(k.Alg))
	}
	b.WriteString(" " + redacted + "}")
	return b.String()
}

// String describes the key (type, kid, alg) with its material redacted.
func (k SigningKey) String() string { return k.describe() }

// GoString is String, for %#v.
func (k SigningKey) GoString() string { return k.describe() }

// Format prints String for every verb, so that no verb reaches the key.
func (k SigningKey) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", k.describe())
		return
	}
	fmt.Fprint(f, k.describe())
}

// LogValue makes log/slog print String.
func (k SigningKey) LogValue() slog.Value { return slog.StringValue(k.describe()) }

// MarshalJSON encodes String: a key never leaves the process through
// encoding/json.
func (k SigningKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.describe()) }

// keyType names a key's type for messages: "RSA 2048", "EC P-256", "Ed25519".
func keyType(s crypto.Signer) string {
	switch k := s.(type) {
	case nil:
		return "no key"
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PrivateKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", s)
}

// ServiceAccount is what a Google-style service-account JSON key file holds
// besides the key itself.
type ServiceAccount struct {
	ClientEmail string // issuer and subject of its assertions
	TokenURI    string // audience and token endpoint
	ClientID    string
}

// opKey is the Op of errors about keys and algorithms.
const opKey = "key"

func keyError(format string, a ...any) *Error {
	return &Error{Op: opKey, Class: Configuration, Err: fmt.Errorf(format, a...)}
}

// ParseSigningKey reads a private key: PEM (PKCS #8, PKCS #1, SEC 1) or a
// Google-style service-account JSON key file (then sa is not nil and the
// key's KeyID is its private_key_id). Errors never contain key material:
// parser errors are not passed on, since they may quote the input.
func ParseSigningKey(data []byte) (k SigningKey, sa *ServiceAccount, err error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		var f struct {
			Type         string `json:"type"`
			PrivateKey   string `json:"private_key"`
			PrivateKeyID string `json:"private_key_id"`
			ClientEmail  string `json:"client_email"`
			ClientID     string `json:"client_id"`
			TokenURI     string `json:"token_uri"`
		}
		if json.Unmarshal([]byte(trimmed), &f) != nil {
			return SigningKey{}, nil, keyError("key file starts with { but is not valid JSON (a service-account key file was expected)")
		}
		switch {
		case f.PrivateKey == "":
			return SigningKey{}, nil, keyError("service-account key file has no private_key")
		case f.ClientEmail == "":
			return SigningKey{}, nil, keyError("service-account key file has no client_email")
		case f.Type != "" && f.Type != "service_account":
			return SigningKey{}, nil, keyError("key file is of type %q, not service_account", clean(f.Type, 40, nil))
		}
		k, err := parsePEMKey([]byte(f.PrivateKey))
		if err != nil {
			return SigningKey{}, nil, err
		}
		k.KeyID = f.PrivateKeyID
		return k, &ServiceAccount{ClientEmail: f.ClientEmail, TokenURI: f.TokenURI, ClientID: f.ClientID}, nil
	}
	k, err = parsePEMKey(data)
	return k, nil, err
}

// parsePEMKey reads the one private key of a PEM file, skipping other
// blocks (certificates, EC PARAMETERS).
func parsePEMKey(data []byte) (SigningKey, error) {
	var found crypto.Signer
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return SigningKey{}, keyError("encrypted private keys are not supported: decrypt it (openssl pkcs8 -topk8 -nocrypt) and protect the file by its mode")
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return SigningKey{}, keyError("PEM block %q is not a supported private key (PKCS #8, PKCS #1 or SEC 1)", clean(b.Type, 40, nil))
			}
			continue
		}
		if err != nil {
			return SigningKey{}, keyError("PEM block %q does not hold a valid private key", b.Type)
		}
		if found != nil {
			return SigningKey{}, keyError("more than one private key in the file")
		}
		s, err := checkKey(key)
		if err != nil {
			return SigningKey{}, err
		}
		found = s
	}
	if found == nil {
		return SigningKey{}, keyError("no PEM private key found (PKCS #8 \"PRIVATE KEY\", PKCS #1 \"RSA PRIVATE KEY\" or SEC 1 \"EC PRIVATE KEY\")")
	}
	return SigningKey{Signer: found}, nil
}

// checkKey accepts the key types and sizes tokend signs with.
func checkKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < 2048 {
			return nil, keyError("RSA key of %d bits: at least 2048 are needed", n)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, keyError("EC key on curve %s: P-256 or P-384 is needed", k.Curve.Params().Name)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ed25519.PrivateKey:
		return *k, nil
	}
	return nil, keyError("unsupported key type %T: RSA, EC P-256/P-384 or Ed25519 is needed", key)
}

// algsFor lists the algorithms a key can make, the preferred first.
func algsFor(s crypto.Signer) []string {
	switch k := s.(type) {
	case *rsa.PrivateKey:
		return []string{"RS256", "PS256", "RS384", "PS384", "RS512", "PS512"}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		}
	case ed25519.PrivateKey:
		return []string{"EdDSA"}
	}
	return nil
}

// ChooseAlg returns k.Alg when set (checked against the key's type), else
// the first of supported (a provider's *_signing_alg_values_supported; nil:
// any) the key can make, preferring RS256/ES256/ES384/EdDSA by key type.
// When none fits, the error (class Configuration) says what the key can
// make and what the provider accepts.
func (k SigningKey) ChooseAlg(supported []string) (string, error) {
	can := algsFor(k.Signer)
	if len(can) == 0 {
		return "", keyError("unsupported key type %s: RSA, EC P-256/P-384 or Ed25519 is needed", keyType(k.Signer))
	}
	if k.Alg != "" {
		if !slices.Contains(can, k.Alg) {
			return "", keyError("signing_alg %s does not fit the %s key (it can make %s)", Printable(k.Alg), keyType(k.Signer), strings.Join(can, ", "))
		}
		if len(supported) > 0 && !slices.Contains(supported, k.Alg) {
			return "", keyError("signing_alg %s is not one the provider accepts (%s)", Printable(k.Alg), clean(strings.Join(supported, ", "), 200, nil))
		}
		return k.Alg, nil
	}
	if len(supported) == 0 || slices.Contains(supported, can[0]) {
		return can[0], nil
	}
	for _, a := range supported {
		if slices.Contains(can, a) {
			return a, nil
		}
	}
	return "", keyError("the provider accepts %s, none of which a %s key can make (%s)", clean(strings.Join(supported, ", "), 200, nil), keyType(k.Signer), strings.Join(can, ", "))
}

// signer returns a go-jose signer for alg with k's key and kid, typ JWT.
func (k SigningKey) signer(alg string) (jose.Signer, error) {
	var key any = k.Signer
	switch k.Signer.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		key = cryptosigner.Opaque(k.Signer) // an HSM or agent key
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.KeyID != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), k.KeyID)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		return nil, keyError("cannot sign with %s and the %s key", alg, keyType(k.Signer))
	}
	return s, nil
}

// JWKS returns the public key as a JWK Set ({"keys":[…]}) with kid, use
// "sig" and alg, for dynamic registration (RFC 7591 jwks). The alg is the
// key's only one (EC, Ed25519) or k.Alg; an RSA key without k.Alg has none,
// since it may sign with RS256 or PS256 as the provider allows
// (ChooseAlg), and a server refuses a signature whose alg is not its key's.
func (k SigningKey) JWKS() (json.RawMessage, error) {
	alg, err := k.ChooseAlg(nil)
	if err != nil {
		return nil, err
	}
	if len(algsFor(k.Signer)) > 1 && k.Alg == "" {
		alg = ""
	}
	jwk := jose.JSONWebKey{Key: k.Signer.Public(), KeyID: k.KeyID, Use: "sig", Algorithm: alg}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return nil, keyError("cannot encode the public key as a JWK")
	}
	return b, nil
}

// newJTI returns a unique JWT ID: 128 random bits, base64url.
func newJTI() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign signs claims as a compact JWS.
func sign(s jose.Signer, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", keyError("cannot encode claims: %v", err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		return "", keyError("signing failed")
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		return "", keyError("signing failed")
	}
	return out, nil
}
