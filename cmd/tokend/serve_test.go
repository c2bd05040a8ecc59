package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

const (
	serveHelperEnv    = "TOKEND_SERVE_HELPER"
	serveHelperDirEnv = "TOKEND_SERVE_DIR"
	serveTestSecret   = "serve-test-secret"
)

// clearServiceEnv clears, for the test, what systemd tells a service it
// starts (socket activation, notification, the watchdog, credentials): a
// test's serve has none of it.
func clearServiceEnv(t *testing.T) {
	for _, k := range []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREDENTIALS_DIRECTORY"} {
		t.Setenv(k, "")
	}
}

// serveInBackground runs tokend serve on the configuration file at path
// until the test ends, and then checks that it stopped cleanly. It returns
// once up says the daemon is up; serve ending before, or 30 s passing,
// fails the test.
func serveInBackground(t *testing.T, path string, up func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, []string{"--config", path}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := up()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve is not up after 30 s: %v", err)
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("serve ended before it was up: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// serveTestConfig is a configuration with one client_credentials grant
// "cc" against issuer, its store and (unused when systemd passes one)
// socket in dir.
func serveTestConfig(dir, issuer string) *config.Config {
	cfg := &config.Config{
		Store:   config.Store{Path: filepath.Join(dir, "tokend.db")},
		Listen:  config.Listen{Socket: filepath.Join(dir, "own.sock"), Callback: "127.0.0.1:0", Metrics: "127.0.0.1:0"},
		Refresh: config.Refresh{Schedule: config.MustParseSchedule("@every 15s")},
		Log:     config.Log{Level: "debug"},
		Providers: map[string]config.Provider{
			"test": {Issuer: issuer},
		},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(serveTestSecret)},
		},
		Grants: map[string]config.Grant{
			"cc": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}},
		},
	}
	cfg.ApplyDefaults()
	return cfg
}

// childEnv is the test's environment without anything systemd sets, so
// that only what a test adds reaches the child.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, "WATCHDOG_"),
			k == "NOTIFY_SOCKET", k == "JOURNAL_STREAM", k == serveHelperEnv, k == serveHelperDirEnv:
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// Socket activation: systemd creates the API socket and passes it as fd 3
// named "api". A test cannot be systemd, so it re-executes the test binary
// with the listening socket in ExtraFiles (which makes it fd 3) and the
// LISTEN_* variables; the child sets LISTEN_PID to its own pid, which only
// it can know, and runs serve. The parent plays the service manager: it
// reads sd_notify messages, fetches a token through the socket it created,
// and stops the child with SIGTERM.
func TestServeSocketActivation(t *testing.T) {
	dir := t.TempDir()
	apiPath := filepath.Join(dir, "api.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: apiPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// The socket file belongs to "systemd" (this test), not to the child.
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan string, 1024)
	go func() {
		defer close(msgs)
		buf := make([]byte, 8192)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var got []string
	waitNotify := func(a string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed before %s; got %q", a, got)
				}
				got = append(got, m)
				if slices.Contains(strings.Split(m, "\n"), a) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s from the child; got %q", a, got)
			}
		}
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServeActivated$", "-test.v")
	cmd.ExtraFiles = []*os.File{lf}
	cmd.Env = childEnv(
		serveHelperEnv+"=1",
		serveHelperDirEnv+"="+dir,
		"LISTEN_FDS=1",
		"LISTEN_FDNAMES=api",
		"NOTIFY_SOCKET="+notifyPath,
		// systemd's WatchdogSec=1s: serve must ping every 500 ms.
		"WATCHDOG_USEC=1000000",
	)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Only the child holds the listening socket now: if it did not serve
	// it, a connection would hang rather than reach a leftover copy.
	lf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	}()

	waitNotify("READY=1")

	hc := testutil.UnixHTTPClient(apiPath, 30*time.Second)
	resp, err := hc.Get("http://tokend/v1/tokens/cc")
	if err != nil {
		t.Fatalf("fetch through the passed socket: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tr api.TokenResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" || tr.TokenType != "Bearer" {
		t.Fatalf("fetch through the passed socket: %d %s", resp.StatusCode, body)
	}
	hc.CloseIdleConnections()
	if _, err := os.Lstat(filepath.Join(dir, "own.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("listen.socket was created although systemd passed a socket (Lstat: %v)", err)
	}
	// serve wires $WATCHDOG_USEC into the scheduler loop.
	waitNotify("WATCHDOG=1")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the deferred check
		if err != nil {
			t.Fatalf("child after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child did not exit after SIGTERM")
	}
	if !strings.Contains(out.String(), "--- PASS: TestHelperServeActivated") {
		t.Fatalf("the helper did not run and pass:\n%s", out.String())
	}
	waitNotify("STOPPING=1")
	fi, err := os.Lstat(apiPath)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("the passed socket file is gone after shutdown (Lstat: %v); the daemon must not remove a socket it did not create", err)
	}
	if strings.Contains(out.String(), tr.AccessToken) {
		t.Fatal("the child's output shows the access token")
	}
	if strings.Contains(out.String(), serveTestSecret) {
		t.Fatal("the child's output shows the client secret")
	}
}

// TestHelperServeActivated is the child half of TestServeSocketActivation;
// it does nothing in a normal run.
func TestHelperServeActivated(t *testing.T) {
	if os.Getenv(serveHelperEnv) == "" {
		t.Skip("helper process for TestServeSocketActivation")
	}
	dir := os.Getenv(serveHelperDirEnv)
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	prov := devprovider.New(devprovider.Options{
		AccessTTL: 10 * time.Minute,
		Clients:   []devprovider.Client{{ID: "app", Secret: serveTestSecret, AuthMethod: "client_secret_basic"}},
	})
	defer prov.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := serveTestConfig(dir, prov.URL())
	readyCalled := make(chan string, 1)
	err := serve(ctx, cfg, nil, nil, func(d *daemon.Daemon) { readyCalled <- d.MetricsAddr() })
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	select {
	case addr := <-readyCalled:
		t.Logf("served; metrics were on %s", addr)
	default:
		t.Fatal("serve returned without calling ready")
	}
	if _, err := os.Lstat(cfg.Listen.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("listen.socket exists after serve (Lstat: %v)", err)
	}
}

// A second daemon on a store another process holds fails with the
// store's lock error naming the file, and creates no socket.
func TestServeStoreLocked(t *testing.T) {
	clearServiceEnv(t)
	dir := t.TempDir()
	cfg := serveTestConfig(dir, "http://127.0.0.1:1")
	st, err := store.Open(store.Options{Path: cfg.Store.Path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = serve(ctx, cfg, nil, nil, func(*daemon.Daemon) { t.Error("ready called although the store is locked") })
	if err == nil {
		t.Fatal("serve on a locked store succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("serve on a locked store hung until the test's deadline: %v", err)
	}
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), cfg.Store.Path) {
		t.Fatalf("serve on a locked store: %q, want store.ErrLocked naming %s", err, cfg.Store.Path)
	}
	if _, err := os.Lstat(cfg.Listen.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the socket was created although the store could not be opened (Lstat: %v)", err)
	}
}

// listen.socket_mode "0o660" passed check-config, and then serve refused
// it: the mode was parsed twice, by two parsers that disagreed on the 0o
// prefix. Package config now parses it once, and check-config and serve
// both take the typed mode. Each form is loaded from a file by check-config
// and by serve's own entry point, and the socket serve creates has the
// mode.
func TestServeSocketModeFromFile(t *testing.T) {
	clearServiceEnv(t)
	// runServe sets the process's umask; the tests after this one get
	// theirs back.
	umask := unix.Umask(0o077)
	unix.Umask(umask)
	t.Cleanup(func() { unix.Umask(umask) })

	for _, tt := range []struct {
		mode string
		want fs.FileMode
	}{
		{`"0o660"`, 0o660},
		{`0o660`, 0o660},
		{`"0o640"`, 0o640},
		{`"660"`, 0o660},
		{`"0600"`, 0o600},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "tokend.sock")
			path := writeConfig(t, dir, strings.NewReplacer("SOCK", sock, "MODE", tt.mode).Replace(`
store: {path: STORE}
listen:
  socket: SOCK
  socket_mode: MODE
  callback: "off"
  metrics: "off"
`))
			tc := newTestCLI()
			if code := tc.run("check-config", path); code != exitOK {
				t.Fatalf("check-config: exit %d: %s", code, tc.errOut.String())
			}
			if want := fmt.Sprintf("(mode %04o)", tt.want); !strings.Contains(tc.out.String(), want) {
				t.Errorf("check-config does not explain %s:\n%s", want, tc.out.String())
			}

			// The socket appears at its path with its final mode: the
			// first Lstat that finds it is the one checked.
			var first fs.FileInfo
			serveInBackground(t, path, func() error {
				fi, err := os.Lstat(sock)
				if err == nil {
					first = fi
				}
				return err
			})
			if first == nil || first.Mode().Type() != fs.ModeSocket || first.Mode().Perm() != tt.want {
				t.Errorf("socket %s: %v; want a socket with mode %04o", sock, first, tt.want)
			}
		})
	}
}
