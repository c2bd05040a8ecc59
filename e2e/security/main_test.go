package security

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

var (
	// tokendBin is the binary built by TestMain, in a directory other users
	// may traverse so that they can run it.
	tokendBin string
	// buildErr says why the build failed; every test then fails with it.
	buildErr error
)

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithTokend(m, "security", false, &tokendBin, &buildErr))
}

// Users the clients run as. 65534 is nobody; 65533 need not exist: the
// kernel reports whatever uid the process has.
const (
	uidNobody = 65534
	uidOther  = 65533
)

// Exit codes of the command line (cmd/tokend).
const (
	exitOK        = 0
	exitForbidden = 4
)

// requireRoot skips tests that must start processes as other users.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("security: these tests run tokend as root and its clients as uid 65534/65533; they need root (euid 0)")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// env is one tokend serve process with its files and its provider.
type env struct {
	t        *testing.T
	dir      string // 0755: holds the socket dir, config and secret files
	sock     string
	store    string
	config   string
	callback string // host:port of the callback listener
	secret   string // the client secret of client "app"
	key      []byte // the store key (raw)
	keyText  string // the store key as written in its file
	prov     *devprovider.Server
	cmd      *exec.Cmd
	stderr   *testutil.SyncBuffer
	done     chan error
}

type envOpts struct {
	prov devprovider.Options
	// grants is the YAML of the grants: section, indented by two spaces;
	// the client is "app".
	grants string
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	// The socket's directory must be traversable by the clients.
	base := testutil.SharedDir(t)
	e := &env{t: t, dir: base, stderr: &testutil.SyncBuffer{}}
	state := filepath.Join(base, "state")
	run := filepath.Join(base, "run")
	mustMkdir(t, state, 0o700)
	mustMkdir(t, run, 0o755)
	e.store = filepath.Join(state, "tokend.db")
	e.sock = filepath.Join(run, "tokend.sock")
	e.secret = "client-secret-" + rand.Text()
	e.key = make([]byte, 32)
	_, _ = rand.Read(e.key)
	e.keyText = base64.StdEncoding.EncodeToString(e.key)
	mustWrite(t, filepath.Join(base, "app.secret"), e.secret+"\n")
	mustWrite(t, filepath.Join(base, "store.key"), e.keyText+"\n")

	po := o.prov
	po.Clients = append(po.Clients, devprovider.Client{ID: "app", Secret: e.secret, AuthMethod: "client_secret_basic"})
	e.prov = devprovider.New(po)
	t.Cleanup(e.prov.Close)

	e.callback = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	e.config = testutil.TokendConfig{
		Store:     []string{"path: " + e.store, "key_file: " + filepath.Join(base, "store.key")},
		Socket:    e.sock,
		Listen:    []string{`socket_mode: "0666"`},
		Callback:  e.callback,
		Metrics:   "off",
		Refresh:   []string{`schedule: "@every 15s"`},
		Operators: []string{"groups: []"},
		LogLevel:  "debug",
		Provider:  "test", Issuer: e.prov.URL(),
		Clients: fmt.Sprintf("  app:\n    provider: test\n    client_id: app\n    client_secret_file: %s\n    auth_method: client_secret_basic\n    redirect_uri: http://%s/callback\n",
			filepath.Join(base, "app.secret"), e.callback),
		Grants: o.grants,
	}.Write(t, filepath.Join(base, "config.yaml"))
	return e
}

// configWith returns e's configuration with old replaced by new, once; it
// fails the test when old is not in it.
func (e *env) configWith(old, new string) string {
	e.t.Helper()
	data, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		e.t.Fatalf("%s does not hold %q", e.config, old)
	}
	return strings.Replace(string(data), old, new, 1)
}

func mustMkdir(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs `tokend serve --config` and waits until root can list the
// grants over the socket.
func (e *env) start() {
	e.t.Helper()
	e.startCmd(exec.Command(tokendBin, "serve", "--config", e.config))
}

// startCmd starts cmd, which runs tokend serve with e's configuration, as
// e's daemon, and waits until root can list the grants over the socket.
func (e *env) startCmd(cmd *exec.Cmd) {
	t := e.t
	t.Helper()
	e.cmd = cmd
	e.cmd.Stdout = e.stderr
	e.cmd.Stderr = e.stderr
	e.cmd.Dir = "/"
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.done = make(chan error, 1)
	go func() { e.done <- e.cmd.Wait() }()
	t.Cleanup(e.stop)
	if exited, err := e.awaitServe(e.done, e.stderr); exited {
		t.Fatalf("tokend serve exited: %v\n%s", err, e.stderr.String())
	}
}

// awaitServe waits until a tokend serve process answers root's `tokend
// status` on e's socket (exited is false) or exits (exited is true, with
// the result of its Wait, which done delivers and gets back). After 20 s
// it fails the test, showing the process's output.
func (e *env) awaitServe(done chan error, output *testutil.SyncBuffer) (exited bool, err error) {
	t := e.t
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			return true, err
		default:
		}
		if r := e.run(0, "status"); r.code == exitOK {
			return false, nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend serve neither answered on %s nor exited within 20s\n%s", e.sock, output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (e *env) stop() {
	if e.cmd == nil || e.cmd.Process == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		e.done <- err
		if err != nil {
			e.t.Errorf("tokend serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		_ = e.cmd.Process.Kill()
		e.t.Error("tokend serve did not stop within 15s of SIGTERM")
	}
	if e.t.Failed() {
		e.t.Logf("tokend serve output:\n%s", e.stderr.String())
	}
	e.cmd = nil
}

// result is one command-line run.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("tokend %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// run runs the tokend client against e's socket as uid (0: root, as the
// test itself). The client gets the same number as gid and no
// supplementary groups.
func (e *env) run(uid uint32, args ...string) result {
	e.t.Helper()
	return e.runGroups(uid, nil, args...)
}

// runGroups is run as uid with supplementary groups.
func (e *env) runGroups(uid uint32, groups []uint32, args ...string) result {
	e.t.Helper()
	args = append(args, "--socket", e.sock, "--timeout", "20s")
	return runAsGroups(e.t, uid, groups, args...)
}

// runAs runs the tokend command line with args as uid (0: root, as the
// test itself), with the same number as gid and no supplementary groups.
func runAs(t *testing.T, uid uint32, args ...string) result {
	t.Helper()
	return runAsGroups(t, uid, nil, args...)
}

func runAsGroups(t *testing.T, uid uint32, groups []uint32, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := userCmd(ctx, uid, groups, tokendBin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("tokend %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("tokend %s did not finish within 30s", strings.Join(args, " "))
	}
	return r
}

// userCmd is name with args as uid (0 and no groups: as the test itself)
// with the same number as gid and exactly groups as supplementary groups,
// in / with a minimal environment: what a client run by another local user
// has.
func userCmd(ctx context.Context, uid uint32, groups []uint32, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	if uid != 0 || len(groups) > 0 {
		testutil.AsUser(cmd, uid, groups...)
	}
	return cmd
}

// urlIn returns the first line of s that is a URL.
func urlIn(s string) string {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") {
			return l
		}
	}
	return ""
}

// noRedirectBrowser is a browser (a cookie jar) that stops at every
// redirect, so that the test sees each hop of an authorization.
func noRedirectBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpGetSource is a minimal HTTP client for tests that need a request sent
// by another user: it GETs its argument without cookies or redirects and
// prints the status code and the Location header, a line each.
const httpGetSource = `package main

import (
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp.Body.Close()
	fmt.Printf("%d\n%s\n", resp.StatusCode, resp.Header.Get("Location"))
}
`

// buildHTTPGet builds httpGetSource next to tokendBin (where other users
// may run it), once.
var buildHTTPGet = sync.OnceValues(func() (string, error) {
	src, err := os.MkdirTemp("", "tokend-security-httpget-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module httpget\n\ngo 1.26\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(httpGetSource), 0o600); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(filepath.Dir(tokendBin), "httpget")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("security: building the httpget helper: %w\n%s", err, out)
	}
	return bin, nil
})

// httpGetTool is the path of the httpget helper.
func httpGetTool(t *testing.T) string {
	t.Helper()
	bin, err := buildHTTPGet()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// getAs GETs rawURL as uid (no cookies, no redirects followed) and returns
// the status and the Location header.
func getAs(t *testing.T, uid uint32, rawURL string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := userCmd(ctx, uid, nil, httpGetTool(t), rawURL)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GET as uid %d: %v", uid, err)
	}
	lines := strings.SplitN(strings.TrimRight(string(out), "\n"), "\n", 2)
	var code int
	if _, err := fmt.Sscanf(lines[0], "%d", &code); err != nil {
		t.Fatalf("GET as uid %d printed %q", uid, out)
	}
	if len(lines) < 2 {
		return code, ""
	}
	return code, lines[1]
}
