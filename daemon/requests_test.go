package daemon

// What the servers ask on a caller's behalf (requests.go): a grant that
// does not exist, the list of grants.

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tokend/tokend/api"
)

func TestUnknownGrantAndList(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	code, body := h.get("/v1/tokens/nope")
	var e api.ErrorResponse
	_ = json.Unmarshal(body, &e)
	if code != http.StatusNotFound || e.Error != "unknown_grant" {
		t.Fatalf("unknown grant: %d %s", code, body)
	}
	code, body = h.get("/v1/tokens")
	var list api.TokenList
	if err := json.Unmarshal(body, &list); err != nil || code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	if len(list.Grants) != 1 || list.Grants[0].Name != "cc" || list.Grants[0].State != api.StateValid {
		t.Fatalf("list: %+v", list)
	}
	for _, s := range h.prov.Issued() {
		if strings.Contains(string(body), s) {
			t.Fatal("the list shows a secret")
		}
	}
	code, _ = h.do(http.MethodDelete, "/v1/tokens/cc")
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE: %d", code)
	}
}
