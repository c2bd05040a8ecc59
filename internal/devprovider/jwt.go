package devprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Signature algorithms the server verifies. "none" is never among them,
// and the HMAC ones are accepted only where the key is a shared secret
// (client_secret_jwt), so that an HS256 JWT "signed" with a public key is
// refused before any key is tried.
var (
	asymmetricAlgs = []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	}
	hmacAlgs = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}
	// hmacKeySize is the least key size of each HMAC alg (RFC 7518 §3.2),
	// which go-jose enforces.
	hmacKeySize = map[jose.SignatureAlgorithm]int{jose.HS256: 32, jose.HS384: 48, jose.HS512: 64}
)

// The client assertion type and the jwt_bearer and token_exchange grant
// types.
const (
	// ClientAssertionType is the client_assertion_type of private_key_jwt
	// and client_secret_jwt (RFC 7523 §2.2).
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// GrantJWTBearer is the JWT-bearer authorization grant (RFC 7523 §2.1).
	GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	// GrantTokenExchange is token exchange (RFC 8693).
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// Token type identifiers of RFC 8693 §3.
const (
	TokenTypeAccess = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeID     = "urn:ietf:params:oauth:token-type:id_token"
)

// defaultSkew is how far in the future an iat or nbf may be.
const defaultSkew = 30 * time.Second

// claims are the registered claims of a JWT, plus the DPoP ones.
type claims struct {
	jwt.Claims
	// DPoP (RFC 9449 §4.2)
	HTM   string `json:"htm,omitempty"`
	HTU   string `json:"htu,omitempty"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// parseJWS parses a compact JWS whose alg is one of algs. It does not
// verify it.
func parseJWS(s string, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, error) {
	if len(algs) == 0 {
		return nil, errors.New("no signature algorithm is allowed")
	}
	jws, err := jose.ParseSignedCompact(s, algs)
	if err != nil {
		// go-jose's messages name the alg, never the content.
		return nil, fmt.Errorf("malformed JWT or alg not allowed (allowed: %v)", algs)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("JWT must have exactly one signature")
	}
	return jws, nil
}

// verifyWith returns the claims of jws if one of keys verifies it.
func verifyWith(jws *jose.JSONWebSignature, keys []any) (*claims, error) {
	for _, k := range keys {
		payload, err := jws.Verify(k)
		if err != nil {
			continue
		}
		var c claims
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, errors.New("JWT claims are not a JSON object")
		}
		return &c, nil
	}
	return nil, errors.New("bad signature: no trusted key verifies the JWT")
}

// candidateKeys returns the public keys of set the JWS header may name:
// those with its kid and those without any, or every key when it names
// none.
func candidateKeys(set *jose.JSONWebKeySet, h jose.Header) []any {
	if set == nil {
		return nil
	}
	var out []any
	for _, k := range set.Keys {
		if h.KeyID != "" && k.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			continue // a registered private key is never trusted
		}
		out = append(out, k.Key)
	}
	return out
}

// parseJWKS parses a JWK set ({"keys":[...]}) of public keys.
func parseJWKS(raw []byte) (*jose.JSONWebKeySet, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, errors.New("jwks is not a JWK set")
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("jwks has no keys")
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, errors.New("jwks must hold public keys only")
		}
	}
	return &set, nil
}

func audienceOK(aud jwt.Audience, accepted []string) bool {
	return slices.ContainsFunc(aud, func(a string) bool { return slices.Contains(accepted, a) })
}

// checkTimes checks exp (required, in the future), nbf and iat (not
// further in the future than skew).
func checkTimes(c *claims, now time.Time, skew time.Duration) error {
	if c.Expiry == nil {
		return errors.New("exp is missing")
	}
	if !now.Before(c.Expiry.Time()) {
		return errors.New("JWT expired")
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)) {
		return errors.New("JWT not valid yet (nbf)")
	}
	if c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(skew)) {
		return errors.New("iat is in the future")
	}
	return nil
}

// useJTILocked records the jti of a JWT in namespace ns until until, and
// reports false if it was already recorded and has not expired: a replay.
func (s *Server) useJTILocked(ns, jti string, now, until time.Time) bool {
	key := ns + "\x00" + jti
	if exp, ok := s.jtis[key]; ok && now.Before(exp) {
		return false
	}
	if len(s.jtis) >= s.jtiSweep {
		for k, exp := range s.jtis {
			if !now.Before(exp) {
				delete(s.jtis, k)
			}
		}
		s.jtiSweep = max(1024, 2*len(s.jtis))
	}
	s.jtis[key] = until
	return true
}
