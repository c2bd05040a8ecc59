package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// approveDevice approves a device authorization as the user would with the
// verification URI and code shown to them.
func approveDevice(t testing.TB, issuer, userCode string) testutil.Page {
	t.Helper()
	b := testutil.NewBrowser(t)
	p := b.Open(issuer + "/device?user_code=" + url.QueryEscape(userCode))
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "device approved") {
		t.Fatalf("e2e: device approval ended at %s with %d:\n%s\nvisited %v", p.URL, p.Status, p.Body, b.Visited)
	}
	return p
}
