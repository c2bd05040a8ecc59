package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/hook"
)

// A hook set counts deliveries through its Metrics interface.
var _ hook.Metrics = (*Metrics)(nil)

// The daemon finds the on-demand counter through its optional interface.
var _ daemon.OnDemandMetrics = (*Metrics)(nil)

func TestObserveHook(t *testing.T) {
	m := New(BuildInfo{Version: "test"})
	m.ObserveHook("alerts", "success", 20*time.Millisecond)
	m.ObserveHook("alerts", "success", 30*time.Millisecond)
	m.ObserveHook("hook0", "timeout", 10*time.Second)
	m.ObserveHook("hook0", "dropped", 0)
	if got := testutil.ToFloat64(m.hooks.runs.WithLabelValues("alerts", "success")); got != 2 {
		t.Errorf("alerts/success = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.hooks.runs.WithLabelValues("hook0", "dropped")); got != 1 {
		t.Errorf("hook0/dropped = %v, want 1", got)
	}
	// A dropped event is counted but not timed.
	if n := testutil.CollectAndCount(m.hooks.duration, "tokend_hook_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2", n)
	}
}
