package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/oauth/oauthtest"
)

// runDev runs the daemon on embedded defaults: a store and socket under
// --dir, and an in-process development provider on loopback that issues
// short-lived tokens, so a newcomer sees tokens being refreshed within a
// minute with no set-up.
func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dir := fs.String("dir", "./tokend-dev", "directory for the store and the socket")
	ttl := fs.Duration("ttl", 30*time.Second, "lifetime of the development provider's access tokens")
	metricsAddr := fs.String("metrics", "127.0.0.1:9785", "metrics listener (a free port is used if it is taken)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	unix.Umask(0o077)
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	callback, err := freeAddr("127.0.0.1:8785")
	if err != nil {
		return err
	}
	maddr, err := freeAddr(*metricsAddr)
	if err != nil {
		return err
	}
	redirect := "http://" + callback + "/callback"
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	prov := oauthtest.New(oauthtest.Options{
		AccessTTL:   *ttl,
		RefreshTTL:  24 * time.Hour,
		Rotate:      true,
		AutoApprove: true,
		Clients: []oauthtest.Client{
			{ID: "tokend-dev", Secret: hex.EncodeToString(secret), AuthMethod: "client_secret_basic", RedirectURIs: []string{redirect}},
		},
	})
	defer prov.Close()

	cfg := devConfig(abs, callback, maddr, prov.URL(), redirect, oauth.NewSecret(hex.EncodeToString(secret)))
	sock := cfg.Listen.Socket
	return serve(ctx, cfg, nil, nil, func(d *daemon.Daemon) {
		fmt.Fprintf(os.Stderr, `
tokend dev is running.
  development provider  %s (access tokens live %s)
  store                 %s
  socket                %s
  metrics               http://%s/metrics

Fetch the token of grant "demo" (client_credentials, refreshed before it expires):
  go run ./cmd/tokend token demo --socket %s
  curl -s --unix-socket %s http://tokend/v1/tokens/demo
Watch it being refreshed:
  go run ./cmd/tokend status --socket %s
Authorize grant "demo-user" (authorization code + PKCE; the dev provider approves at once):
  go run ./cmd/tokend authorize demo-user --socket %s   then open the URL it prints

Stop with Ctrl-C.

`, prov.URL(), *ttl, cfg.Store.Path, sock, d.MetricsAddr(), sock, sock, sock, sock)
	})
}

func devConfig(dir, callback, metricsAddr, issuer, redirect string, secret oauth.Secret) *config.Config {
	cfg := &config.Config{
		Store:  config.Store{Path: filepath.Join(dir, "tokend.db")},
		Listen: config.Listen{Socket: filepath.Join(dir, "tokend.sock"), SocketMode: config.Mode(0o600), Callback: callback, Metrics: metricsAddr},
		Refresh: config.Refresh{
			Schedule: config.MustParseSchedule("@every 5s"),
		},
		Log: config.Log{Level: "info"},
		Providers: map[string]config.Provider{
			"dev": {Issuer: issuer},
		},
		Clients: map[string]config.Client{
			"dev-app": {Provider: "dev", ClientID: "tokend-dev", AuthMethod: "client_secret_basic", RedirectURI: redirect, Secret: secret},
		},
		Grants: map[string]config.Grant{
			"demo":      {Client: "dev-app", Type: config.GrantClientCredentials, Scopes: []string{"demo.read"}},
			"demo-user": {Client: "dev-app", Type: config.GrantAuthorizationCode, Scopes: []string{"openid", "offline_access"}},
		},
	}
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
