package metrics

import (
	"strings"
	"testing"
	"time"

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
	for name, want := range map[string]float64{
		"held": 7, "quorum": 0, "lease": 1, "watch": 1, "lag": 1.5, "fenced": 1, "refused": 1,
	} {
		var got float64
		switch name {
		case "held":
			got = testutil.ToFloat64(f.grantsHeld)
		case "quorum":
			got = testutil.ToFloat64(f.quorum)
		case "lease":
			got = testutil.ToFloat64(f.leaseOK)
		case "watch":
			got = testutil.ToFloat64(f.watchOK)
		case "lag":
			got = testutil.ToFloat64(f.watchLag)
		case "fenced":
			got = testutil.ToFloat64(f.fenced)
		case "refused":
			got = testutil.ToFloat64(f.refused)
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
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
