package clients

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDockerCredentialHelper drives `tokend credential docker` by the
// docker-credential-helpers contract: the action as the argument, the
// server URL (get, erase) or a JSON credential (store) on stdin, JSON or
// the "not found" message on stdout.
func TestDockerCredentialHelper(t *testing.T) {
	e := newEnv(t, `  reg:
    client: app
    type: client_credentials
    match: [registry.example.com:5000]
    match_username: tokend
  hub:
    client: app
    type: client_credentials
    match: ["https://index.docker.io/v1/"]
`)
	for _, server := range []string{"registry.example.com:5000", "https://registry.example.com:5000", "https://registry.example.com:5000/v2/"} {
		r := e.tokend(0, server+"\n", "credential", "docker", "get")
		var got struct{ ServerURL, Username, Secret string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil {
			t.Fatalf("get %s: %s", server, r)
		}
		if got.ServerURL != server || got.Username != "tokend" || !e.prov.Valid(got.Secret) {
			t.Errorf("get %s: ServerURL %q Username %q, secret valid %v", server, got.ServerURL, got.Username, e.prov.Valid(got.Secret))
		}
	}
	r := e.tokend(0, "https://index.docker.io/v1/", "credential", "docker", "get")
	if r.code != 0 || !strings.Contains(r.stdout, `"Username":"oauth2"`) {
		t.Errorf("get hub: %s", r)
	}

	// As docker runs it: docker-credential-tokend, a link to tokend.
	link := filepath.Join(e.dir, "docker-credential-tokend")
	if err := os.Symlink(tokendBin, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "get")
	cmd.Env = []string{"TOKEND_SOCKET=" + e.sock}
	r = runCmd(t, 0, "registry.example.com:5000", cmd)
	if r.code != 0 || !strings.Contains(r.stdout, `"Username":"tokend"`) {
		t.Errorf("docker-credential-tokend get: %s", r)
	}

	r = e.tokend(0, "", "credential", "docker", "list")
	var list map[string]string
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 2 ||
		list["registry.example.com:5000"] != "tokend" || list["https://index.docker.io/v1/"] != "oauth2" {
		t.Errorf("list: %s", r)
	}

	// Not covered: the protocol's not-found answer (docker goes on without
	// credentials).
	r = e.tokend(0, "other.example.com\n", "credential", "docker", "get")
	if r.code != 1 || strings.TrimSpace(r.stdout) != "credentials not found in native keychain" {
		t.Errorf("get unknown: %s", r)
	}
	// store and erase are refused, saying why.
	r = e.tokend(0, `{"ServerURL":"registry.example.com:5000","Username":"u","Secret":"s"}`, "credential", "docker", "store")
	if r.code != 1 || !strings.Contains(r.stdout, "store is refused") || !strings.Contains(r.stderr, "store is refused") {
		t.Errorf("store: %s", r)
	}
	r = e.tokend(0, "registry.example.com:5000\n", "credential", "docker", "erase")
	if r.code != 1 || !strings.Contains(r.stdout, "erase is refused") {
		t.Errorf("erase: %s", r)
	}

	// The non-reader: not found, with the reason on stderr; list is empty.
	r = e.tokend(uidNobody, "registry.example.com:5000\n", "credential", "docker", "get")
	if r.code != 1 || strings.TrimSpace(r.stdout) != "credentials not found in native keychain" || !strings.Contains(r.stderr, "no grant you may read") {
		t.Errorf("get as the non-reader: %s", r)
	}
	r = e.tokend(uidNobody, "", "credential", "docker", "list")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "{}" {
		t.Errorf("list as the non-reader: %s", r)
	}
}

// TestExec: tokend exec puts each token in its variable, runs the command
// without a shell, and is that command: its exit status, and a signal
// sent to tokend exec reaches it.
func TestExec(t *testing.T) {
	e := newEnv(t, `  kube:
    client: app
    type: client_credentials
  my-api.v2:
    client: app
    type: client_credentials
`)
	r := e.tokend(0, "", "exec", "kube", "my-api.v2", "my-api.v2=OTHER", "--", "sh", "-c", `printf '%s\n%s\n%s\n' "$TOKEND_KUBE_TOKEN" "$TOKEND_MY_API_V2_TOKEN" "$OTHER"; exit 7`)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 7 || len(lines) != 3 {
		t.Fatalf("exec: %s", r)
	}
	for i, tok := range lines {
		if !e.prov.Valid(tok) {
			t.Errorf("variable %d holds %q, not a valid token", i, tok)
		}
	}
	// No shell between: the arguments arrive as given.
	r = e.tokend(0, "", "exec", "kube", "--", "printf", "%s|", "a b", "$HOME", "*")
	if r.code != 0 || r.stdout != "a b|$HOME|*|" {
		t.Errorf("argv: %s", r)
	}

	// A signal to tokend exec reaches the command.
	cmd := exec.Command(tokendBin, "exec", "kube", "--", "sh", "-c", `trap 'echo got-TERM; exit 42' TERM; echo ready; while :; do sleep 0.1; done`)
	cmd.Env = append(os.Environ(), "TOKEND_SOCKET="+e.sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	lineCh := make(chan string, 4)
	go func() {
		for sc.Scan() {
			lineCh <- sc.Text()
		}
		close(lineCh)
	}()
	select {
	case l := <-lineCh:
		if l != "ready" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the command did not start within 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	got := <-lineCh
	err = cmd.Wait()
	if got != "got-TERM" || cmd.ProcessState.ExitCode() != 42 {
		t.Errorf("after SIGTERM: line %q, exit %v", got, err)
	}

	// Usage and the non-reader.
	r = e.tokend(uidNobody, "", "exec", "kube", "--", "true")
	if r.code != 4 || !strings.Contains(r.stderr, "not allowed to read this grant") {
		t.Errorf("non-reader: %s", r)
	}
	for _, args := range [][]string{{"exec", "kube", "true"}, {"exec", "--", "true"}, {"exec", "kube=1X", "--", "true"}} {
		if r := e.tokend(0, "", args...); r.code != 2 {
			t.Errorf("usage error %q: %s", args, r)
		}
	}
	if r := e.tokend(0, "", "exec", "kube", "--", "/nonexistent/cmd"); r.code != 127 {
		t.Errorf("missing command: %s", r)
	}
}
