package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokend/tokend/store"
)

func TestFleetSeries(t *testing.T) {
	m := New(BuildInfo{Version: "v1"})
	for _, mf := range gather(t, m) {
		if strings.HasPrefix(mf.GetName(), "tokend_fleet_") {
			t.Fatalf("%s exported without fleet mode", mf.GetName())
		}
	}
	m.SetFleetHealth(store.FleetHealth{Quorum: false, LeaseOK: true, WatchOK: true, WatchLag: 1500 * time.Millisecond, GrantsHeld: 7})
	m.ObserveFencedWrite()
	m.ObserveRefusedRecord()
	m.SetFleetConflict("reports", true)
	m.SetFleetConflict("billing", true)
	m.SetFleetConflict("billing", false)
	f := m.fleet
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"held", f.grantsHeld, 7}, {"quorum", f.quorum, 0}, {"lease", f.leaseOK, 1}, {"watch", f.watchOK, 1},
		{"lag", f.watchLag, 1.5}, {"fenced", f.fenced, 1}, {"refused", f.refused, 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(f.conflict); n != 1 {
		t.Errorf("conflict series = %d, want 1 (reports)", n)
	}
	m.Forget("reports")
	if n := testutil.CollectAndCount(f.conflict); n != 0 {
		t.Errorf("conflict series after Forget = %d, want 0", n)
	}
}
