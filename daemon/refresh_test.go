package daemon

// A refresh round (refresh.go): backoff and Retry-After, failures that
// are not retried, grants that obtain again, rotated refresh tokens.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

func TestRetryAfterHonoured(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault429, RetryAfter: 40 * time.Second, Times: 1})
	before := h.prov.Stats().TokenRequests
	for h.prov.Stats().TokenRequests == before { // until due: the refresh hits the 429
		h.advance(15 * time.Second)
	}
	h.clock.Advance(30 * time.Second)
	h.settle() // a retry due within the 30 s has been made by now
	if n := h.prov.Stats().TokenRequests; n != before+1 {
		t.Fatalf("retried after 30 s despite Retry-After: 40 (%d requests)", n-before)
	}
	h.clock.Advance(11 * time.Second)
	waitFor(t, "retry", func() bool { return h.prov.Stats().TokenRequests == before+2 })
	waitFor(t, "refreshed", func() bool { return h.status("cc").Generation == 2 })
}

func TestBackoffGivesUpBeforeExpiry(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500})
	h.advance(9*time.Minute + 30*time.Second)
	st := h.status("cc")
	if st.State != api.StateFailing {
		t.Fatalf("state %s, want failing", st.State)
	}
	h.advance(time.Minute)
	st = h.status("cc")
	if st.State != api.StateExpired {
		t.Fatalf("state %s after expiry, want expired", st.State)
	}
	code, body := h.get("/v1/tokens/cc")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("fetch of expired token with provider down: %d %s", code, body)
	}
	// Answered at once, not after waiting out the refresh's backoff.
	if !strings.Contains(string(body), "tokend is retrying") || !strings.Contains(string(body), "server_error") {
		t.Fatalf("503 does not say why: %s", body)
	}
	// Back up: the next tick recovers.
	h.prov.ClearFault()
	h.advance(15 * time.Second)
	if st := h.status("cc"); st.State != api.StateValid {
		t.Fatalf("did not recover: %+v", st)
	}
}

func seedAuthCode(t *testing.T, h *harness, rt string, mut func(*store.Token)) {
	t.Helper()
	st, err := store.Open(store.Options{Path: h.cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	tok := store.Token{Grant: "user", AccessToken: "at-old", RefreshToken: rt, TokenType: "Bearer", Obtained: t0.Add(-time.Hour), Expiry: t0.Add(-time.Minute), State: api.StateValid, Generation: 1}
	if mut != nil {
		mut(&tok)
	}
	if err := st.PutToken(tok, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
}

func TestInvalidGrantNeedsReauthorization(t *testing.T) {
	h := newHarness(t, harnessOpts{config: userGrant, noRun: true})
	seedAuthCode(t, h, "rt-unknown-to-provider", nil)
	h.start()
	st := h.status("user")
	if st.State != api.StateReauthorizationRequired || st.LastErrorCode != "invalid_grant" {
		t.Fatalf("status: %+v", st)
	}
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("invalid_grant was retried: %d requests", n)
	}
	code, body := h.get("/v1/tokens/user")
	if code != http.StatusConflict {
		t.Fatalf("fetch: %d %s", code, body)
	}
	// Ticks do not retry a dead grant.
	h.advance(time.Minute)
	if n := h.prov.Stats().TokenRequests; n != 1 {
		t.Fatalf("dead grant retried on tick: %d requests", n)
	}
	if !strings.Contains(h.logs.String(), "invalid_grant") {
		t.Fatal("invalid_grant not logged")
	}
}

func TestPasswordGrantReobtainsWhenRefreshTokenDies(t *testing.T) {
	h := newHarness(t, harnessOpts{
		prov: devprovider.Options{Users: map[string]string{"svc": "pw"}, Rotate: true},
		config: func(c *config.Config) {
			c.Grants = map[string]config.Grant{"pw": {Client: "app", Type: config.GrantPassword, Username: "svc", Password: oauth.NewSecret("pw")}}
		},
	})
	first := h.stored("pw")
	if first.RefreshToken == "" {
		t.Fatal("no refresh token from the password grant")
	}
	h.prov.RevokeFamilyOf(first.RefreshToken)
	h.advance(8 * time.Minute)
	st := h.status("pw")
	if st.State != api.StateValid || st.Generation != 2 {
		t.Fatalf("status: %+v", st)
	}
	if h.prov.Stats().ByGrant["password"] != 2 {
		t.Fatalf("password grant not used again: %+v", h.prov.Stats().ByGrant)
	}
	h.logMustNotContain("pw\"", first.RefreshToken)
}

// With rotation on, tokend never sends a refresh token twice.
func TestRotationNeverReusesRefreshToken(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{Rotate: true, AccessTTL: time.Minute, AutoApprove: true}, config: userGrant})
	h.authorizeViaCallback("user")
	seen := map[string]bool{}
	for range 20 {
		h.advance(50 * time.Second)
		rt := h.stored("user").RefreshToken
		seen[rt] = true
	}
	s := h.prov.Stats()
	if s.Reuses != 0 {
		t.Fatalf("%d refresh token reuses", s.Reuses)
	}
	if s.Refreshes < 15 || len(seen) < 15 {
		t.Fatalf("refreshes %d, distinct refresh tokens %d", s.Refreshes, len(seen))
	}
	if st := h.status("user"); st.State != api.StateValid {
		t.Fatalf("status: %+v", st)
	}
}

func TestInvalidClientIsCredentialsError(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultInvalidClient})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	st := h.status("cc")
	if st.State != api.StateCredentialsError || st.LastErrorCode != "invalid_client" {
		t.Fatalf("status: %+v", st)
	}
	n := h.prov.Stats().TokenRequests
	h.advance(time.Minute)
	if h.prov.Stats().TokenRequests != n {
		t.Fatal("credentials error retried on tick")
	}
}
