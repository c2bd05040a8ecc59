package daemon

// A token handed out (fetch.go): a refresh on demand, never a wait for
// a valid one.

import (
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

// A fetch of an expired token refreshes it and waits; a fetch of a valid
// token never waits for a refresh in flight.
func TestOnDemandAndNeverWait(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) { c.Refresh.Schedule = config.MustParseSchedule("@every 24h") }})
	first := h.token("cc")

	// A refresh that hangs at the provider while the token is still valid.
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultSlow, Delay: time.Hour, Times: 1})
	g := h.d.grant("cc")
	go func() { _, _ = h.d.refresh(g, "manual") }()
	waitFor(t, "slow refresh in flight", func() bool { return h.prov.Stats().Faulted == 1 })
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("a valid token was not served during a refresh")
	}
	h.stop()

	// Restart after expiry: the fetch itself triggers the refresh.
	h.prov.ClearFault()
	h2 := h.sameStore()
	h2.start()
	// Past expiry with no tick in between: only the fetch can refresh.
	h.clock.Advance(11 * time.Minute)
	tok := h2.token("cc")
	if tok.AccessToken == first.AccessToken || !h.prov.Valid(tok.AccessToken) {
		t.Fatal("expired token not refreshed on demand")
	}
}
