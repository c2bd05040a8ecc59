// Package metrics owns tokend's Prometheus collectors and the small HTTP
// handler that serves them together with the liveness and readiness probes.
//
// A [Metrics] value keeps every collector on its own [prometheus.Registry]:
// nothing is registered globally (no promauto, no DefaultRegisterer), so two
// daemons in one test binary never collide and a test sees exactly what it
// produced. The registry also carries the Go and process collectors and
// tokend_build_info.
//
// The series are (labels in braces; fleet series only in fleet mode,
// registered on the first fleet call so a single host exports none):
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
//	tokend_fetch_requests_total{grant,code}                 counter, per fetch on the socket
//	tokend_on_demand_refreshes_total{grant,result}          counter, refreshes fetches asked for (started, bounded)
//	tokend_step_up_total{grant,result}                      counter, step-ups programs reported (recorded, covered, limited)
//	tokend_sink_writes_total{grant,result}                  counter, file sink writes (written, removed, error)
//	tokend_hook_runs_total{hook,result}                     counter, hook deliveries (success, failure, timeout, dropped)
//	tokend_hook_duration_seconds{hook}                      histogram, 5 ms … 60 s, event to end of delivery
//	tokend_connections_open{listener}                       gauge, connections each listener holds
//	tokend_connections_refused_total{listener}              counter, connections refused past a bound
//	tokend_connections_idle_closed_total{listener}          counter, idle connections shed for a new one
//	tokend_accept_errors_total{listener,reason}             counter, failed accepts (emfile, enfile, other)
//	tokend_fleet_grants_held                                gauge, grants whose refresh lease this instance holds
//	tokend_fleet_lease_ok                                   gauge, 1 while this instance's etcd lease is alive
//	tokend_fleet_watch_ok                                   gauge, 1 while the etcd watch runs
//	tokend_fleet_quorum                                     gauge, 1 while etcd answers with a quorum
//	tokend_fleet_watch_lag_seconds                          gauge, age of the newest watch event while behind
//	tokend_fleet_fenced_writes_total                        counter, token writes etcd refused (another owner)
//	tokend_fleet_refused_records_total                      counter, replayed (older) token records refused
//	tokend_fleet_conflict{grant}                            gauge, 1 where this instance's definition differs
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
// Only the command that wires tokend together (cmd/tokend serve) and the
// benchmarks import metrics: the packages that observe declare the narrow
// interfaces they use (daemon.Metrics, server.FetchMetrics and the sink,
// hook, listener and fleet observers) and *Metrics implements them. The store and oauth
// packages never do: they return values and classified errors, and the
// daemon turns those into observations. metrics itself imports store only
// for the fleet's health type. That keeps the leaf packages free of
// Prometheus and lets the daemon's tests use a real Metrics or a fake.
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
