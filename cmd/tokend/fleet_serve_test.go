package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/etcdtest"
)

// serve with store.backend etcd opens the etcd store under the configured
// prefix as the configured instance, and check-config explains it.
func TestServeFleetEtcd(t *testing.T) {
	for _, k := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"} {
		t.Setenv(k, "")
	}
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	dir := t.TempDir()
	key := filepath.Join(dir, "store.key")
	if err := os.WriteFile(key, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tokend.sock")
	path := writeConfig(t, dir, strings.NewReplacer("SOCK", sock, "KEY", key, "ENDPOINT", c.Endpoints()[0]).Replace(`
store:
  backend: etcd
  key_file: KEY
  etcd:
    endpoints: [ENDPOINT]
    prefix: /fleet-test/
    lease_ttl: 2s
fleet: {instance: host-a}
listen: {socket: SOCK, callback: "off", metrics: "off"}
providers: {p: {issuer: "https://id.example", token_endpoint: "https://id.example/token"}}
clients: {app: {provider: p, client_id: app, client_secret_file: SECRET}}
grants: {cc: {client: app, type: client_credentials}}
`))
	tc := newTestCLI()
	if code := tc.run("check-config", path); code != exitOK {
		t.Fatalf("check-config: exit %d: %s", code, tc.errOut.String())
	}
	if want := "etcd " + c.Endpoints()[0] + ", prefix /fleet-test/, lease 2s, instance host-a"; !strings.Contains(tc.out.String(), want) {
		t.Errorf("check-config does not explain %q:\n%s", want, tc.out.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, []string{"--config", path}) }()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Lstat(sock); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited before creating the socket: %v", err)
		case <-deadline:
			t.Fatal("serve did not create the socket")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The daemon campaigned for its grant in etcd, under its prefix.
	var refresher string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end) && !strings.Contains(refresher, "host-a (this instance)"); time.Sleep(20 * time.Millisecond) {
		tc = newTestCLI()
		tc.run("status", "cc", "--socket", sock)
		refresher = tc.out.String()
	}
	if !strings.Contains(refresher, "host-a (this instance)") {
		t.Fatalf("status does not show this instance refreshing cc:\n%s", refresher)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
