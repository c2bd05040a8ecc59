package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/store"
)

// fleetCollectors are the series of fleet mode (daemon/fleet.go). They are
// registered on the first fleet call, so a single-host tokend exports none
// of them (a tokend_fleet_quorum of 0 there would read as an outage).
type fleetCollectors struct {
	once       sync.Once
	grantsHeld prometheus.Gauge
	leaseOK    prometheus.Gauge
	watchOK    prometheus.Gauge
	quorum     prometheus.Gauge
	watchLag   prometheus.Gauge
	fenced     prometheus.Counter
	refused    prometheus.Counter
	conflict   *prometheus.GaugeVec
}

func newFleetCollectors() *fleetCollectors {
	return &fleetCollectors{
		grantsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_fleet_grants_held",
			Help: "Fleet mode: grants whose refresh lease this instance holds (it refreshes them for the fleet).",
		}),
		leaseOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_fleet_lease_ok",
			Help: "Fleet mode: 1 while this instance's etcd lease is alive, else 0 (its grants go to other instances).",
		}),
		watchOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_fleet_watch_ok",
			Help: "Fleet mode: 1 while the etcd watch that brings other instances' tokens runs, else 0.",
		}),
		quorum: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_fleet_quorum",
			Help: "Fleet mode: 1 while etcd answers with a quorum, else 0 (valid tokens are served, nothing is refreshed).",
		}),
		watchLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_fleet_watch_lag_seconds",
			Help: "Fleet mode: age of the newest watch event applied while the watch is behind; 0 when current.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokend_fleet_fenced_writes_total",
			Help: "Fleet mode: refreshed tokens whose write etcd refused because another instance held or had written the grant (the token was dropped, the other chain served).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokend_fleet_refused_records_total",
			Help: "Fleet mode: token records from etcd refused because they are older than the token this instance holds (a replay); the token held is kept.",
		}),
		conflict: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokend_fleet_conflict",
			Help: "Fleet mode: 1 for a grant whose definition on this instance differs from the fleet's (this instance does not refresh it); absent otherwise.",
		}, []string{"grant"}),
	}
}

func (m *Metrics) fleetOn() *fleetCollectors {
	f := m.fleet
	f.once.Do(func() {
		m.reg.MustRegister(f.grantsHeld, f.leaseOK, f.watchOK, f.quorum, f.watchLag, f.fenced, f.refused, f.conflict)
	})
	return f
}

// SetFleetHealth exports this instance's view of the fleet.
func (m *Metrics) SetFleetHealth(h store.FleetHealth) {
	f := m.fleetOn()
	f.grantsHeld.Set(float64(h.GrantsHeld))
	f.leaseOK.Set(b2f(h.LeaseOK))
	f.watchOK.Set(b2f(h.WatchOK))
	f.quorum.Set(b2f(h.Quorum))
	f.watchLag.Set(h.WatchLag.Seconds())
}

// ObserveFencedWrite counts tokend_fleet_fenced_writes_total.
func (m *Metrics) ObserveFencedWrite() { m.fleetOn().fenced.Inc() }

// ObserveRefusedRecord counts tokend_fleet_refused_records_total.
func (m *Metrics) ObserveRefusedRecord() { m.fleetOn().refused.Inc() }

// SetFleetConflict sets tokend_fleet_conflict{grant} to 1, or removes it.
func (m *Metrics) SetFleetConflict(grant string, conflict bool) {
	f := m.fleetOn()
	if conflict {
		f.conflict.WithLabelValues(grant).Set(1)
	} else {
		f.conflict.DeleteLabelValues(grant)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
