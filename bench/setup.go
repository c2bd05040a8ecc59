package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/metrics"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
)

const (
	clientID     = "bench-app"
	clientSecret = "bench-client-secret"
	accessTTL    = time.Hour
)

// newProvider starts the in-process provider on loopback with the one
// confidential client every benchmark grant uses.
func newProvider() *devprovider.Server {
	return devprovider.New(devprovider.Options{
		AccessTTL: accessTTL,
		Clients:   []devprovider.Client{{ID: clientID, Secret: clientSecret, AuthMethod: devprovider.AuthMethodBasic}},
	})
}

func grantName(i int) string { return fmt.Sprintf("grant-%06d", i) }

func newKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// benchConfig is a real daemon configuration: a sealed store (encryption
// at rest on, fsync on), a unix socket, loopback callback and metrics
// listeners, and n client_credentials grants of one client.
func benchConfig(dir string, key []byte, issuer string, n, concurrency int) (*config.Config, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := &config.Config{
		Store:   config.Store{Path: filepath.Join(dir, "tokend.db"), Key: key},
		Listen:  config.Listen{Socket: filepath.Join(dir, "tokend.sock"), Callback: "127.0.0.1:0", Metrics: "127.0.0.1:0"},
		Refresh: config.Refresh{Concurrency: concurrency},
		Log:     config.Log{Level: "info"},
		Providers: map[string]config.Provider{
			"bench": {Issuer: issuer},
		},
		Clients: map[string]config.Client{
			"app": {Provider: "bench", ClientID: clientID, AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(clientSecret)},
		},
		Grants: make(map[string]config.Grant, n),
	}
	for i := range n {
		cfg.Grants[grantName(i)] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: config: %w", err)
	}
	return cfg, nil
}

// benchYAML is benchConfig as a configuration file: the text `tokend
// serve` would read (the client secret named by a file, which
// config.Parse does not read).
func benchYAML(dir, issuer string, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "store:\n  path: %s\nlisten:\n  socket: %s\n  callback: 127.0.0.1:0\n  metrics: 127.0.0.1:0\nlog:\n  level: info\n",
		filepath.Join(dir, "tokend.db"), filepath.Join(dir, "tokend.sock"))
	fmt.Fprintf(&b, "providers:\n  bench:\n    issuer: %s\nclients:\n  app:\n    provider: bench\n    client_id: %s\n    auth_method: client_secret_basic\n    client_secret_file: %s\ngrants:\n",
		issuer, clientID, filepath.Join(dir, "client.secret"))
	for i := range n {
		fmt.Fprintf(&b, "  %s:\n    client: app\n    type: client_credentials\n    scopes: [read]\n", grantName(i))
	}
	return b.Bytes()
}

// countingMetrics is the real metrics plus a count of successful
// refreshes. The daemon reports a refresh only after its token is durable
// (PutToken returned), so the count is of durable refreshes.
type countingMetrics struct {
	*metrics.Metrics
	ok atomic.Int64
}

func (m *countingMetrics) ObserveRefresh(grant, result string, d time.Duration) {
	if result == "success" {
		m.ok.Add(1)
	}
	m.Metrics.ObserveRefresh(grant, result, d)
}

// Experiment switches (flags -exp-nosync, -exp-pool), for diagnosing a
// missed target; never set by make bench.
var (
	expNoSync bool
	expPool   bool
	expNoMet  bool
)

// startLimit bounds a daemon's start-up.
var startLimit = 60 * time.Second

// running is a daemon started in this process.
type running struct {
	d       *daemon.Daemon
	cfg     *config.Config
	m       *countingMetrics
	startup time.Duration // daemon.New to Started
	cancel  context.CancelFunc
	done    chan error
}

// startDaemon builds and runs a daemon wired as `tokend serve` wires it
// (real metrics, an info-level logger whose output is discarded).
func startDaemon(cfg *config.Config, clock daemon.Clock) (*running, error) {
	return startDaemonWith(cfg, clock, nil)
}

// startDaemonWith is startDaemon with the store opened by open (nil: the
// bbolt file), as fleet mode opens etcd.
func startDaemonWith(cfg *config.Config, clock daemon.Clock, open func(config.Store, *slog.Logger) (daemon.Store, error)) (*running, error) {
	m := &countingMetrics{Metrics: metrics.New(metrics.BuildInfo{Version: "bench", Revision: "bench", GoVersion: runtime.Version()})}
	opts := daemon.Options{
		Logger:  daemon.NewLogger(io.Discard, cfg.Log, false),
		Clock:   clock,
		Metrics: m,
	}
	var metricsHandler func(func() error) http.Handler = func(r func() error) http.Handler { return m.Handler(r) }
	if expNoSync {
		opts.OpenStore = func(c config.Store, log *slog.Logger) (daemon.Store, error) {
			return store.Open(store.Options{Path: c.Path, Key: c.Key, Logger: log, NoSync: true})
		}
	}
	if expNoMet {
		opts.Metrics, metricsHandler = nil, nil
	}
	if open != nil {
		opts.OpenStore = open
	}
	if expPool {
		opts.HTTPClient = &http.Client{Timeout: cfg.Refresh.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Refresh.Concurrency + 8}}
	}
	begin := time.Now()
	d, err := daemon.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{d: d, cfg: cfg, m: m, cancel: cancel, done: make(chan error, 1)}
	sc := server.Config{Engine: d, Log: opts.Logger, MetricsHandler: metricsHandler}
	if opts.Metrics != nil {
		sc.Metrics = m
	}
	go func() { r.done <- d.Run(ctx, server.New(sc)) }()
	select {
	case <-d.Started():
		r.startup = time.Since(begin)
	case err := <-r.done:
		cancel()
		return nil, fmt.Errorf("bench: daemon did not start: %w", err)
	case <-time.After(startLimit):
		cancel()
		return nil, fmt.Errorf("bench: daemon did not start within %s", startLimit)
	}
	return r, nil
}

func (r *running) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		return errors.New("bench: daemon did not stop within 30 s")
	}
}

// waitRefreshed waits until n refreshes succeeded, at most limit.
func (r *running) waitRefreshed(n int64, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	for r.m.ok.Load() < n {
		if time.Since(start) > limit {
			return 0, fmt.Errorf("bench: only %d of %d refreshes done after %s", r.m.ok.Load(), n, limit)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start), nil
}

// startServing starts a daemon of cfg on the real clock and waits, at most
// 30 s, until n refreshes succeeded (each grant's first token): the fetch
// benchmarks measure a daemon that has its tokens.
func startServing(cfg *config.Config, n int64) (*running, error) {
	r, err := startDaemon(cfg, nil)
	if err != nil {
		return nil, err
	}
	if _, err := r.waitRefreshed(n, 30*time.Second); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// requestsPerClient is how many requests each of clients makes in one
// round of a fetch benchmark: 12,000 in all for one client, 40,000 for
// more.
func requestsPerClient(clients int) int {
	if clients > 1 {
		return 40000 / clients
	}
	return 12000 / clients
}

// unixClient is one keep-alive HTTP client over the unix socket at path:
// one connection, reused for every request.
func unixClient(path string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
		},
		Timeout: 60 * time.Second,
	}
}
