package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestObserveAttemptAndFailures(t *testing.T) {
	m := New(BuildInfo{Version: "v1"})
	m.ObserveAttempt("reports", "transient")
	m.ObserveAttempt("reports", "transient")
	m.ObserveAttempt("reports", "success")
	m.SetFailures("reports", 2)
	m.SetFailures("reports", 0)
	if got := testutil.ToFloat64(m.attemptsTotal.WithLabelValues("reports", "transient")); got != 2 {
		t.Errorf("attempts{reports,transient} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.attemptsTotal.WithLabelValues("reports", "success")); got != 1 {
		t.Errorf("attempts{reports,success} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.failures.WithLabelValues("reports")); got != 0 {
		t.Errorf("consecutive_failures{reports} = %v, want 0", got)
	}
	m.Forget("reports")
	if n := testutil.CollectAndCount(m.attemptsTotal) + testutil.CollectAndCount(m.failures); n != 0 {
		t.Errorf("%d series left after Forget", n)
	}
}

func TestObserveProviderRequest(t *testing.T) {
	m := New(BuildInfo{Version: "v1"})
	m.ObserveProviderRequest("github", "token", "200")
	m.ObserveProviderRequest("github", "token", "200")
	m.ObserveProviderRequest("github", "token", "refused")
	if got := testutil.ToFloat64(m.providerReqs.WithLabelValues("github", "token", "200")); got != 2 {
		t.Errorf("provider_requests{github,token,200} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.providerReqs.WithLabelValues("github", "token", "refused")); got != 1 {
		t.Errorf("provider_requests{github,token,refused} = %v, want 1", got)
	}
}
