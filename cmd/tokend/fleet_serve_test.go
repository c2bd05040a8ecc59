package main

import (
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
	clearServiceEnv(t)
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

	serveInBackground(t, path, func() error { _, err := os.Lstat(sock); return err })
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
}
