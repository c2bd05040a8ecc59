package metrics

// STUBS: replaced by the implementation. Signatures are the contract.

import (
	"net/http"
	"time"
)

// BuildInfo labels tokend_build_info.
type BuildInfo struct{ Version, Revision, GoVersion string }

// Metrics owns tokend's collectors on its own registry (no globals). Safe
// for concurrent use. Grant names are the only variable label.
type Metrics struct{}

// New builds the collectors, the Go and process collectors and build info.
func New(b BuildInfo) *Metrics { panic("unimplemented") }

// ObserveRefresh counts tokend_refresh_total{grant,result} and, for any
// result, observes tokend_refresh_duration_seconds{grant}. result is
// "success" or a failure class (transient, reauthorization, credentials,
// configuration).
func (m *Metrics) ObserveRefresh(grant, result string, d time.Duration) { panic("unimplemented") }

// SetExpiry sets tokend_token_expiry_timestamp_seconds and
// tokend_refresh_token_expiry_timestamp_seconds (a zero time removes it).
func (m *Metrics) SetExpiry(grant string, access, refresh time.Time) { panic("unimplemented") }

// SetLastSuccess sets tokend_last_refresh_success_timestamp_seconds.
func (m *Metrics) SetLastSuccess(grant string, t time.Time) { panic("unimplemented") }

// SetState sets tokend_grant_state{grant,state} to 1 for state and 0 for the
// other known states.
func (m *Metrics) SetState(grant, state string) { panic("unimplemented") }

// ObserveFetch counts tokend_fetch_requests_total{grant,code}. Callers pass
// "" for a name that is not a configured grant (it becomes "_unknown").
func (m *Metrics) ObserveFetch(grant string, code int) { panic("unimplemented") }

// Forget removes every series of a grant that left the configuration.
func (m *Metrics) Forget(grant string) { panic("unimplemented") }

// Checker reports readiness: nil when ready.
type Checker func() error

// Handler serves /metrics, /healthz (200 while the process runs) and
// /readyz (200 when ready() is nil, else 503 with the reason).
func (m *Metrics) Handler(ready Checker) http.Handler { panic("unimplemented") }
