package testutil

import (
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// SignJWT signs claims with key and alg and returns the compact JWS: what
// the tests of a provider and of its harness hand-make as client
// assertions and DPoP proofs. A non-empty kid wraps the key in a JWK with
// that key id; headers are extra protected headers ("typ" included); embed
// puts the public key in a jwk header.
func SignJWT(t testing.TB, key any, alg jose.SignatureAlgorithm, kid string, embed bool, headers map[jose.HeaderKey]any, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: embed}
	for k, v := range headers {
		opts = opts.WithHeader(k, v)
	}
	sk := jose.SigningKey{Algorithm: alg, Key: key}
	if kid != "" {
		sk.Key = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	signer, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
