package server

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
)

// statusOf is the HTTP status of an engine error of kind k: the one place
// an engine failure becomes a status code.
func statusOf(k engine.Kind) int {
	switch k {
	case engine.BadRequest:
		return http.StatusBadRequest
	case engine.Forbidden:
		return http.StatusForbidden
	case engine.NotFound:
		return http.StatusNotFound
	case engine.Reauthorization:
		return http.StatusConflict
	case engine.Unavailable:
		return http.StatusServiceUnavailable
	case engine.Timeout:
		return http.StatusGatewayTimeout
	case engine.Provider:
		return http.StatusBadGateway
	case engine.InvalidConfiguration:
		return http.StatusUnprocessableEntity
	case engine.NotSupported:
		return http.StatusNotImplemented
	case engine.TooMany:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// answerOf is the answer to a request the engine failed with err: the HTTP
// status of its kind and its code and description. The engine returns
// *engine.Error only; anything else would be a bug, answered 500
// internal_error.
func answerOf(err error) (int, api.ErrorResponse) {
	var e *engine.Error
	if !errors.As(err, &e) {
		return http.StatusInternalServerError, api.ErrorResponse{Error: api.CodeInternalError, ErrorDescription: err.Error()}
	}
	return statusOf(e.Kind), api.ErrorResponse{Error: e.Code, ErrorDescription: e.Description}
}

// apiError is err as the socket API would answer it, for the proxy's
// TokenSource.
func apiError(err error) error {
	code, resp := answerOf(err)
	return &api.Error{Status: code, Code: resp.Error, Description: resp.ErrorDescription}
}

// isRefusal reports whether err refused the caller before any grant was
// reached: it is counted under no grant's name.
func isRefusal(err error) bool {
	var e *engine.Error
	return errors.As(err, &e) && e.Refusal
}

// setRetryAfter sends the Retry-After an engine error carries.
func setRetryAfter(w http.ResponseWriter, err error) {
	if e := (*engine.Error)(nil); errors.As(err, &e) && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
}
