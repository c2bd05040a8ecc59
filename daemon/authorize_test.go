package daemon

// The authorization flows and revocation (authorize.go): the device
// flow, and a revoke, also during a refresh round that backs off.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

func TestRevoke(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	tok := h.stored("user")
	code, body := h.do(http.MethodPost, "/v1/tokens/user/revoke")
	if code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if h.prov.Valid(tok.AccessToken) || h.prov.RefreshValid(tok.RefreshToken) {
		t.Fatal("tokens still valid at the provider")
	}
	after := h.stored("user")
	if after.AccessToken != "" || after.RefreshToken != "" {
		t.Fatal("revoked tokens still stored")
	}
	if code, _ := h.get("/v1/tokens/user"); code != http.StatusConflict {
		t.Fatalf("fetch after revoke: %d", code)
	}
}

func TestDeviceFlow(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true}, config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{"dev": {Client: "app", Type: config.GrantDeviceCode, Scopes: []string{"read"}}}
	}})
	code, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
	if code != 200 {
		t.Fatalf("authorize: %d %s", code, body)
	}
	var ar api.AuthorizeResponse
	_ = json.Unmarshal(body, &ar)
	if ar.Kind != config.GrantDeviceCode || ar.UserCode == "" || ar.VerificationURI == "" {
		t.Fatalf("device authorization: %+v", ar)
	}
	if err := h.prov.ApproveDevice(ar.UserCode); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "device token", func() bool { return h.status("dev").State == api.StateValid })
	st := h.status("dev")
	if !st.HasRefreshToken || !strings.HasPrefix(st.Auth, "authorized") {
		t.Fatalf("status: %+v", st)
	}
	if !h.prov.Valid(h.token("dev").AccessToken) {
		t.Fatal("device token not valid")
	}
}

func TestDeviceFlowDenied(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		c.Grants = map[string]config.Grant{"dev": {Client: "app", Type: config.GrantDeviceCode}}
	}})
	_, body := h.do(http.MethodPost, "/v1/tokens/dev/authorize")
	var ar api.AuthorizeResponse
	_ = json.Unmarshal(body, &ar)
	if err := h.prov.DenyDevice(ar.UserCode); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "denial recorded", func() bool { return strings.Contains(h.status("dev").Auth, "access_denied") })
	if st := h.status("dev"); st.State != api.StatePendingAuthorization || st.HasRefreshToken {
		t.Fatalf("status after denial: %+v", st)
	}
}

// An operator's revoke does not queue behind a refresh round that backs
// off (it could until the token expires): it ends the round and goes first.
func TestRevokeEndsBackoffRound(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	tok := h.stored("user")
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500})
	go func() { _, _ = h.d.refresh(h.d.grant("user"), "manual") }()
	waitFor(t, "refresh backing off", func() bool { return h.d.grant("user").backingOff.Load() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://tokend/v1/tokens/user/revoke", nil)
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatalf("revoke during a backoff round: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || h.prov.RefreshValid(tok.RefreshToken) {
		t.Fatalf("revoke: %d, refresh token still valid: %v", resp.StatusCode, h.prov.RefreshValid(tok.RefreshToken))
	}
	if st := h.status("user"); st.HasRefreshToken || st.State != api.StateReauthorizationRequired {
		t.Fatalf("after revoke: %+v", st)
	}
}
