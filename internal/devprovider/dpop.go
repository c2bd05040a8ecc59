package devprovider

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var defaultDPoPAlgs = []string{"ES256", "ES384", "ES512", "RS256", "PS256", "EdDSA"}

const defaultDPoPWindow = 60 * time.Second

func (s *Server) dpopAlgs() []jose.SignatureAlgorithm {
	names := s.opts.DPoPAlgs
	if names == nil {
		names = defaultDPoPAlgs
	}
	var out []jose.SignatureAlgorithm
	for _, n := range names {
		if a := jose.SignatureAlgorithm(n); slices.Contains(asymmetricAlgs, a) {
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) dpopWindow() time.Duration {
	if s.opts.DPoPWindow > 0 {
		return s.opts.DPoPWindow
	}
	return defaultDPoPWindow
}

// proofFailure says why a DPoP proof was refused.
type proofFailure int

const (
	proofOK proofFailure = iota
	proofBad
	proofReplay
	proofNonce // missing or stale server nonce
)

// proofCheck is what a proof must match.
type proofCheck struct {
	htm, htu    string
	accessToken string    // "": no ath expected (token endpoint)
	nonces      [2]string // accepted nonces when needNonce
	needNonce   bool
}

// verifyProof checks a DPoP proof (RFC 9449 §4.3) and returns the RFC 7638
// thumbprint of its key. Its jti is remembered (and a replay refused) for
// as long as its iat is acceptable.
func (s *Server) verifyProof(proof string, pc proofCheck) (jkt string, why proofFailure, msg string) {
	jws, err := parseJWS(proof, s.dpopAlgs())
	if err != nil {
		return "", proofBad, "DPoP proof: " + err.Error()
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return "", proofBad, "DPoP proof typ must be dpop+jwt"
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		return "", proofBad, "DPoP proof has no public jwk header"
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return "", proofBad, "DPoP proof signature does not verify with its jwk"
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", proofBad, "DPoP proof claims are not a JSON object"
	}
	now := s.now()
	win := s.dpopWindow()
	switch {
	case c.ID == "":
		return "", proofBad, "DPoP proof has no jti"
	case c.HTM != pc.htm:
		return "", proofBad, fmt.Sprintf("DPoP proof htm %q is not %s", c.HTM, pc.htm)
	case normalizeHTU(c.HTU) != normalizeHTU(pc.htu) || normalizeHTU(c.HTU) == "":
		return "", proofBad, fmt.Sprintf("DPoP proof htu %q is not %s", c.HTU, normalizeHTU(pc.htu))
	case c.IssuedAt == nil:
		return "", proofBad, "DPoP proof has no iat"
	case c.IssuedAt.Time().Before(now.Add(-win)) || c.IssuedAt.Time().After(now.Add(win)):
		return "", proofBad, "DPoP proof iat is outside the accepted window"
	case pc.accessToken != "" && c.ATH != tokenHash(pc.accessToken):
		return "", proofBad, "DPoP proof ath does not match the access token"
	}
	if pc.needNonce && (c.Nonce == "" || !slices.Contains(pc.nonces[:], c.Nonce)) {
		return "", proofNonce, "a DPoP proof with the server's nonce is required"
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", proofBad, "DPoP proof jwk has no thumbprint"
	}
	jkt = base64.RawURLEncoding.EncodeToString(tp)
	s.mu.Lock()
	fresh := s.useJTILocked("dpop:"+jkt, c.ID, now, c.IssuedAt.Time().Add(win))
	s.mu.Unlock()
	if !fresh {
		return "", proofReplay, "DPoP proof jti was already used"
	}
	return jkt, proofOK, ""
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// normalizeHTU returns scheme://host/path of u in lower case scheme and
// host, without default port, query or fragment; "" if u is not an
// absolute http(s) URL.
func normalizeHTU(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	scheme, host := strings.ToLower(p.Scheme), strings.ToLower(p.Host)
	if scheme != "http" && scheme != "https" {
		return ""
	}
	if h, ok := strings.CutSuffix(host, ":443"); ok && scheme == "https" {
		host = h
	} else if h, ok := strings.CutSuffix(host, ":80"); ok && scheme == "http" {
		host = h
	}
	path := p.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

// requestURL is the URL of r as the client addressed it.
func requestURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

func (s *Server) countProof(why proofFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch why {
	case proofNonce:
		s.stats.NonceChallenges++
	case proofReplay:
		s.stats.ProofReplays++
		s.stats.ProofFailures++
	case proofBad:
		s.stats.ProofFailures++
	}
}

func invalidProof(msg string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, Code: "invalid_dpop_proof", Description: msg}
}

// tokenDPoP handles the DPoP header of a token request: it returns the
// thumbprint of a valid proof's key, "" when there is no proof (or the
// downgrade fault ignores it), or the error to answer.
func (s *Server) tokenDPoP(w http.ResponseWriter, r *http.Request, alter FaultKind) (string, *oauthError) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) == 0 || alter == FaultDPoPDowngrade {
		return "", nil
	}
	s.mu.Lock()
	s.recordLocked(proofs...)
	s.mu.Unlock()
	if len(proofs) > 1 {
		s.countProof(proofBad)
		return "", invalidProof("more than one DPoP header")
	}
	if alter == FaultDPoPNonceLoop {
		s.RotateDPoPNonce()
		s.countProof(proofNonce)
		return "", s.useNonce(w)
	}
	s.mu.Lock()
	nonces := s.nonces
	s.mu.Unlock()
	jkt, why, msg := s.verifyProof(proofs[0], proofCheck{
		htm: http.MethodPost, htu: s.issuer(r) + r.URL.Path,
		nonces: nonces, needNonce: s.opts.DPoPNonce,
	})
	s.countProof(why)
	switch why {
	case proofOK:
		note(w, "dpop", "bound")
		return jkt, nil
	case proofNonce:
		return "", s.useNonce(w)
	default:
		return "", invalidProof(msg)
	}
}

// useNonce sets the current nonce in DPoP-Nonce and returns the
// use_dpop_nonce error (RFC 9449 §8).
func (s *Server) useNonce(w http.ResponseWriter) *oauthError {
	s.mu.Lock()
	n := s.nonces[0]
	s.mu.Unlock()
	w.Header().Set("DPoP-Nonce", n)
	return &oauthError{status: http.StatusBadRequest, Code: "use_dpop_nonce", Description: "Authorization server requires nonce in DPoP proof"}
}

// RotateDPoPNonce makes the token endpoint issue a new DPoP nonce; proofs
// may carry it or the one before it.
func (s *Server) RotateDPoPNonce() {
	n := newSecret("n_")
	s.mu.Lock()
	s.nonces = [2]string{n, s.nonces[0]}
	s.mu.Unlock()
}

// RotateResourceNonce does the same for the resource server's nonce.
func (s *Server) RotateResourceNonce() {
	n := newSecret("rn_")
	s.mu.Lock()
	s.rsNonces = [2]string{n, s.rsNonces[0]}
	s.mu.Unlock()
}

// ResourceHandler returns a protected resource for tests, served also under
// /resource/ on the server itself. It answers 200 with a JSON description
// of the token ({"sub","client_id","scope","token_type"}) to a request
// carrying a valid access token of this server:
//
//   - "Authorization: DPoP <token>" for a DPoP-bound token, with exactly one
//     DPoP proof by the token's key for this exact method and URL (htm,
//     htu), with ath the hash of the token, a fresh jti and, when
//     Options.ResourceNonce is set, the resource server's nonce;
//   - "Authorization: Bearer <token>" for an unbound token only.
//
// Anything else is 401 with WWW-Authenticate (error invalid_token,
// invalid_dpop_proof or use_dpop_nonce with a DPoP-Nonce header).
func (s *Server) ResourceHandler() http.Handler { return s.wrap(http.HandlerFunc(s.handleResource)) }

func (s *Server) handleResource(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.ResourceRequests++
	s.mu.Unlock()
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	scheme = strings.ToLower(scheme)
	refuse := func(scheme, code, desc string) {
		s.mu.Lock()
		s.stats.ResourceRefused++
		s.mu.Unlock()
		algs := make([]string, 0, len(s.dpopAlgs()))
		for _, a := range s.dpopAlgs() {
			algs = append(algs, string(a))
		}
		var chal string
		if scheme == "Bearer" {
			chal = `Bearer realm="oauthtest"`
		} else {
			chal = fmt.Sprintf(`DPoP algs="%s"`, strings.Join(algs, " "))
		}
		if code != "" {
			chal += fmt.Sprintf(`, error="%s", error_description="%s"`, code, strings.ReplaceAll(desc, `"`, "'"))
		}
		w.Header().Set("WWW-Authenticate", chal)
		note(w, "error", code)
		writeJSON(w, http.StatusUnauthorized, &oauthError{Code: code, Description: desc})
	}
	if token == "" || (scheme != "dpop" && scheme != "bearer") {
		refuse("DPoP", "", "")
		return
	}
	now := s.now()
	s.mu.Lock()
	at, ok := s.access[token]
	var info TokenInfo
	valid := ok && !at.revoked && !at.fam.revoked && now.Before(at.expires)
	if ok {
		info = at.info
	}
	nonces := s.rsNonces
	s.mu.Unlock()
	note(w, "client_id", info.ClientID)
	if !valid {
		refuse(map[string]string{"dpop": "DPoP", "bearer": "Bearer"}[scheme], "invalid_token", "the access token is not valid")
		return
	}
	tokenType := "Bearer"
	switch {
	case scheme == "bearer" && info.JKT != "":
		refuse("DPoP", "invalid_token", "a DPoP-bound token must be presented with the DPoP scheme")
		return
	case scheme == "dpop" && info.JKT == "":
		refuse("DPoP", "invalid_token", "the token is not DPoP-bound")
		return
	case scheme == "dpop":
		proofs := r.Header.Values("DPoP")
		s.mu.Lock()
		s.recordLocked(proofs...)
		s.mu.Unlock()
		if len(proofs) != 1 {
			s.countProof(proofBad)
			refuse("DPoP", "invalid_dpop_proof", "exactly one DPoP proof is required")
			return
		}
		jkt, why, msg := s.verifyProof(proofs[0], proofCheck{
			htm: r.Method, htu: requestURL(r), accessToken: token,
			nonces: nonces, needNonce: s.opts.ResourceNonce,
		})
		if why == proofOK && jkt != info.JKT {
			why, msg = proofBad, "DPoP proof key is not the key the token is bound to"
		}
		s.countProof(why)
		switch why {
		case proofOK:
		case proofNonce:
			w.Header().Set("DPoP-Nonce", nonces[0])
			refuse("DPoP", "use_dpop_nonce", "Resource server requires nonce in DPoP proof")
			return
		default:
			refuse("DPoP", "invalid_dpop_proof", msg)
			return
		}
		tokenType = "DPoP"
	}
	if s.opts.ResourceNonce {
		w.Header().Set("DPoP-Nonce", nonces[0])
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"sub": info.Subject, "client_id": info.ClientID, "scope": info.Scope, "token_type": tokenType,
	})
}
