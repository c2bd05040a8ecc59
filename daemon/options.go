package daemon

// The daemon's collaborators (Options) and what it needs of them:
// Metrics, Notifier and the Frontend; each with the no-op form New and
// Run put in for one not given.

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/tokend/tokend/config"
)

// Metrics receives what the engine measures. *metrics.Metrics implements
// it (and what package server counts: fetches, listeners).
type Metrics interface {
	ObserveRefresh(grant, result string, d time.Duration)
	// ObserveAttempt counts one request for a new token as it returns;
	// SetFailures exports the failed requests since the last success.
	ObserveAttempt(grant, result string)
	SetFailures(grant string, n int)
	// ObserveProviderRequest counts one HTTP request to a provider by
	// endpoint and outcome (status code or transport class).
	ObserveProviderRequest(provider, endpoint, code string)
	SetExpiry(grant string, access, refresh time.Time)
	SetLastSuccess(grant string, t time.Time)
	SetState(grant, state string)
	Forget(grant string)
}

// Notifier tells a service manager how the daemon is doing (systemd's
// sd_notify). Every method must be cheap and safe to call when no manager
// listens.
type Notifier interface {
	Ready() error
	Reloading() error
	Status(msg string) error
	Stopping() error
	Watchdog() error
}

// Options are the daemon's collaborators. Zero values mean the real thing.
type Options struct {
	Logger   *slog.Logger
	Clock    Clock
	Metrics  Metrics
	Notifier Notifier
	// WatchdogInterval is how often the scheduler loop must ping the
	// Notifier; 0 disables the watchdog.
	WatchdogInterval time.Duration
	// HTTPClient speaks to providers; nil means one with Refresh.Timeout.
	// It must not retry: the refresher's backoff is the only retry.
	HTTPClient *http.Client
	// OpenStore opens the store Run keeps state in, from the
	// configuration's store section; nil means the bbolt file of package
	// store (openStore, storage.go). Another backend plugs in here: see
	// Store for what it must guarantee.
	OpenStore func(config.Store, *slog.Logger) (Store, error)
	// FetchWait caps how long a fetch of an expired token waits for its
	// refresh; 0 means 30 s.
	FetchWait time.Duration
	// LoadConfig reads the configuration file again, for ReloadConfig
	// (SIGHUP, POST /v1/reload); nil when there is no file (tokend dev).
	LoadConfig func() (*config.Config, []string, error)
}

// Frontend is what accepts the host's connections for the engine:
// package server's Servers, which cmd/tokend builds over the Daemon. Run
// binds it once the store is open and the tokens are loaded, serves it
// before telling the service manager it is ready, and shuts it down as
// shutdown begins, before refreshes in flight are drained and the store
// closes.
type Frontend interface {
	// Listen binds every listener cfg configures; when one fails, none
	// stays bound.
	Listen(cfg *config.Config) error
	// Serve serves the listeners until Shutdown returns (a proxy until
	// ctx ends).
	Serve(ctx context.Context) error
	// Shutdown stops accepting and waits for the requests being served,
	// until ctx ends.
	Shutdown(ctx context.Context)
	// SocketAddr, CallbackAddr and MetricsAddr are the bound addresses
	// ("" for a listener that is off).
	SocketAddr() string
	CallbackAddr() string
	MetricsAddr() string
}

type nopMetrics struct{}

func (nopMetrics) ObserveRefresh(string, string, time.Duration)  {}
func (nopMetrics) ObserveAttempt(string, string)                 {}
func (nopMetrics) SetFailures(string, int)                       {}
func (nopMetrics) ObserveProviderRequest(string, string, string) {}
func (nopMetrics) SetExpiry(string, time.Time, time.Time)        {}
func (nopMetrics) SetLastSuccess(string, time.Time)              {}
func (nopMetrics) SetState(string, string)                       {}
func (nopMetrics) Forget(string)                                 {}

// noFrontend listens nowhere.
type noFrontend struct{}

func (noFrontend) Listen(*config.Config) error { return nil }
func (noFrontend) Serve(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
func (noFrontend) Shutdown(context.Context) {}
func (noFrontend) SocketAddr() string       { return "" }
func (noFrontend) CallbackAddr() string     { return "" }
func (noFrontend) MetricsAddr() string      { return "" }

type nopNotifier struct{}

func (nopNotifier) Ready() error        { return nil }
func (nopNotifier) Reloading() error    { return nil }
func (nopNotifier) Status(string) error { return nil }
func (nopNotifier) Stopping() error     { return nil }
func (nopNotifier) Watchdog() error     { return nil }
