package metrics

import (
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// UnknownGrant is the grant label used by [Metrics.ObserveFetch] for a
// requested name that is not a configured grant, and for every request the
// caller was not allowed to make (so /metrics does not tell which names
// exist).
const UnknownGrant = "_unknown"

// refreshBuckets span a fast local provider (5 ms) to a request that ran into
// the HTTP client's timeout (30 s).
var refreshBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// BuildInfo labels tokend_build_info.
type BuildInfo struct{ Version, Revision, GoVersion string }

// Metrics owns tokend's collectors on its own registry (no globals). Safe
// for concurrent use. Grant names are the only variable label.
type Metrics struct {
	reg *prometheus.Registry

	refreshTotal    *prometheus.CounterVec
	refreshDuration *prometheus.HistogramVec
	attemptsTotal   *prometheus.CounterVec
	failures        *prometheus.GaugeVec
	providerReqs    *prometheus.CounterVec
	grants          grantTable // the four below (grants.go)
	tokenExpiry     *grantGauge
	refreshExpiry   *grantGauge
	lastSuccess     *grantGauge
	grantState      *grantGauge
	fetchTotal      *prometheus.CounterVec
	sinkWrites      *prometheus.CounterVec
	onDemand        *prometheus.CounterVec
	stepUps         *prometheus.CounterVec

	// mu guards failing.
	mu sync.Mutex
	// failing holds the grants that have a failures series: a grant that
	// never failed has none (absent reads as 0 in the rules), so 100,000
	// healthy grants cost no series there.
	failing map[string]bool

	hooks     hookCollectors      // hooks.go
	fleet     *fleetCollectors    // fleet.go
	listeners *listenerCollectors // listeners.go
}

// New builds the collectors, the Go and process collectors and build info.
// An empty b.GoVersion is filled from the running binary.
func New(b BuildInfo) *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		failing: make(map[string]bool),
		fleet:   newFleetCollectors(),
		refreshTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_refresh_total",
			Help: "Refresh rounds by grant and outcome (success, transient, reauthorization, credentials, configuration), counted when a round ends: a round retries with backoff until it succeeds, fails permanently or would outlast the token. Each request is counted by tokend_refresh_attempts_total.",
		}, []string{"grant", "result"}),
		attemptsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_refresh_attempts_total",
			Help: "Requests for a new token (refresh, client_credentials or password grant, discovery included) by grant and result (success, transient, reauthorization, credentials, configuration), counted as each one returns.",
		}, []string{"grant", "result"}),
		failures: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tokend_refresh_consecutive_failures",
			Help: "Failed requests for a new token since the grant's last success; 0 when the last one succeeded.",
		}, []string{"grant"}),
		refreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_refresh_duration_seconds",
			Help:    "Duration of refresh rounds (backoff waits included), whatever their result.",
			Buckets: refreshBuckets,
		}, []string{"grant"}),
		providerReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_provider_requests_total",
			Help: "HTTP requests to OAuth providers by configured provider name, endpoint (token, revocation, device, discovery, registration, other) and code (HTTP status, or timeout, canceled, refused, reset, dns, tls, error when no answer came).",
		}, []string{"provider", "endpoint", "code"}),
		fetchTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_fetch_requests_total",
			Help: "Token fetch requests on the local API by grant and HTTP status code.",
		}, []string{"grant", "code"}),
		sinkWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_sink_writes_total",
			Help: "Writes of file sinks by grant and result (written; removed: a file that existed was removed; error).",
		}, []string{"grant", "result"}),
		onDemand: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_on_demand_refreshes_total",
			Help: "Refreshes that fetches asked for (the token was expired, in its last tenth of life or last 5 s, or of the wrong kind) by grant and result: started, or bounded (refused: a fetch refreshed the grant less than half a token lifetime ago, or its token is in the first half of its life). The schedule's refreshes are not counted here.",
		}, []string{"grant", "result"}),
		stepUps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_step_up_total",
			Help: "Step-ups reported for a grant (a resource asked for scopes its token lacks) by result: recorded (the grant needs an authorization for more scopes), covered (the token already has them), limited (refused: too many within 10 minutes).",
		}, []string{"grant", "result"}),
	}
	m.grants.rows = make(map[string]grantRow)
	m.tokenExpiry = newGrantGauge(&m.grants, fieldExpiry, "tokend_token_expiry_timestamp_seconds",
		"Unix time at which the grant's current access token expires.")
	m.refreshExpiry = newGrantGauge(&m.grants, fieldRefreshExpiry, "tokend_refresh_token_expiry_timestamp_seconds",
		"Unix time at which the grant's refresh token expires, when known.")
	m.lastSuccess = newGrantGauge(&m.grants, fieldLastSuccess, "tokend_last_refresh_success_timestamp_seconds",
		"Unix time of the grant's last successful token refresh or issue.")
	m.grantState = newGrantGauge(&m.grants, fieldState, "tokend_grant_state",
		"Current state of a grant: one series per grant, with value 1, labelled with its state.")
	goVersion := b.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tokend_build_info",
		Help: "Build information of the running tokend; the value is always 1.",
		ConstLabels: prometheus.Labels{
			"version":   b.Version,
			"revision":  b.Revision,
			"goversion": goVersion,
		},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		m.refreshTotal,
		m.refreshDuration,
		m.attemptsTotal,
		m.failures,
		m.providerReqs,
		m.tokenExpiry,
		m.refreshExpiry,
		m.lastSuccess,
		m.grantState,
		m.fetchTotal,
		m.sinkWrites,
		m.onDemand,
		m.stepUps,
		buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.hooks = newHookCollectors(m.reg)
	m.listeners = newListenerCollectors(m.reg)
	return m
}

// Gatherer returns the registry behind [Metrics.Handler], for tests and for
// callers that push or federate the same series.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// ObserveRefresh counts the end of a refresh round in
// tokend_refresh_total{grant,result} and observes its duration in
// tokend_refresh_duration_seconds{grant}. result is "success" or a failure
// class (transient, reauthorization, credentials, configuration).
func (m *Metrics) ObserveRefresh(grant, result string, d time.Duration) {
	m.refreshTotal.WithLabelValues(grant, result).Inc()
	m.refreshDuration.WithLabelValues(grant).Observe(d.Seconds())
}

// ObserveAttempt counts one request for a new token, as it returns, in
// tokend_refresh_attempts_total{grant,result}; result is as for
// [Metrics.ObserveRefresh].
func (m *Metrics) ObserveAttempt(grant, result string) {
	m.attemptsTotal.WithLabelValues(grant, result).Inc()
}

// SetFailures sets tokend_refresh_consecutive_failures{grant}: the failed
// requests since the grant's last success. The series appears with the
// grant's first failure and then stays (0 after a success).
func (m *Metrics) SetFailures(grant string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n == 0 && !m.failing[grant] {
		return
	}
	m.failing[grant] = true
	m.failures.WithLabelValues(grant).Set(float64(n))
}

// ObserveProviderRequest counts one HTTP request to a provider in
// tokend_provider_requests_total{provider,endpoint,code}.
func (m *Metrics) ObserveProviderRequest(provider, endpoint, code string) {
	m.providerReqs.WithLabelValues(provider, endpoint, code).Inc()
}

// SetExpiry sets tokend_token_expiry_timestamp_seconds and
// tokend_refresh_token_expiry_timestamp_seconds (a zero time removes it).
func (m *Metrics) SetExpiry(grant string, access, refresh time.Time) {
	m.setOrDelete(grant, fieldExpiry, access)
	m.setOrDelete(grant, fieldRefreshExpiry, refresh)
}

// SetLastSuccess sets tokend_last_refresh_success_timestamp_seconds (a zero
// time removes it).
func (m *Metrics) SetLastSuccess(grant string, t time.Time) {
	m.setOrDelete(grant, fieldLastSuccess, t)
}

// setOrDelete exports t as Unix seconds with millisecond precision, or
// removes the series when t is zero: "no refresh token expiry" must read as
// absent, not as 1970.
func (m *Metrics) setOrDelete(grant string, field int, t time.Time) {
	m.grants.set(grant, field, float64(t.UnixMilli())/1e3, !t.IsZero())
}

// SetState exports tokend_grant_state{grant,state} = 1 for the grant's
// current state only, removing the series of its previous state. The
// states are those of [github.com/tokend/tokend/api.States]. One series
// per grant rather than one per grant and known state keeps a host with
// 100,000 grants at 100,000 series instead of 800,000; queries select a
// state with {state="..."} (absent means not in it).
func (m *Metrics) SetState(grant, state string) {
	m.grants.setState(grant, state)
}

// ObserveFetch counts tokend_fetch_requests_total{grant,code}. Callers pass
// "" for a name that is not a configured grant and for a request that was
// refused (403); both become "_unknown".
func (m *Metrics) ObserveFetch(grant string, code int) {
	if grant == "" {
		grant = UnknownGrant
	}
	m.fetchTotal.WithLabelValues(grant, strconv.Itoa(code)).Inc()
}

// Forget removes every series of a grant that left the configuration.
func (m *Metrics) Forget(grant string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	match := prometheus.Labels{"grant": grant}
	delete(m.failing, grant)
	m.refreshTotal.DeletePartialMatch(match)
	m.refreshDuration.DeletePartialMatch(match)
	m.attemptsTotal.DeletePartialMatch(match)
	m.failures.DeletePartialMatch(match)
	m.grants.forget(grant)
	m.fetchTotal.DeletePartialMatch(match)
	m.sinkWrites.DeletePartialMatch(match)
	m.onDemand.DeletePartialMatch(match)
	m.stepUps.DeletePartialMatch(match)
	m.fleet.conflict.DeletePartialMatch(match)
}

// ObserveSinkWrite counts tokend_sink_writes_total{grant,result}; result
// is written, removed or error.
func (m *Metrics) ObserveSinkWrite(grant, result string) {
	m.sinkWrites.WithLabelValues(grant, result).Inc()
}

// ObserveStepUp counts tokend_step_up_total{grant,result}: a step-up a
// program reported; result is recorded, covered or limited.
func (m *Metrics) ObserveStepUp(grant, result string) {
	m.stepUps.WithLabelValues(grant, result).Inc()
}

// ObserveOnDemand counts tokend_on_demand_refreshes_total{grant,result}: a
// refresh a fetch asked for; result is started or bounded.
func (m *Metrics) ObserveOnDemand(grant, result string) {
	m.onDemand.WithLabelValues(grant, result).Inc()
}
