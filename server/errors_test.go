package server

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
)

// Every kind of engine error has a status of its own: a kind added
// without one in statusOf would answer 500.
func TestEveryErrorKindHasAStatus(t *testing.T) {
	seen := map[int]engine.Kind{}
	for k := engine.BadRequest; k <= engine.TooMany; k++ {
		code := statusOf(k)
		if code == http.StatusInternalServerError && k != engine.Internal {
			t.Errorf("kind %d has no status of its own", k)
		}
		if prev, ok := seen[code]; ok {
			t.Errorf("kinds %d and %d both answer %d", prev, k, code)
		}
		seen[code] = k
	}
}

func TestAnswerOf(t *testing.T) {
	cause := errors.New("provider said no")
	err := fmt.Errorf("context: %w", &engine.Error{Kind: engine.Provider, Code: api.CodeAuthorizationFailed, Description: cause.Error(), Err: cause})
	code, resp := answerOf(err)
	if code != http.StatusBadGateway || resp != (api.ErrorResponse{Error: api.CodeAuthorizationFailed, ErrorDescription: "provider said no"}) {
		t.Errorf("answerOf = %d %+v", code, resp)
	}
	if !errors.Is(err, cause) {
		t.Error("an engine error does not wrap its cause")
	}
	if code, _ := answerOf(errors.New("not an engine error")); code != http.StatusInternalServerError {
		t.Errorf("answerOf of another error = %d, want 500", code)
	}
}
