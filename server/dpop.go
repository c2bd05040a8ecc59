package server

// The DPoP proof endpoint (POST /v1/tokens/{name}/dpop): the request is
// checked here; the proof is made by the engine with the grant's key,
// which never leaves it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/oauth"
)

func (h *apiHandlers) handleDPoP(w http.ResponseWriter, r *http.Request) {
	if !h.access(w, r, false) {
		return
	}
	name := r.PathValue("name")
	req, err := parseDPoPRequest(r.Body)
	if err != nil {
		h.fail(w, name, true, &engine.Error{Kind: engine.BadRequest, Code: api.CodeInvalidRequest, Description: err.Error()})
		return
	}
	resp, err := h.e.Proof(r.Context(), callerOf(r.Context()), name, req)
	if err != nil {
		h.fail(w, name, true, err)
		return
	}
	h.m.ObserveFetch(name, http.StatusOK)
	writeJSON(w, http.StatusOK, resp)
}

// maxDPoPURL bounds the url of a proof request.
const maxDPoPURL = 8 << 10

// parseDPoPRequest checks the body of a proof request.
func parseDPoPRequest(r io.Reader) (api.DPoPRequest, error) {
	var req api.DPoPRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, errors.New("body is not a JSON DPoP request ({\"method\":…,\"url\":…,\"nonce\":…})")
	}
	if dec.More() {
		return req, errors.New("body holds more than one JSON value")
	}
	if !isHTTPToken(req.Method) {
		return req, errors.New("method is not an HTTP method token")
	}
	if len(req.URL) > maxDPoPURL {
		return req, fmt.Errorf("url is longer than %d bytes", maxDPoPURL)
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return req, errors.New("url is not an absolute http(s) URL")
	}
	if !printableASCII(req.Nonce) {
		return req, errors.New("nonce holds characters a nonce cannot have")
	}
	if len(req.Nonce) > oauth.MaxDPoPNonce {
		return req, fmt.Errorf("nonce is longer than %d bytes", oauth.MaxDPoPNonce)
	}
	return req, nil
}

// isHTTPToken reports whether s is an RFC 9110 token (a method name).
func isHTTPToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// printableASCII reports whether s holds only visible ASCII (RFC 9449's
// NQCHAR nonce is a subset).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
