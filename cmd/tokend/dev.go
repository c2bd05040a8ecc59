package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/oauth"
)

// The development provider's clients. Their ids and the secret are fixed
// and printed: the provider is a toy on loopback that forgets everything
// when tokend dev stops, and a configuration file (or a `tokend serve`
// pointed at it) must be able to name them.
const (
	devProviderName   = "dev"
	devClientName     = "dev-app"
	devClientID       = "tokend-dev"
	devClientSecret   = "tokend-dev-secret"
	devPublicName     = "dev-public"
	devPublicClientID = "tokend-dev-public"
)

// devEnv is where tokend dev runs: its directory and the addresses it
// chose.
type devEnv struct {
	dir, issuer, callback, metrics string
}

// preset adds what tokend dev provides to a configuration (the file's
// own entries win): provider "dev" with its two clients, and the store,
// socket, callback and metrics listeners of this run.
func (e devEnv) preset(cfg *config.Config) {
	if cfg.Providers == nil {
		cfg.Providers = map[string]config.Provider{}
	}
	if _, ok := cfg.Providers[devProviderName]; !ok {
		cfg.Providers[devProviderName] = config.Provider{Issuer: e.issuer}
	}
	if cfg.Clients == nil {
		cfg.Clients = map[string]config.Client{}
	}
	if _, ok := cfg.Clients[devClientName]; !ok {
		cfg.Clients[devClientName] = config.Client{Provider: devProviderName, ClientID: devClientID, AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(devClientSecret)}
	}
	if _, ok := cfg.Clients[devPublicName]; !ok {
		cfg.Clients[devPublicName] = config.Client{Provider: devProviderName, ClientID: devPublicClientID, AuthMethod: "none"}
	}
	if cfg.Store.Path == "" && !cfg.Store.FleetMode() {
		cfg.Store.Path = filepath.Join(e.dir, "tokend.db")
	}
	if cfg.Listen.Socket == "" {
		cfg.Listen.Socket = filepath.Join(e.dir, "tokend.sock")
	}
	if cfg.Listen.SocketMode.IsZero() {
		cfg.Listen.SocketMode = config.Mode(0o600)
	}
	if cfg.Listen.Callback == "" {
		cfg.Listen.Callback = e.callback
	}
	if cfg.Listen.Metrics == "" {
		cfg.Listen.Metrics = e.metrics
	}
}

// devProvider starts the development provider on addr, or on a free port
// of the same host when addr is taken.
func devProvider(addr string, ttl time.Duration) (*devprovider.Server, error) {
	prov := devprovider.NewUnstarted(devprovider.Options{
		AccessTTL:         ttl,
		RefreshTTL:        24 * time.Hour,
		Rotate:            true,
		AutoApprove:       true,
		AllowRegistration: true,
		Clients: []devprovider.Client{
			// No redirect URIs: any loopback one is accepted, so a file
			// may move listen.callback.
			{ID: devClientID, Secret: devClientSecret, AuthMethod: "client_secret_basic"},
			{ID: devPublicClientID, AuthMethod: "none"},
		},
	})
	if err := prov.Start(addr); err != nil {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
		if err := prov.Start(net.JoinHostPort(host, "0")); err != nil {
			return nil, fmt.Errorf("dev: %w", err)
		}
	}
	return prov, nil
}

// runDev runs the daemon against an in-process development provider on
// loopback that issues short-lived tokens, so a newcomer sees tokens being
// refreshed within a minute with no set-up: on embedded defaults (grants
// demo and demo-user), or on a configuration file that may name the
// provider "dev" and its clients.
func (c *cli) runDev(ctx context.Context, args []string) error {
	fs := c.flagSet("dev", "dev [--config FILE] [--dir DIR]")
	cfgPath := fs.String("config", "", "run this configuration `FILE` against the development provider (default: the built-in grants demo and demo-user)")
	dir := fs.String("dir", "./tokend-dev", "directory for the store and the socket")
	ttl := fs.Duration("ttl", 30*time.Second, "lifetime of the development provider's access tokens")
	metricsAddr := fs.String("metrics", config.DefaultMetrics, "metrics listener `ADDR` (a free port is used if it is taken)")
	providerAddr := fs.String("provider", "127.0.0.1:8786", "the development provider's listen `ADDR` (a free port is used if it is taken)")
	if code, ok := c.parseFlags(fs, args); !ok {
		return codeError(code)
	}
	unix.Umask(0o077)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	callback, err := freeAddr(config.DefaultCallback)
	if err != nil {
		return err
	}
	maddr, err := freeAddr(*metricsAddr)
	if err != nil {
		return err
	}
	prov, err := devProvider(*providerAddr, *ttl)
	if err != nil {
		return err
	}
	defer prov.Close()
	env := devEnv{dir: abs, issuer: prov.URL(), callback: callback, metrics: maddr}

	var (
		cfg      *config.Config
		warnings []string
		reload   func() (*config.Config, []string, error)
	)
	if *cfgPath == "" {
		cfg = devConfig(env)
	} else {
		path := *cfgPath
		reload = func() (*config.Config, []string, error) {
			return config.Loader{Preset: env.preset}.Load(path)
		}
		if cfg, warnings, err = reload(); err != nil {
			return err
		}
	}
	return serve(ctx, cfg, warnings, reload, func(d *daemon.Daemon) {
		writeDevBanner(c.stderr, cfg, prov.URL(), *ttl, d.MetricsAddr(), *cfgPath != "")
	})
}

// writeDevBanner tells what tokend dev runs and how to use it: the
// provider and its clients (to point `tokend serve` at it), the grants
// and the commands that fetch them.
func writeDevBanner(w io.Writer, cfg *config.Config, issuer string, ttl time.Duration, metricsAddr string, fromFile bool) {
	sock := cfg.Listen.Socket
	fmt.Fprintf(w, `
tokend dev is running.
  development provider  %s (access tokens live %s; it approves authorizations at once)
    client %-13s client_id %s, client_secret %s (client_secret_basic)
    client %-13s client_id %s (public, PKCE)
  store                 %s
  socket                %s
  metrics               http://%s/metrics
`, issuer, ttl, devClientName, devClientID, devClientSecret, devPublicName, devPublicClientID, cfg.Store.Path, sock, metricsAddr)
	if !fromFile {
		fmt.Fprintf(w, `
Fetch the token of grant "demo" (client_credentials, refreshed before it expires):
  go run ./cmd/tokend token demo --socket %s
  curl -s --unix-socket %s http://tokend/v1/tokens/demo
Watch it being refreshed:
  go run ./cmd/tokend status --socket %s
Authorize grant "demo-user" (authorization code + PKCE; the dev provider approves at once):
  go run ./cmd/tokend authorize demo-user --socket %s   then open the URL it prints
`, sock, sock, sock, sock)
	} else {
		names := make([]string, 0, len(cfg.Grants))
		for n := range cfg.Grants {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(w, "\nGrants: %s\n  go run ./cmd/tokend status --socket %s\n", strings.Join(names, ", "), sock)
	}
	fmt.Fprintf(w, `
Try your own configuration against this provider (sinks, hooks, helpers):
  go run ./cmd/tokend dev --config FILE     # FILE may use provider %q and clients %q, %q
or point "tokend serve" at it while this runs:
  providers: {dev: {issuer: %q}}
  clients:   {app: {provider: dev, client_id: %s, client_secret_file: FILE}}   # FILE holds %s

Stop with Ctrl-C.

`, devProviderName, devClientName, devPublicName, issuer, devClientID, devClientSecret)
}

// devConfig is tokend dev's configuration without a file: grants demo
// (client_credentials) and demo-user (authorization code), refreshed on a
// 5-second schedule.
func devConfig(env devEnv) *config.Config {
	cfg := &config.Config{
		Refresh: config.Refresh{
			Schedule: config.MustParseSchedule("@every 5s"),
		},
		Log: config.Log{Level: "info"},
		Grants: map[string]config.Grant{
			"demo":      {Client: devClientName, Type: config.GrantClientCredentials, Scopes: []string{"demo.read"}},
			"demo-user": {Client: devClientName, Type: config.GrantAuthorizationCode, Scopes: []string{"openid", "offline_access"}},
		},
	}
	env.preset(cfg)
	delete(cfg.Clients, devPublicName)
	cfg.ApplyDefaults()
	return cfg
}

// freeAddr returns addr if it can be bound now, else a free port on the
// same host.
func freeAddr(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, serr := net.SplitHostPort(addr)
		if serr != nil {
			return "", fmt.Errorf("dev: %w", err)
		}
		if l, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err != nil {
			return "", fmt.Errorf("dev: %w", err)
		}
	}
	a := l.Addr().String()
	l.Close()
	return a, nil
}
