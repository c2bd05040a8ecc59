package oauthtest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
)

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	status      int
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func errorf(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *oauthError {
	return errorf(http.StatusBadRequest, "invalid_request", format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return errorf(http.StatusBadRequest, "invalid_grant", format, args...)
}

func invalidClient() *oauthError {
	return errorf(http.StatusUnauthorized, "invalid_client", "client authentication failed")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauthtest"`)
	}
	note(w, "error", e.Code)
	writeJSON(w, e.status, e)
}

// parseForm reads a form-encoded body through a 64 KiB limit. JSON and
// other bodies are refused, as AWX does, and so are repeated parameters
// (RFC 6749 §3.2). Parameters in the URL query are ignored.
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		if mt == "application/json" {
			return nil, invalidRequest("JSON bodies are not accepted: send application/x-www-form-urlencoded")
		}
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("malformed or too large body")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return nil, invalidRequest("parameter %q is repeated", k)
		}
	}
	return r.PostForm, nil
}

// authenticate checks the client's credentials exactly per its AuthMethod:
// client_secret_basic in the Authorization header (both parts URL-decoded,
// RFC 6749 §2.3.1), client_secret_post in the body, none with client_id
// only. Anything else is invalid_client.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, form url.Values) (*clientState, *oauthError) {
	var id, secret, method string
	if r.Header.Get("Authorization") != "" {
		u, p, ok := r.BasicAuth()
		if !ok {
			return nil, invalidClient()
		}
		if form.Has("client_secret") {
			return nil, invalidRequest("more than one client authentication method")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return nil, invalidClient()
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, invalidClient()
		}
		method = AuthMethodBasic
	} else if form.Has("client_secret") {
		id, secret, method = form.Get("client_id"), form.Get("client_secret"), AuthMethodPost
	} else {
		id, method = form.Get("client_id"), AuthMethodNone
	}
	note(w, "client_id", id)
	if id == "" {
		return nil, invalidClient()
	}
	s.mu.Lock()
	c, ok := s.clients[id]
	s.mu.Unlock()
	if !ok || c.AuthMethod != method {
		return nil, invalidClient()
	}
	if method != AuthMethodNone && subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return nil, invalidClient()
	}
	return c, nil
}
