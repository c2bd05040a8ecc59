package devprovider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/tokend/tokend/internal/testutil"
)

func publicOf(k crypto.Signer) crypto.PublicKey { return k.Public() }

// jwksOf returns a JWK set of the public halves of keys, with kid k0, k1...
func jwksOf(t testing.TB, keys ...crypto.Signer) json.RawMessage {
	t.Helper()
	var set jose.JSONWebKeySet
	for i, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: publicOf(k), KeyID: "k" + string(rune('0'+i)), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var b64 = base64.RawURLEncoding

// rawJWT builds a JWS by hand, for what go-jose refuses to make: alg none
// (key nil) or any header at all, signed ES256 with key.
func rawJWT(t testing.TB, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := b64.EncodeToString(h) + "." + b64.EncodeToString(c)
	if key == nil {
		return input + "."
	}
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

// publicPEM is the PEM of k's public key: the HMAC secret of the classic
// HS256 key confusion attack.
func publicPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// jwtClaims returns registered claims for an assertion valid from now for
// five minutes with a random jti.
func jwtClaims(iss, sub, aud string, now time.Time) map[string]any {
	return map[string]any{
		"iss": iss, "sub": sub, "aud": aud, "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func assertionForm(assertion string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {ClientAssertionType},
		"client_assertion":      {assertion},
	}
}

// proof makes a DPoP proof by key (ES256) for method and target.
func proof(t testing.TB, key *ecdsa.PrivateKey, method, target string, now time.Time, extra ...any) string {
	t.Helper()
	c := with(map[string]any{"htm": method, "htu": target, "iat": now.Unix(), "jti": rand.Text()}, extra...)
	return testutil.SignJWT(t, key, jose.ES256, "", true, map[jose.HeaderKey]any{jose.HeaderType: "dpop+jwt"}, c)
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of k's public key.
func thumbprint(t testing.TB, k crypto.Signer) string {
	t.Helper()
	jwk := jose.JSONWebKey{Key: k.Public()}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(tp)
}

// ath is the DPoP access token hash.
func ath(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64.EncodeToString(sum[:])
}

// postDPoP is post with DPoP headers.
func postDPoP(t testing.TB, s *Server, a auth, form url.Values, proofs ...string) response {
	t.Helper()
	req, err := formRequest(s, "/token", a, form)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	return do(t, req)
}
