package daemon

// An authorization completed at the callback (callback.go): once only,
// and a person's refusal.

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
)

func TestCallbackOnceOnly(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant})
	if st := h.status("user"); st.State != api.StatePendingAuthorization {
		t.Fatalf("before authorization: %+v", st)
	}
	cb := h.authorizeViaCallback("user")
	tok := h.token("user")
	if !h.prov.Valid(tok.AccessToken) {
		t.Fatal("authorized token not valid")
	}
	gen := h.stored("user").Generation
	// Replay: refused, nothing changed.
	resp, err := http.Get(cb)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
	// Forged state.
	resp, err = http.Get("http://" + h.d.CallbackAddr() + "/callback?code=x&state=forged-state-value-123456")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged callback: %d", resp.StatusCode)
	}
	if got := h.stored("user"); got.Generation != gen || got.AccessToken != tok.AccessToken {
		t.Fatal("a refused callback changed the token")
	}
	if h.prov.Stats().ByGrant["authorization_code"] != 1 {
		t.Fatal("a refused callback reached the provider")
	}
}

func TestCallbackAccessDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{config: userGrant})
	b := newBrowser(t)
	state := h.openStart(b, h.startAuthorization("user")).Query().Get("state")
	resp, _ := get(t, b, "http://"+h.d.CallbackAddr()+"/callback?error=access_denied&state="+url.QueryEscape(state)+"&iss="+url.QueryEscape(h.prov.URL()), "")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("denied callback: %d", resp.StatusCode)
	}
	st := h.status("user")
	if !strings.Contains(st.Auth, "access_denied") || st.State != api.StatePendingAuthorization {
		t.Fatalf("status after denial: %+v", st)
	}
}
