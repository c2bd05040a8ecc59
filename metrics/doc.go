// Package metrics owns tokend's Prometheus collectors and the small HTTP
// handler that serves them together with the liveness and readiness probes.
//
// A [Metrics] value keeps every collector on its own [prometheus.Registry]:
// nothing is registered globally (no promauto, no DefaultRegisterer), so two
// daemons in one test binary never collide and a test sees exactly what it
// produced. The registry also carries the Go and process collectors and
// tokend_build_info.
//
// The series are:
//
//	tokend_refresh_total{grant,result}                      counter, per refresh round, at its end
//	tokend_refresh_duration_seconds{grant}                  histogram, 5 ms … 30 s, per round
//	tokend_refresh_attempts_total{grant,result}             counter, per request, as it returns
//	tokend_refresh_consecutive_failures{grant}              gauge, failed requests since the last success
//	tokend_provider_requests_total{provider,endpoint,code}  counter, per HTTP request to a provider
//	tokend_token_expiry_timestamp_seconds{grant}            gauge, Unix seconds
//	tokend_refresh_token_expiry_timestamp_seconds{grant}    gauge, Unix seconds
//	tokend_last_refresh_success_timestamp_seconds{grant}    gauge, Unix seconds
//	tokend_grant_state{grant,state}                         gauge, 1 for the current state
//	tokend_fetch_requests_total{grant,code}                 counter
//	tokend_build_info{version,revision,goversion}           gauge, always 1
//
// Expiry and success are exported as timestamps, not as "seconds left", so
// the value does not go stale between scrapes and PromQL does the arithmetic
// (tokend_token_expiry_timestamp_seconds - time()).
//
// A refresh round retries a failing provider with backoff until it succeeds,
// fails permanently or would outlast the token, so tokend_refresh_total
// alone hides a failing provider for up to a quarter of a token's lifetime;
// tokend_refresh_attempts_total and tokend_refresh_consecutive_failures show
// each failure when it happens, and the alerting rules key on them.
//
// Grant names and configured provider names are the only variable labels;
// every other label takes values from a small fixed set (result classes,
// states, endpoints, HTTP codes, transport failure classes). A fetch for a
// name that is not a configured grant, and every refused (403) request, is
// counted under grant="_unknown", so a client probing random names cannot
// grow the series set nor learn from /metrics which names exist.
//
// Only the daemon package imports metrics. The store and oauth packages never
// do: they return values and classified errors, and the daemon turns those
// into observations. That keeps the leaf packages free of Prometheus and lets
// the daemon's tests use a real Metrics without any wiring in the leaves.
//
// # Caveats
//
// Labels are never secrets: callers must pass grant names and result
// classes, never token material or provider error descriptions.
//
// [Metrics.Forget] must be called when a grant leaves the configuration
// (on reload); otherwise its last values stay exported forever.
//
// The process collector reads /proc/self and /proc/stat (for the start
// time). A unit with ProcSubset=pid hides /proc/stat; the handler is set to
// continue on collection errors so one missing value never fails the whole
// scrape.
package metrics
