package clients

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// gitServer serves the repositories under root with git http-backend (CGI)
// and lets a request through only with Basic auth whose username is
// wantUser and whose password is a token the provider accepts now.
type gitServer struct {
	http.Handler
	mu        sync.Mutex
	passwords []string // every password accepted, in order
	refused   int
}

func newGitServer(t *testing.T, e *env, root, wantUser string) *gitServer {
	t.Helper()
	gs := &gitServer{}
	backend := &cgi.Handler{
		Path: gitHTTPBackend,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	gs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != wantUser || !e.prov.Valid(pass) {
			gs.mu.Lock()
			gs.refused++
			gs.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Basic realm="tokend-test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		gs.mu.Lock()
		if n := len(gs.passwords); n == 0 || gs.passwords[n-1] != pass {
			gs.passwords = append(gs.passwords, pass)
		}
		gs.mu.Unlock()
		backend.ServeHTTP(w, r)
	})
	return gs
}

func (gs *gitServer) seen() []string {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]string(nil), gs.passwords...)
}

// git runs git with no user or system configuration, no prompts, and
// tokend as its only credential helper.
func (e *env) git(uid uint32, dir string, args ...string) result {
	e.t.Helper()
	home := filepath.Join(dir, ".home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		e.t.Fatal(err)
	}
	all := append([]string{
		"-c", "credential.helper=",
		"-c", "credential.helper=!" + tokendBin + " credential git",
		// git sends the path only when asked to; match prefixes
		// with a path need it.
		"-c", "credential.useHttpPath=true",
	}, args...)
	cmd := exec.Command("git", all...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false",
		"TOKEND_SOCKET=" + e.sock,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
	}
	return runCmd(e.t, uid, "", cmd)
}

// TestGitCloneFetchAcrossRotation: git clone, then — once tokend has
// rotated the token and the old one has expired — git fetch, both through
// `tokend credential git` against a server that accepts only a token the
// provider accepts now. A user who may not read the grant is told so and
// gets nothing.
func TestGitCloneFetchAcrossRotation(t *testing.T) {
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		t.Fatalf("git http-backend is not installed (Debian package git): %v", err)
	}
	root := testutil.SharedDir(t)
	srvRoot := filepath.Join(root, "srv")
	// The server's URL goes into tokend's configuration: start the
	// server first, on a handler that reaches e once it exists.
	var e *env
	var gs *gitServer
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { gs.ServeHTTP(w, r) })
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	e = newEnv(t, fmt.Sprintf(`  repo:
    client: app
    type: client_credentials
    match: ["%s/team/"]
  other:
    client: app
    type: client_credentials
    match: ["%s/"]
    match_username: not-this-one
`, front.URL, front.URL))
	gs = newGitServer(t, e, srvRoot, "oauth2")

	// A bare repository with one commit, made locally.
	work := filepath.Join(root, "work")
	mustRun(t, e.git(0, root, "init", "-q", "--bare", "-b", "main", filepath.Join(srvRoot, "team", "r.git")))
	mustRun(t, e.git(0, root, "init", "-q", "-b", "main", work))
	writeFile(t, filepath.Join(work, "a.txt"), "one\n", 0o644)
	mustRun(t, e.git(0, work, "add", "a.txt"))
	mustRun(t, e.git(0, work, "commit", "-q", "-m", "one"))
	mustRun(t, e.git(0, work, "push", "-q", filepath.Join(srvRoot, "team", "r.git"), "main"))

	clone := filepath.Join(root, "clone")
	url := front.URL + "/team/r.git"
	first := e.token("repo")
	mustRun(t, e.git(0, root, "clone", "-q", url, clone))
	if got, err := os.ReadFile(filepath.Join(clone, "a.txt")); err != nil || string(got) != "one\n" {
		t.Fatalf("clone: a.txt = %q, %v", got, err)
	}

	// A new commit on the server, fetched after the rotation.
	writeFile(t, filepath.Join(work, "a.txt"), "two\n", 0o644)
	mustRun(t, e.git(0, work, "commit", "-q", "-am", "two"))
	mustRun(t, e.git(0, work, "push", "-q", filepath.Join(srvRoot, "team", "r.git"), "main"))
	e.awaitRotation("repo", first)
	mustRun(t, e.git(0, clone, "fetch", "-q", "origin"))
	log := mustRun(t, e.git(0, clone, "log", "--format=%s", "origin/main"))
	if strings.Fields(log.stdout)[0] != "two" {
		t.Errorf("after fetch, origin/main is at %q, want the commit two", log.stdout)
	}
	seen := gs.seen()
	if len(seen) < 2 || seen[0] == seen[len(seen)-1] {
		t.Errorf("the server saw %d distinct passwords in a row; want the token before and after the rotation", len(seen))
	}
	if last := seen[len(seen)-1]; last == first {
		t.Errorf("fetch used the first token after it expired")
	}

	// The helper as git runs it, as the non-reader: no password, and a
	// message saying why.
	r := e.tokend(uidNobody, "protocol=http\nhost="+strings.TrimPrefix(front.URL, "http://")+"\npath=team/r.git\n\n", "credential", "git", "get")
	if r.code != 0 || strings.Contains(r.stdout, "password") || !strings.Contains(r.stderr, "no grant you may read") {
		t.Errorf("non-reader: %s", r)
	}
	// And real git as the non-reader: refused, with the helper's message.
	other := filepath.Join(root, "nobody")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, uidNobody, uidNobody); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(other, ".home"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(other, ".home"), uidNobody, uidNobody); err != nil {
		t.Fatal(err)
	}
	r = e.git(uidNobody, other, "clone", "-q", url, filepath.Join(other, "c"))
	if r.code == 0 || !strings.Contains(r.stderr, "no grant you may read") {
		t.Errorf("git clone as the non-reader: %s", r)
	}
	for _, p := range gs.seen() {
		if strings.Contains(r.stderr+r.stdout, p) {
			t.Errorf("the non-reader's output holds a token")
		}
	}

	// The helper's own protocol: store and erase are accepted and
	// ignored; the longest prefix wins, with its username.
	for _, action := range []string{"store", "erase"} {
		if r := e.tokend(0, "protocol=http\nhost=x\nusername=u\npassword=p\n\n", "credential", "git", action); r.code != 0 || r.stdout != "" {
			t.Errorf("%s: %s", action, r)
		}
	}
	r = e.tokend(0, "protocol=http\nhost="+strings.TrimPrefix(front.URL, "http://")+"\npath=elsewhere.git\n\n", "credential", "git", "get")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "username=not-this-one\npassword=") || !e.prov.Valid(gitAttr(r.stdout, "password")) {
		t.Errorf("shorter prefix: %s", r)
	}
}

func mustRun(t *testing.T, r result) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	return r
}

// gitAttr is the value of key in a credential helper's answer.
func gitAttr(answer, key string) string {
	for line := range strings.Lines(answer) {
		if v, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), key+"="); ok {
			return v
		}
	}
	return ""
}
