package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

func TestReloadCommand(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"POST /v1/reload": {
			{200, `{"grants":2,"warnings":["clients.app.client_secret_file: readable by others\u001b[2J"]}`},
			{422, `{"error":"invalid_configuration","error_description":"daemon: config: /etc/tokend/config.yaml:\nline 3: unknown key \"grantz\""}`},
			{403, `{"error":"forbidden","error_description":"this action needs root or an operator group"}`},
		},
	})
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"reload"}, exitOK, "configuration reloaded: 2 grants\n", "tokend: warning: clients.app.client_secret_file: readable by others[2J\n"},
		{[]string{"reload"}, exitError, "", "tokend: reload refused, the running configuration stays:\ntokend: daemon: config: /etc/tokend/config.yaml:\ntokend: line 3: unknown key \"grantz\"\n"},
		{[]string{"reload"}, exitForbidden, "", "tokend: this action needs root or an operator group (forbidden)\n"},
	}
	for _, tt := range tests {
		tc := newTestCLI()
		code := tc.run(append(tt.args, "--socket", f.socket)...)
		if code != tt.code || tc.out.String() != tt.stdout || tc.errOut.String() != tt.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tt.args, code, tc.out.String(), tc.errOut.String())
		}
	}
	tc := newTestCLI()
	if code := tc.run("reload", "now", "--socket", f.socket); code != exitUsage {
		t.Errorf("reload with an argument: exit %d", code)
	}
	tc = newTestCLI()
	if code := tc.run("reload", "--socket", filepath.Join(t.TempDir(), "absent")); code != exitError || !strings.Contains(tc.errOut.String(), "is tokend running?") {
		t.Errorf("reload without a daemon: exit %d, stderr %q", code, tc.errOut.String())
	}
}

// reloadConfig is a configuration file for TestReloadServe: grants are
// client_credentials grants of the client app.
const reloadConfig = `
store: {path: DIR/tokend.db}
listen: {socket: DIR/t.sock, callback: "off", metrics: "off"}
log: {level: info}
providers:
  test: {issuer: ISSUER}
clients:
  app: {provider: test, client_id: app, client_secret_file: DIR/app.secret}
grants:
GRANTS
`

// reloadFiles is a directory for reloadConfig, holding the client's secret,
// and the development provider that knows the client.
type reloadFiles struct {
	dir    string
	issuer string
}

func newReloadFiles(t *testing.T) *reloadFiles {
	clearServiceEnv(t)
	prov := devprovider.New(devprovider.Options{
		AccessTTL: 10 * time.Minute,
		Clients:   []devprovider.Client{{ID: "app", Secret: serveTestSecret, AuthMethod: "client_secret_basic"}},
	})
	t.Cleanup(prov.Close)
	dir := testutil.ShortDir(t)
	if err := os.WriteFile(filepath.Join(dir, "app.secret"), []byte(serveTestSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	return &reloadFiles{dir: dir, issuer: prov.URL()}
}

func (f *reloadFiles) path() string   { return filepath.Join(f.dir, "config.yaml") }
func (f *reloadFiles) socket() string { return filepath.Join(f.dir, "t.sock") }

// write writes the configuration file with the client_credentials grants
// named, and listen.callback at callback ("" leaves it off).
func (f *reloadFiles) write(t *testing.T, callback string, grants ...string) {
	t.Helper()
	var b strings.Builder
	for _, g := range grants {
		fmt.Fprintf(&b, "  %s: {client: app, type: client_credentials}\n", g)
	}
	r := []string{"DIR", f.dir, "ISSUER", f.issuer, "GRANTS", b.String()}
	if callback != "" {
		r = append(r, `callback: "off"`, "callback: "+callback)
	}
	if err := os.WriteFile(f.path(), []byte(strings.NewReplacer(r...).Replace(reloadConfig)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestReloadServe runs `tokend serve` on a file and `tokend reload`
// against it: a grant added to the file can be fetched the moment reload
// returns, and a broken file exits 1 with the file's error while the
// daemon keeps serving.
func TestReloadServe(t *testing.T) {
	f := newReloadFiles(t)
	f.write(t, "", "one")
	sock := f.socket()
	cl := api.NewClient(sock)
	ctx := t.Context()
	serveInBackground(t, f.path(), func() error { _, err := cl.Token(ctx, "one"); return err })

	f.write(t, "", "one", "two")
	tc := newTestCLI()
	if code := tc.run("reload", "--socket", sock); code != exitOK || tc.out.String() != "configuration reloaded: 2 grants\n" {
		t.Fatalf("reload: exit %d, stdout %q, stderr %q", code, tc.out.String(), tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("token", "two", "--socket", sock); code != exitOK || tc.out.Len() == 0 {
		t.Fatalf("token two right after reload: exit %d, stderr %q", code, tc.errOut.String())
	}

	if err := os.WriteFile(f.path(), []byte("grantz: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tc = newTestCLI()
	code := tc.run("reload", "--socket", sock)
	if code != exitError || !strings.Contains(tc.errOut.String(), "reload refused") || !strings.Contains(tc.errOut.String(), "grantz") {
		t.Fatalf("reload of a broken file: exit %d, stdout %q, stderr %q", code, tc.out.String(), tc.errOut.String())
	}
	if _, err := cl.Token(ctx, "two"); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	var ae *api.Error
	if _, err := cl.Token(ctx, "three"); !errors.As(err, &ae) {
		t.Fatalf("unknown grant: %v", err)
	}
}

// TestReloadNamesKeysThatNeedRestart: `tokend reload` after listen.callback
// (and a grant) changed in the file applies the grant, leaves the callback
// listener where it is, names listen.callback as needing a restart, and
// exits 6 — again on the next reload, since the running value still
// differs from the file, and 0 once the file agrees again.
func TestReloadNamesKeysThatNeedRestart(t *testing.T) {
	f := newReloadFiles(t)
	// A port of its own for the callback, so that the file can name it.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	callback := probe.Addr().String()
	probe.Close()
	f.write(t, callback, "one")
	sock := f.socket()
	cl := api.NewClient(sock)
	ctx := t.Context()
	serveInBackground(t, f.path(), func() error { _, err := cl.Token(ctx, "one"); return err })

	moved := "127.0.0.2:" + strings.Split(callback, ":")[1]
	f.write(t, moved, "one", "two")
	for range 2 {
		tc := newTestCLI()
		code := tc.run("reload", "--socket", sock)
		if code != exitRestartNeeded {
			t.Errorf("reload with listen.callback changed: exit %d, want %d", code, exitRestartNeeded)
		}
		if out := tc.out.String(); out != "configuration reloaded: 2 grants, except listen.callback\n" {
			t.Errorf("stdout %q", out)
		}
		if msg := tc.errOut.String(); !strings.Contains(msg, "listen.callback") || !strings.Contains(msg, "restart") {
			t.Errorf("stderr %q does not say that listen.callback needs a restart", msg)
		}
	}
	// The rest was applied; the callback did not move.
	if _, err := cl.Token(ctx, "two"); err != nil {
		t.Errorf("grant two after the reload: %v", err)
	}
	if c, err := net.Dial("tcp", callback); err != nil {
		t.Errorf("the callback listener left %s: %v", callback, err)
	} else {
		c.Close()
	}

	f.write(t, callback, "one", "two")
	tc := newTestCLI()
	if code := tc.run("reload", "--socket", sock); code != exitOK || tc.out.String() != "configuration reloaded: 2 grants\n" || strings.Contains(tc.errOut.String(), "restart") {
		t.Errorf("reload with the running callback again: exit %d, stdout %q, stderr %q", code, tc.out.String(), tc.errOut.String())
	}
}
