package daemon

import (
	"testing"
	"time"

	"github.com/tokend/tokend/internal/devprovider"
)

// The harness's settle returns only once what the clock set off is done:
// a refresh still talking to a slow provider (at start, from the schedule,
// after a backoff) shows its token as soon as start or advance returns.
func TestSettleWaitsForRefreshes(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	slow := devprovider.Fault{Kind: devprovider.FaultSlow, Delay: 200 * time.Millisecond}
	generation := func(want uint64, during string) {
		t.Helper()
		if st := h.status("cc"); st.Generation != want {
			t.Fatalf("settle returned during %s: generation %d, want %d", during, st.Generation, want)
		}
	}

	h.prov.SetFault(slow)
	h.start()
	generation(1, "the first token's request")

	before := h.prov.Stats().TokenRequests
	for h.prov.Stats().TokenRequests == before {
		h.advance(15 * time.Second)
	}
	generation(2, "the scheduled refresh")

	// A refresh that fails once, waits to retry, and retries (slowly).
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.Fault500, Times: 1})
	before = h.prov.Stats().TokenRequests
	for h.prov.Stats().TokenRequests == before {
		h.advance(15 * time.Second)
	}
	if !h.d.grant("cc").backingOff.Load() {
		t.Fatalf("the failed refresh does not wait to retry: %+v", h.status("cc"))
	}
	h.prov.SetFault(slow)
	h.advance(backoffMax)
	generation(3, "the retry")
}
