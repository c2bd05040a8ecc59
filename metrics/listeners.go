package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// acceptReasons are the reasons of tokend_accept_errors_total: out of
// descriptors for the process (emfile) or the system (enfile), or another
// error.
var acceptReasons = []string{"emfile", "enfile", "other"}

// listenerCollectors are the series of the listeners' connection bounds
// (server/connlimit.go): the socket API, the callback and the metrics
// listener, each labelled by its name.
type listenerCollectors struct {
	open        *prometheus.GaugeVec
	refused     *prometheus.CounterVec
	idleClosed  *prometheus.CounterVec
	acceptErrs  *prometheus.CounterVec
	mu          sync.Mutex
	initialised map[string]bool // listeners whose counters exist, at 0 or more
}

func newListenerCollectors(reg prometheus.Registerer) *listenerCollectors {
	l := &listenerCollectors{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokend_connections_open",
			Help: "Connections a listener (api, callback, metrics) holds now; each holds a descriptor, and each listener has a bound derived from RLIMIT_NOFILE.",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_connections_refused_total",
			Help: "Connections closed at accept (with a 503) because the listener held all it may and none of them was idle.",
		}, []string{"listener"}),
		idleClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_connections_idle_closed_total",
			Help: "Idle keep-alive connections, and connections that had sent nothing yet, closed to make room for new ones.",
		}, []string{"listener"}),
		acceptErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_accept_errors_total",
			Help: "Failed accepts by listener and reason: emfile (the process is out of descriptors), enfile (the system is), other. Out of descriptors, provider requests and the store fail too.",
		}, []string{"listener", "reason"}),
		initialised: make(map[string]bool),
	}
	reg.MustRegister(l.open, l.refused, l.idleClosed, l.acceptErrs)
	return l
}

// SetOpenConns sets tokend_connections_open{listener}. The listener's
// counters are exported from its first call, at 0, so that an alert sees
// their first increase.
func (m *Metrics) SetOpenConns(listener string, n int) {
	l := m.listeners
	l.open.WithLabelValues(listener).Set(float64(n))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.initialised[listener] {
		return
	}
	l.initialised[listener] = true
	l.refused.WithLabelValues(listener)
	l.idleClosed.WithLabelValues(listener)
	for _, r := range acceptReasons {
		l.acceptErrs.WithLabelValues(listener, r)
	}
}

// ObserveConnRefused counts one connection in
// tokend_connections_refused_total{listener}.
func (m *Metrics) ObserveConnRefused(listener string) {
	m.listeners.refused.WithLabelValues(listener).Inc()
}

// ObserveIdleConnsClosed adds n to
// tokend_connections_idle_closed_total{listener}.
func (m *Metrics) ObserveIdleConnsClosed(listener string, n int) {
	m.listeners.idleClosed.WithLabelValues(listener).Add(float64(n))
}

// ObserveAcceptError counts one failed accept in
// tokend_accept_errors_total{listener,reason}; reason is emfile, enfile
// or other.
func (m *Metrics) ObserveAcceptError(listener, reason string) {
	m.listeners.acceptErrs.WithLabelValues(listener, reason).Inc()
}
