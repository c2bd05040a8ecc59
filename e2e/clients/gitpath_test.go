package clients

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// credentialLog records every request a server received with Basic
// credentials: its path, as the server decoded it, and the password.
type credentialLog struct {
	mu   sync.Mutex
	sent []string // "path password"
}

func (l *credentialLog) record(r *http.Request) {
	if _, pass, ok := r.BasicAuth(); ok {
		l.mu.Lock()
		l.sent = append(l.sent, r.URL.Path+" "+pass)
		l.mu.Unlock()
	}
}

func (l *credentialLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sent
	l.sent = nil
	return s
}

// TestGitPathPrefixNotEscaped: a grant whose match prefix is one tenant's
// path (/team-a) on a host that serves several. Real git given URLs that
// leave /team-a through dot segments (percent-encoded in any case, or
// literal) or an encoded slash sends team-a's token nowhere; the helper
// asked directly (git's and docker's protocols, as a script would) answers
// nothing for the same paths, while /team-a itself still gets its token.
func TestGitPathPrefixNotEscaped(t *testing.T) {
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		t.Fatalf("git http-backend is not installed (Debian package git): %v", err)
	}
	root := testutil.SharedDir(t)
	srvRoot := filepath.Join(root, "srv")
	var e *env
	// The git server is made once the front's URL is known; requests come
	// from git processes, which give the race detector no ordering.
	var gs atomic.Pointer[gitServer]
	log := &credentialLog{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.record(r)
		gs.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	e = newEnv(t, fmt.Sprintf(`  team-a:
    client: app
    type: client_credentials
    match: ["%s/team-a"]
`, front.URL))
	gs.Store(newGitServer(t, e, srvRoot, "oauth2"))
	for _, repo := range []string{"team-a/app.git", "other-team/app.git", "team-ab/app.git"} {
		mustRun(t, e.git(0, root, "init", "-q", "--bare", "-b", "main", filepath.Join(srvRoot, repo)))
	}

	// The prefix itself: git gets team-a's token.
	mustRun(t, e.git(0, root, "ls-remote", front.URL+"/team-a/app.git"))
	if sent := log.take(); len(sent) == 0 || !strings.HasPrefix(sent[0], "/team-a/app.git/") {
		t.Fatalf("git sent no credentials for /team-a/app.git: %q", sent)
	}

	for _, u := range []string{
		front.URL + "/team-a/%2e%2e/other-team/app.git",
		front.URL + "/team-a/%2E%2e/other-team/app.git",
		front.URL + "/team-a/../other-team/app.git",
		front.URL + "/team-a%2f..%2fother-team/app.git",
		front.URL + "/team-ab/app.git",
	} {
		r := e.git(0, root, "ls-remote", u)
		if r.code == 0 {
			t.Errorf("git ls-remote %s succeeded: %s", u, r)
		}
		if sent := log.take(); len(sent) > 0 {
			t.Errorf("git ls-remote %s: the server received credentials: %q", u, sent)
		}
	}

	// The helper asked directly, as git's protocol and docker's.
	host := strings.TrimPrefix(front.URL, "http://")
	for _, path := range []string{
		"team-a/../other-team/app.git",
		"team-a/%2e%2e/other-team/app.git",
		"team-a/%2E%2E/other-team",
		"team-a/..",
		"team-a%2F..%2Fother-team/app.git",
		"team-a/..%5Cother-team/app.git",
	} {
		r := e.tokend(0, "protocol=http\nhost="+host+"\npath="+path+"\n\n", "credential", "git", "get")
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no grant matches") {
			t.Errorf("credential git get, path=%s: %s", path, r)
		}
		r = e.tokend(0, "url="+front.URL+"/"+path+"\n\n", "credential", "git", "get")
		if r.code != 0 || r.stdout != "" {
			t.Errorf("credential git get, url=%s/%s: %s", front.URL, path, r)
		}
		r = e.tokend(0, front.URL+"/"+path+"\n", "credential", "docker", "get")
		if r.code == 0 || strings.TrimSpace(r.stdout) != "credentials not found in native keychain" {
			t.Errorf("credential docker get %s/%s: %s", front.URL, path, r)
		}
	}
	r := e.tokend(0, "protocol=http\nhost="+host+"\npath=team-a/app.git\n\n", "credential", "git", "get")
	if !e.prov.Valid(gitAttr(r.stdout, "password")) {
		t.Errorf("credential git get for team-a itself: %s", r)
	}
}
