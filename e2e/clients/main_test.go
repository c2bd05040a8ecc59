package clients

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

var (
	// tokendBin is built once by TestMain, in a directory every user may
	// enter, so that other users can run it.
	tokendBin string
	buildErr  error
)

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithTokend(m, "clients", false, &tokendBin, &buildErr))
}

// uidNobody runs the non-reader's commands.
const uidNobody = 65534

// Token lifetime at the provider: short, so that a test sees a rotation
// (tokend refreshes at half life, and the old token expires) in seconds.
const accessTTL = 4 * time.Second

// env is one tokend serve process and its provider. Grants are readable by
// root only (the test's user): uid 65534 is the non-reader.
type env struct {
	t      *testing.T
	dir    string // 0755
	sock   string
	prov   *devprovider.Server
	client *api.Client
	logs   *testutil.SyncBuffer
}

// newEnv starts tokend with the grants given (YAML under grants:, each
// using client "app"; the test's own user reads them as root).
func newEnv(t *testing.T, grants string) *env {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if os.Geteuid() != 0 {
		t.Skip("clients: these tests run the helpers as another user too; they need root")
	}
	dir := testutil.SharedDir(t)
	e := &env{t: t, dir: dir, logs: &testutil.SyncBuffer{}}
	state, run := filepath.Join(dir, "state"), filepath.Join(dir, "run")
	for _, d := range []struct {
		p string
		m os.FileMode
	}{{state, 0o700}, {run, 0o755}} {
		if err := os.Mkdir(d.p, d.m); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.p, d.m); err != nil {
			t.Fatal(err)
		}
	}
	e.sock = filepath.Join(run, "tokend.sock")
	secret := "client-secret-" + rand.Text()
	writeFile(t, filepath.Join(dir, "app.secret"), secret, 0o600)
	e.prov = devprovider.New(devprovider.Options{
		AccessTTL: accessTTL,
		Clients:   []devprovider.Client{{ID: "app", Secret: secret, AuthMethod: "client_secret_basic"}},
	})
	t.Cleanup(e.prov.Close)
	cfg := testutil.TokendConfig{
		Store:    []string{"path: " + filepath.Join(state, "tokend.db")},
		Socket:   e.sock,
		Listen:   []string{`socket_mode: "0666"`},
		Callback: "off",
		Metrics:  "off",
		Refresh:  []string{`schedule: "@every 1s"`, "fraction: 0.5", "jitter: 0.01", "min_remaining: 1s"},
		Provider: "test", Issuer: e.prov.URL(),
		Clients: "  app:\n    provider: test\n    client_id: app\n    client_secret_file: " + filepath.Join(dir, "app.secret") + "\n",
		Grants:  grants,
	}
	cfgPath := cfg.Write(t, filepath.Join(dir, "config.yaml"))

	cmd := exec.Command(tokendBin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("tokend serve did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("tokend config:\n%s\ntokend log:\n%s", cfg, e.logs.String())
		}
	})
	e.client = api.NewClient(e.sock)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("tokend serve exited: %v\n%s", err, e.logs.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := e.client.List(ctx)
		cancel()
		if err == nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend serve did not answer on %s within 20s: %v\n%s", e.sock, err, e.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// token is the grant's current token as root fetches it.
func (e *env) token(name string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := e.client.RawToken(ctx, name)
	if err != nil {
		e.t.Fatalf("fetch %s: %v", name, err)
	}
	return tok
}

// awaitRotation waits until tokend serves a token of grant name other than
// old and the provider no longer accepts old (it expired): from then on,
// only a client that asks tokend again gets in.
func (e *env) awaitRotation(name, old string) string {
	e.t.Helper()
	deadline := time.Now().Add(4*accessTTL + 10*time.Second)
	for {
		cur := e.token(name)
		if cur != old && !e.prov.Valid(old) {
			return cur
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no rotation of %s: the old token is still served or valid after %s", name, 4*accessTTL+10*time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// result is one run of a program.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("%s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runCmd runs cmd to its end (at most a minute) and returns what it did.
// With uid > 0 it runs as that user.
func runCmd(t *testing.T, uid uint32, stdin string, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if uid > 0 {
		testutil.AsUser(cmd, uid)
	}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	timer := time.AfterFunc(time.Minute, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	err := cmd.Run()
	r := result{args: cmd.Args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", strings.Join(cmd.Args, " "), err)
	}
	return r
}

// tokend runs the built tokend with args against e's socket.
func (e *env) tokend(uid uint32, stdin string, args ...string) result {
	e.t.Helper()
	cmd := exec.Command(tokendBin, args...)
	cmd.Env = append(os.Environ(), "TOKEND_SOCKET="+e.sock)
	return runCmd(e.t, uid, stdin, cmd)
}
