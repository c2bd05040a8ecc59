package daemon

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tokend/tokend/api"
)

// A grant never authorized answers a fetch in the words its status uses:
// pending_authorization, not reauthorization_required.
func TestNeverAuthorizedGrantAnswersPendingAuthorization(t *testing.T) {
	h := newHarness(t, harnessOpts{config: userGrant})
	if st := h.status("user"); st.State != api.StatePendingAuthorization {
		t.Fatalf("status: %+v", st)
	}
	code, body := h.get("/v1/tokens/user")
	if code != http.StatusConflict {
		t.Fatalf("fetch: %d %s", code, body)
	}
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if e.Error != api.CodePendingAuthorization {
		t.Errorf("fetch answered %q (%s), want %q as status says", e.Error, e.ErrorDescription, api.CodePendingAuthorization)
	}
}
