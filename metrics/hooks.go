package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// hookBuckets span a quick local command (5 ms) to the longest timeouts.
var hookBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// hookCollectors are the series of hooks (daemon/hooks.go).
type hookCollectors struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHookCollectors(reg prometheus.Registerer) hookCollectors {
	h := hookCollectors{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_hook_runs_total",
			Help: "Hook deliveries by hook (its name, or hook<index>) and result (success, failure, timeout, dropped: the hook's queue was full).",
		}, []string{"hook", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_hook_duration_seconds",
			Help:    "Time from an event to the end of its delivery by a hook (queueing, every attempt and retry waits included).",
			Buckets: hookBuckets,
		}, []string{"hook"}),
	}
	reg.MustRegister(h.runs, h.duration)
	return h
}

// ObserveHook counts one delivery of an event by a hook; d is the time from
// the event to the delivery's end (0 for a dropped event, not observed).
func (m *Metrics) ObserveHook(hook, result string, d time.Duration) {
	m.hooks.runs.WithLabelValues(hook, result).Inc()
	if result != "dropped" {
		m.hooks.duration.WithLabelValues(hook).Observe(d.Seconds())
	}
}
