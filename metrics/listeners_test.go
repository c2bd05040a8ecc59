package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokend/tokend/server"
)

// The servers find the listener series through their optional interface,
// and count fetches through FetchMetrics.
var (
	_ server.ListenerMetrics = (*Metrics)(nil)
	_ server.FetchMetrics    = (*Metrics)(nil)
)

func TestListenerSeries(t *testing.T) {
	m := New(BuildInfo{Version: "test"})
	m.SetOpenConns("callback", 0)
	// A listener's counters exist from its start, at 0: an alert on their
	// increase sees the first one.
	want := `
# HELP tokend_accept_errors_total Failed accepts by listener and reason: emfile (the process is out of descriptors), enfile (the system is), other. Out of descriptors, provider requests and the store fail too.
# TYPE tokend_accept_errors_total counter
tokend_accept_errors_total{listener="callback",reason="emfile"} 0
tokend_accept_errors_total{listener="callback",reason="enfile"} 0
tokend_accept_errors_total{listener="callback",reason="other"} 0
`
	if err := testutil.CollectAndCompare(m.listeners.acceptErrs, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	m.SetOpenConns("callback", 7)
	m.ObserveConnRefused("callback")
	m.ObserveConnRefused("callback")
	m.ObserveIdleConnsClosed("callback", 3)
	m.ObserveAcceptError("callback", "emfile")
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"open", testutil.ToFloat64(m.listeners.open.WithLabelValues("callback")), 7},
		{"refused", testutil.ToFloat64(m.listeners.refused.WithLabelValues("callback")), 2},
		{"idle closed", testutil.ToFloat64(m.listeners.idleClosed.WithLabelValues("callback")), 3},
		{"emfile", testutil.ToFloat64(m.listeners.acceptErrs.WithLabelValues("callback", "emfile")), 1},
		{"metrics' refused", testutil.ToFloat64(m.listeners.refused.WithLabelValues("metrics")), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}
