package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// Setup is one tokend's files and addresses, shared by its restarts.
type Setup struct {
	t   testing.TB
	Dir string
	// Socket is the fetch API's unix socket.
	Socket string
	// Callback is the callback listener's host:port; CallbackURL the
	// redirect URI on it.
	Callback, CallbackURL string
	// Metrics is the metrics listener's host:port.
	Metrics string
}

// NewSetup picks a directory and free loopback ports for one tokend.
func NewSetup(t testing.TB) *Setup {
	t.Helper()
	dir := t.TempDir()
	s := &Setup{
		t:        t,
		Dir:      dir,
		Socket:   filepath.Join(dir, "tokend.sock"),
		Callback: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		Metrics:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
	}
	s.CallbackURL = "http://" + s.Callback + "/callback"
	return s
}

// SecretFile writes secret to a 0600 file and returns its path.
func (s *Setup) SecretFile(name, secret string) string {
	s.t.Helper()
	p := filepath.Join(s.Dir, name+".secret")
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// Config returns a tokend configuration with one provider "op" discovered
// from issuer, the refresh scheduler waking every second, and the given
// clients and grants sections (YAML, indented by two spaces under their
// key). The uid running the tests is allowed to read every grant through
// {{READERS}} in grants.
func (s *Setup) Config(issuer, clients, grants string) string {
	readers := fmt.Sprintf("readers: {uids: [%d]}", os.Getuid())
	return testutil.TokendConfig{
		Comment:  "tokend e2e test configuration",
		Store:    []string{"path: " + filepath.Join(s.Dir, "tokend.db")},
		Socket:   s.Socket,
		Callback: s.Callback,
		Metrics:  s.Metrics,
		Refresh:  []string{`schedule: "@every 1s"`, "fraction: 0.75", "min_remaining: 3s", "timeout: 10s"},
		LogLevel: "debug",
		Provider: "op", Issuer: issuer,
		Clients: clients,
		Grants:  strings.ReplaceAll(grants, "{{READERS}}", readers),
	}.String()
}

// Tokend is a tokend serve process, restartable with the same
// configuration.
type Tokend struct {
	t       testing.TB
	Setup   *Setup
	cfgPath string
	logs    *testutil.SyncBuffer
	http    *http.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	secrets []string
}

// StartTokend writes configYAML and starts `tokend serve --config FILE`,
// waiting until its socket answers GET /v1/tokens. On cleanup the process is
// killed; if the test failed its log (all runs) is logged; and the log is
// checked for every secret registered with NoLeak.
func StartTokend(t testing.TB, s *Setup, configYAML string) *Tokend {
	t.Helper()
	requireTokend(t)
	cfgPath := filepath.Join(s.Dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	td := &Tokend{t: t, Setup: s, cfgPath: cfgPath, logs: &testutil.SyncBuffer{}}
	td.http = testutil.UnixHTTPClient(s.Socket, 30*time.Second)
	t.Cleanup(func() {
		td.Kill()
		logs := td.logs.String()
		td.mu.Lock()
		secrets := td.secrets
		td.mu.Unlock()
		for _, sec := range secrets {
			if sec != "" && strings.Contains(logs, sec) {
				t.Errorf("tokend's log contains a secret (%d chars, starts %q)", len(sec), sec[:min(4, len(sec))])
			}
		}
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in tokend (see its log)")
		}
		if t.Failed() {
			t.Logf("tokend config:\n%s", configYAML)
			t.Logf("tokend log:\n%s", logs)
		}
	})
	td.Start()
	return td
}

// NoLeak registers secrets that must never appear in tokend's log.
func (td *Tokend) NoLeak(secrets ...string) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.secrets = append(td.secrets, secrets...)
}

// Logs returns what every run of tokend wrote so far.
func (td *Tokend) Logs() string { return td.logs.String() }

// Start starts tokend and waits until it serves its socket.
func (td *Tokend) Start() {
	td.t.Helper()
	td.mu.Lock()
	if td.cmd != nil {
		td.mu.Unlock()
		td.t.Fatal("e2e: tokend is already running")
	}
	fmt.Fprintf(td.logs, "--- e2e: starting tokend at %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(tokendBin, "serve", "--config", td.cfgPath)
	cmd.Stdout = td.logs
	cmd.Stderr = td.logs
	cmd.Env = append(os.Environ(), "TOKEND_SOCKET="+td.Setup.Socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		td.mu.Unlock()
		td.t.Fatalf("e2e: start tokend: %v", err)
	}
	done := make(chan struct{})
	td.cmd, td.done = cmd, done
	go func() {
		err := cmd.Wait()
		td.mu.Lock()
		td.waitErr = err
		td.mu.Unlock()
		close(done)
	}()
	td.mu.Unlock()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-done:
			td.mu.Lock()
			err := td.waitErr
			td.cmd = nil
			td.mu.Unlock()
			td.t.Fatalf("e2e: tokend exited while starting (%v):\n%s", err, td.logs.String())
		default:
		}
		resp, err := td.http.Get("http://tokend/v1/tokens")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("GET /v1/tokens: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			td.t.Fatalf("e2e: tokend not serving its socket in 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the exit; it returns the exit code.
func (td *Tokend) Stop() int {
	td.t.Helper()
	return td.signal(syscall.SIGTERM, 15*time.Second)
}

// Kill sends SIGKILL and waits for the exit. It does nothing when tokend is
// not running.
func (td *Tokend) Kill() {
	td.signal(syscall.SIGKILL, 15*time.Second)
}

// Restart stops tokend with SIGTERM, checks the exit is clean, and starts it again.
func (td *Tokend) Restart() {
	td.t.Helper()
	if code := td.Stop(); code != 0 {
		td.t.Errorf("tokend exit code after SIGTERM = %d, want 0", code)
	}
	td.Start()
}

func (td *Tokend) signal(sig syscall.Signal, wait time.Duration) int {
	td.mu.Lock()
	cmd, done := td.cmd, td.done
	td.mu.Unlock()
	if cmd == nil {
		return 0
	}
	fmt.Fprintf(td.logs, "--- e2e: sending %v at %s\n", sig, time.Now().Format(time.RFC3339Nano))
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-done
		td.t.Errorf("e2e: tokend did not exit within %v of %v", wait, sig)
	}
	td.mu.Lock()
	defer td.mu.Unlock()
	td.cmd = nil
	return exitCode(td.waitErr)
}

// Get does a GET on the fetch API; it returns the status and body.
func (td *Tokend) Get(path string) (int, []byte) {
	td.t.Helper()
	return td.do(http.MethodGet, path)
}

// Post does a POST on the fetch API.
func (td *Tokend) Post(path string) (int, []byte) {
	td.t.Helper()
	return td.do(http.MethodPost, path)
}

func (td *Tokend) do(method, path string) (int, []byte) {
	td.t.Helper()
	req, err := http.NewRequest(method, "http://tokend"+path, nil)
	if err != nil {
		td.t.Fatal(err)
	}
	resp, err := td.http.Do(req)
	if err != nil {
		td.t.Fatalf("e2e: %s %s over the socket: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Token fetches grant's token as JSON; ok is false when the answer is not 200.
func (td *Tokend) Token(grant string) (tok api.TokenResponse, status int, body string) {
	td.t.Helper()
	status, b := td.Get("/v1/tokens/" + url.PathEscape(grant))
	if status == http.StatusOK {
		if err := json.Unmarshal(b, &tok); err != nil {
			td.t.Fatalf("e2e: token answer %q: %v", b, err)
		}
		td.NoLeak(tok.AccessToken)
	}
	return tok, status, string(b)
}

// MustToken fetches grant's token and fails the test unless the answer is 200.
func (td *Tokend) MustToken(grant string) api.TokenResponse {
	td.t.Helper()
	tok, status, body := td.Token(grant)
	if status != http.StatusOK {
		td.t.Fatalf("e2e: GET /v1/tokens/%s: %d %s", grant, status, body)
	}
	return tok
}

// WaitToken waits until grant's token is served and returns it.
func (td *Tokend) WaitToken(grant string, timeout time.Duration) api.TokenResponse {
	td.t.Helper()
	var tok api.TokenResponse
	eventually(td.t, timeout, 100*time.Millisecond, "token "+grant+" served", func() error {
		t, status, body := td.Token(grant)
		if status != http.StatusOK {
			return fmt.Errorf("%d %s", status, body)
		}
		tok = t
		return nil
	})
	return tok
}

// RawToken fetches grant's token with ?format=raw.
func (td *Tokend) RawToken(grant string) string {
	td.t.Helper()
	status, b := td.Get("/v1/tokens/" + url.PathEscape(grant) + "?format=raw")
	if status != http.StatusOK {
		td.t.Fatalf("e2e: GET /v1/tokens/%s?format=raw: %d %s", grant, status, b)
	}
	return strings.TrimSpace(string(b))
}

// Status returns GET /v1/tokens/{grant}/status.
func (td *Tokend) Status(grant string) api.GrantStatus {
	td.t.Helper()
	status, b := td.Get("/v1/tokens/" + url.PathEscape(grant) + "/status")
	var st api.GrantStatus
	if status != http.StatusOK {
		td.t.Fatalf("e2e: GET /v1/tokens/%s/status: %d %s", grant, status, b)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		td.t.Fatalf("e2e: status answer %q: %v", b, err)
	}
	return st
}

// CLI runs `tokend ARGS... --socket SOCKET` to completion (60 s at most)
// and returns its stdout, stderr and exit code.
func (td *Tokend) CLI(args ...string) (stdout, stderr string, code int) {
	td.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tokendBin, append(args, "--socket", td.Setup.Socket)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		td.t.Fatalf("e2e: tokend %v: no exit in 60s", args)
	}
	if err != nil && exitCode(err) < 0 {
		td.t.Fatalf("e2e: tokend %v: %v", args, err)
	}
	return out.String(), errb.String(), exitCode(err)
}

// MustCLI runs the CLI and fails the test unless it exits 0.
func (td *Tokend) MustCLI(args ...string) string {
	td.t.Helper()
	out, errs, code := td.CLI(args...)
	if code != 0 {
		td.t.Fatalf("e2e: tokend %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// CLIProcess is a CLI command whose output is read while it runs (tokend
// authorize may wait for the authorization to finish).
type CLIProcess struct {
	*testutil.Proc
	t    testing.TB
	out  *testutil.SyncBuffer
	errb *testutil.SyncBuffer
}

// StartCLI starts `tokend ARGS... --socket SOCKET`; it is killed on cleanup.
func (td *Tokend) StartCLI(args ...string) *CLIProcess {
	td.t.Helper()
	return startCLIEnv(td, nil, args...)
}

// startCLIEnv is StartCLI with exactly the environment env (nil: this
// process's).
func startCLIEnv(td *Tokend, env []string, args ...string) *CLIProcess {
	td.t.Helper()
	cmd := exec.Command(tokendBin, append(args, "--socket", td.Setup.Socket)...)
	cmd.Env = env
	p := &CLIProcess{t: td.t, out: &testutil.SyncBuffer{}, errb: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.errb
	p.Proc = testutil.StartProc(td.t, cmd)
	return p
}

// WaitOutput waits until stdout matches re and returns the first match's
// submatches.
func (p *CLIProcess) WaitOutput(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		select {
		case <-p.Done():
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			p.t.Fatalf("e2e: tokend %v exited (%v) without printing %v\nstdout: %s\nstderr: %s",
				p.Cmd.Args[1:], p.Err(), re, p.out.String(), p.errb.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("e2e: tokend %v printed no %v in %v\nstdout: %s\nstderr: %s",
				p.Cmd.Args[1:], re, timeout, p.out.String(), p.errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Wait waits for the command to exit and returns its exit code.
func (p *CLIProcess) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.Done():
		return exitCode(p.Err())
	case <-time.After(timeout):
		p.t.Fatalf("e2e: tokend %v did not exit in %v\nstdout: %s\nstderr: %s", p.Cmd.Args[1:], timeout, p.out.String(), p.errb.String())
		return -1
	}
}

// Output returns stdout so far.
func (p *CLIProcess) Output() string { return p.out.String() }

// Authorize runs `tokend authorize GRANT` and returns the start URL it
// prints: the one-time page on the callback listener that binds the
// authorization to a browser and redirects to the provider.
func (td *Tokend) Authorize(grant string) (string, *CLIProcess) {
	td.t.Helper()
	p := td.StartCLI("authorize", grant)
	re := regexp.MustCompile(regexp.QuoteMeta("http://"+td.Setup.Callback+"/start/") + `[A-Za-z0-9_-]+`)
	return p.WaitOutput(re, 20*time.Second)[0], p
}

// Metrics fetches a path on the metrics listener.
func (td *Tokend) Metrics(path string) (int, string) {
	td.t.Helper()
	resp, err := http.Get("http://" + td.Setup.Metrics + path)
	if err != nil {
		td.t.Fatalf("e2e: GET %s on the metrics listener: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// callbackGet requests rawURL on the callback listener with a fresh client
// (no cookies) and returns the status.
func callbackGet(t testing.TB, rawURL string) int {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatalf("e2e: GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// socketGone reports whether the socket file was removed.
func socketGone(path string) bool {
	_, err := os.Stat(path)
	return os.IsNotExist(err)
}
