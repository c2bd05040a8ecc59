package e2e

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadOnSIGHUP: SIGHUP re-reads the configuration file: a new grant
// is served, the stored token of a grant that stays is kept (no new request
// for it), and a broken file leaves the running configuration in place.
func TestReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	o := ccProvider(t)
	s := NewSetup(t)
	cfg := ccConfig(s, o.Issuer)
	td := StartTokend(t, s, cfg)
	td.NoLeak(ccSecret)
	first := td.WaitToken("api", 20*time.Second)

	// A second grant appears in the file.
	grown := strings.Replace(cfg, "  api:\n", "  api2:\n    client: svc\n    type: client_credentials\n    scopes: [api:read]\n  api:\n", 1)
	if grown == cfg {
		t.Fatal("could not add a grant to the test config")
	}
	if err := os.WriteFile(td.cfgPath, []byte(grown), 0o600); err != nil {
		t.Fatal(err)
	}
	td.hup()
	second := td.WaitToken("api2", 20*time.Second)
	if second.AccessToken == "" || second.AccessToken == first.AccessToken {
		t.Fatalf("new grant after reload: %+v", second)
	}
	if got := td.MustToken("api"); got.AccessToken != first.AccessToken && time.Until(first.ExpiresAt) > 5*time.Second {
		t.Fatal("reload dropped the stored token of a grant that stayed")
	}

	// A broken file: logged, and the running configuration stays.
	if err := os.WriteFile(td.cfgPath, []byte("grants: [not, a, map\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	td.hup()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(td.Logs(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatal("a broken configuration on SIGHUP was not reported")
		}
		time.Sleep(50 * time.Millisecond)
	}
	td.MustToken("api")
	td.MustToken("api2")
}

// hup sends SIGHUP to the running tokend.
func (td *Tokend) hup() {
	td.t.Helper()
	td.mu.Lock()
	cmd := td.cmd
	td.mu.Unlock()
	if cmd == nil {
		td.t.Fatal("tokend is not running")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		td.t.Fatal(err)
	}
}
