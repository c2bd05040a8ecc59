package devprovider

import (
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

// invalidClientf is invalid_client with a reason, which must name no
// secret.
func invalidClientf(format string, args ...any) *oauthError {
	return errorf(http.StatusUnauthorized, "invalid_client", "client authentication failed: "+format, args...)
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
		if len(v) > 1 && k != "audience" && k != "resource" { // RFC 8693 §2.1 lets these repeat
			return nil, invalidRequest("parameter %q is repeated", k)
		}
	}
	return r.PostForm, nil
}
