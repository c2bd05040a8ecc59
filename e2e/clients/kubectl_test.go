package clients

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// kubeAPI answers GET /api with a minimal APIVersions, only with a bearer
// token the provider accepts now, and records the tokens it accepted.
type kubeAPI struct {
	mu     sync.Mutex
	tokens []string
}

func (k *kubeAPI) handler(e *env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !e.prov.Valid(tok) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`)
			return
		}
		k.mu.Lock()
		k.tokens = append(k.tokens, tok)
		k.mu.Unlock()
		if r.URL.Path != "/api" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1:6443"}]}`)
	})
}

func (k *kubeAPI) last() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.tokens) == 0 {
		return ""
	}
	return k.tokens[len(k.tokens)-1]
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: @SERVER@
    certificate-authority-data: @CADATA@
users:
- name: v1
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: @TOKEND@
      args: [credential, kubectl, kube]
      env: [{name: TOKEND_SOCKET, value: @SOCKET@}]
      interactiveMode: Never
      provideClusterInfo: false
- name: v1beta1
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: @TOKEND@
      args: [credential, kubectl, kube]
      env: [{name: TOKEND_SOCKET, value: @SOCKET@}]
      interactiveMode: Never
contexts:
- name: v1
  context: {cluster: test, user: v1}
- name: v1beta1
  context: {cluster: test, user: v1beta1}
current-context: v1
`

// TestKubectlExecPlugin: kubectl get --raw /api with tokend credential
// kubectl as its exec plugin, in both apiVersions (kubectl refuses an
// answer in another version than it asked for), before and after a
// rotation; the non-reader's kubectl fails with the helper's refusal.
func TestKubectlExecPlugin(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not installed (scripts/test-deps installs Debian's kubernetes-client): %v", err)
	}
	// kubectl before 1.22 speaks only v1beta1 (Debian's kubernetes-client
	// is 1.20).
	contexts := []string{"v1", "v1beta1"}
	if minor := kubectlMinor(t, kubectl); minor < 22 {
		t.Logf("kubectl 1.%d: testing client.authentication.k8s.io/v1beta1 only", minor)
		contexts = []string{"v1beta1"}
	}
	api := &kubeAPI{}
	var e *env
	// kubectl 1.32 did not run the exec plugin at all for a plain-http
	// server here (its requests went out without credentials): serve TLS.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.handler(e).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	e = newEnv(t, "  kube:\n    client: app\n    type: client_credentials\n")

	cfg := filepath.Join(e.dir, "kubeconfig")
	ca := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	writeFile(t, cfg, strings.NewReplacer("@SERVER@", srv.URL, "@CADATA@", ca, "@TOKEND@", tokendBin, "@SOCKET@", e.sock).Replace(kubeconfig), 0o644)
	home := filepath.Join(e.dir, "kubehome")
	if err := os.Mkdir(home, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o1777); err != nil {
		t.Fatal(err)
	}
	run := func(uid uint32, context string) result {
		cmd := exec.Command(kubectl, "--kubeconfig", cfg, "--context", context, "--request-timeout", "30s", "get", "--raw", "/api")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "KUBECACHEDIR=" + filepath.Join(home, fmt.Sprint(uid))}
		return runCmd(t, uid, "", cmd)
	}

	first := e.token("kube")
	for _, ctx := range contexts {
		r := run(0, ctx)
		if r.code != 0 || !strings.Contains(r.stdout, `"kind":"APIVersions"`) {
			t.Fatalf("kubectl (%s): %s", ctx, r)
		}
	}
	before := api.last()
	e.awaitRotation("kube", first)
	for _, ctx := range contexts {
		r := run(0, ctx)
		if r.code != 0 || !strings.Contains(r.stdout, `"kind":"APIVersions"`) {
			t.Fatalf("kubectl (%s) after the rotation: %s", ctx, r)
		}
	}
	if after := api.last(); after == before || after == first {
		t.Errorf("kubectl sent the same token after the rotation")
	}

	// The helper as kubectl runs it, in each version.
	for _, v := range []string{"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"} {
		cmd := exec.Command(tokendBin, "credential", "kubectl", "kube")
		cmd.Env = []string{"TOKEND_SOCKET=" + e.sock, `KUBERNETES_EXEC_INFO={"kind":"ExecCredential","apiVersion":"` + v + `","spec":{"interactive":false}}`}
		r := runCmd(t, 0, "", cmd)
		if r.code != 0 || !strings.HasPrefix(r.stdout, `{"apiVersion":"`+v+`","kind":"ExecCredential","status":{"token":"`) || !strings.Contains(r.stdout, `"expirationTimestamp":"`) {
			t.Errorf("ExecCredential %s: %s", v, r)
		}
	}

	// The non-reader: the helper says why and exits 4; kubectl fails.
	r := e.tokend(uidNobody, "", "credential", "kubectl", "kube")
	if r.code != 4 || r.stdout != "" || !strings.Contains(r.stderr, "not allowed to read this grant") {
		t.Errorf("helper as the non-reader: %s", r)
	}
	r = run(uidNobody, contexts[0])
	if r.code == 0 || strings.Contains(r.stdout, "APIVersions") || !strings.Contains(r.stderr, "not allowed to read this grant") {
		t.Errorf("kubectl as the non-reader: %s", r)
	}
}

// kubectlMinor is the minor version of the kubectl client.
func kubectlMinor(t *testing.T, kubectl string) int {
	t.Helper()
	out, err := exec.Command(kubectl, "version", "--client", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	var v struct {
		ClientVersion struct {
			Minor string `json:"minor"`
		} `json:"clientVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimRight(v.ClientVersion.Minor, "+"))
	if err != nil {
		t.Fatalf("kubectl version: minor %q", v.ClientVersion.Minor)
	}
	return n
}
