package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
)

// Rejected and StepUp post their request as JSON to the grant's rejected
// and step-up paths and decode the answers; a refused step-up is an
// *Error with its code.
func TestClientRejectedAndStepUp(t *testing.T) {
	type got struct{ method, path, ctype, body string }
	var last got
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		last = got{r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type"), string(b)}
		switch r.URL.EscapedPath() {
		case "/v1/tokens/a%2Fb/rejected":
			w.Write([]byte(`{"access_token":"at-2","token_type":"Bearer","expires_in":60}`))
		case "/v1/tokens/a%2Fb/step-up":
			w.Write([]byte(`{"name":"a/b","state":"reauthorization_required","step_up_scopes":["read","write"],"step_up_reason":"403 insufficient_scope"}`))
		default:
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":"step_up_limit","error_description":"too many step-ups"}`))
		}
	}))
	c := NewClient(sock)
	tr, err := c.Rejected(context.Background(), "a/b", RejectedRequest{AccessToken: "at-1", Challenge: `Bearer error="invalid_token"`})
	if err != nil || tr.AccessToken != "at-2" {
		t.Fatalf("Rejected = %+v, %v", tr, err)
	}
	var rr RejectedRequest
	if last.method != "POST" || last.path != "/v1/tokens/a%2Fb/rejected" || last.ctype != "application/json" || json.Unmarshal([]byte(last.body), &rr) != nil || rr.AccessToken != "at-1" || rr.Challenge != `Bearer error="invalid_token"` {
		t.Errorf("rejected request %+v", last)
	}
	st, err := c.StepUp(context.Background(), "a/b", StepUpRequest{Scope: "read write"})
	if err != nil || st.State != StateReauthorizationRequired || len(st.StepUpScopes) != 2 || st.StepUpReason == "" {
		t.Fatalf("StepUp = %+v, %v", st, err)
	}
	if last.path != "/v1/tokens/a%2Fb/step-up" || last.body != `{"scope":"read write"}` {
		t.Errorf("step-up request %+v", last)
	}
	_, err = c.StepUp(context.Background(), "other", StepUpRequest{Scope: "x"})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != CodeStepUpLimit {
		t.Errorf("StepUp beyond the limit: %v", err)
	}
	if _, err := c.Rejected(context.Background(), "", RejectedRequest{}); err == nil {
		t.Error("Rejected without a name succeeded")
	}
}
