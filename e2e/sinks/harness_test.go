package sinks

import (
	"context"
	"fmt"
	"net/http"
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

var tokendBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithTokend(m, "sinks", false, &tokendBin, nil))
}

const (
	clientID     = "sinks-client"
	clientSecret = "sinks-client-secret-0123456789"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test plays other users")
	}
}

func newProvider(t *testing.T, ttl time.Duration) *devprovider.Server {
	t.Helper()
	prov := devprovider.New(devprovider.Options{
		AccessTTL: ttl,
		Clients:   []devprovider.Client{{ID: clientID, Secret: clientSecret, AuthMethod: devprovider.AuthMethodBasic}},
	})
	t.Cleanup(prov.Close)
	return prov
}

// writeConfig writes tokend's configuration: one client_credentials grant
// "g" whose sinks are the YAML list items given (already indented).
func writeConfig(t *testing.T, dir, issuer, refresh, sinks string) string {
	t.Helper()
	secretFile := filepath.Join(dir, "client.secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`store:
  path: %s
listen:
  socket: %s
  callback: "off"
  metrics: "off"
refresh:
%s
log:
  level: debug
providers:
  p:
    issuer: %s
clients:
  c:
    provider: p
    client_id: %s
    client_secret_file: %s
grants:
  g:
    client: c
    type: client_credentials
    scopes: [read]
    sinks:
%s
`, filepath.Join(dir, "tokend.db"), filepath.Join(dir, "tokend.sock"), refresh, issuer, clientID, secretFile, sinks)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type proc struct {
	*testutil.Proc
	log *os.File
}

// start runs tokend serve and waits until its socket answers.
func start(t *testing.T, cfgPath, logPath string, ac *api.Client) *proc {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tokendBin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	t.Cleanup(func() { lf.Close() })
	p := &proc{Proc: testutil.StartProc(t, cmd), log: lf}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.Done():
			t.Fatalf("tokend exited during start-up: %v\n%s", p.Err(), readTail(logPath))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := ac.List(ctx)
		cancel()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend's socket did not answer within 20 s: %v\n%s", err, readTail(logPath))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	p.log.Close()
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitFor polls cond (another process's doing) until it holds or 30 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sinkDir makes a root-owned 0755 directory for sinks.
func sinkDir(t *testing.T) string {
	dir := filepath.Join(testutil.SharedDir(t), "sinks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

var _ = http.StatusOK
