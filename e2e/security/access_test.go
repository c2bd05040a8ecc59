package security

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
)

const accessGrants = `  open:
    client: app
    type: client_credentials
    scopes: [read]
    readers: {uids: [65534]}
  secret:
    client: app
    type: client_credentials
    scopes: [admin]
    readers: {uids: [65533]}
`

// TestAccess runs the daemon as root and its clients as other users: each
// sees exactly the grants it may read, operator actions need root, and an
// unknown grant looks the same as a forbidden one.
func TestAccess(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov:   devprovider.Options{AccessTTL: time.Hour, RefreshForClientCredentials: true},
		grants: accessGrants,
	})
	e.start()

	t.Run("files", func(t *testing.T) {
		fi, err := os.Lstat(e.sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o666 {
			t.Errorf("socket %s: mode %v, want a socket with 0666 (listen.socket_mode)", e.sock, fi.Mode())
		}
		fi, err = os.Stat(e.store)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("store %s: mode %04o, want 0600", e.store, fi.Mode().Perm())
		}
	})

	// nobody reads "open".
	r := e.run(uidNobody, "token", "open")
	if r.code != exitOK {
		t.Fatalf("nobody fetching open: %v", r)
	}
	tok := strings.TrimSpace(r.stdout)
	if !e.prov.Valid(tok) {
		t.Fatalf("nobody got %q for open, not an access token the provider issued", tok)
	}

	// nobody may not read "secret", and an unknown grant answers the same.
	forbidden := e.run(uidNobody, "token", "secret")
	if forbidden.code != exitForbidden {
		t.Errorf("nobody fetching secret: want exit %d, got %v", exitForbidden, forbidden)
	}
	if !strings.Contains(forbidden.stderr, "not allowed") && !strings.Contains(forbidden.stderr, "forbidden") {
		t.Errorf("nobody fetching secret: stderr does not say it is not allowed: %q", forbidden.stderr)
	}
	if forbidden.stdout != "" {
		t.Errorf("nobody fetching secret printed something: %q", forbidden.stdout)
	}
	unknown := e.run(uidNobody, "token", "no-such-grant")
	if unknown.code != forbidden.code || strings.ReplaceAll(unknown.stderr, "no-such-grant", "secret") != forbidden.stderr {
		t.Errorf("an unknown grant is told apart from a forbidden one (existence leak):\nunknown: %v\nsecret:  %v", unknown, forbidden)
	}
	// The same on the status route.
	sf := e.run(uidNobody, "status", "secret")
	su := e.run(uidNobody, "status", "no-such-grant")
	if sf.code != exitForbidden || su.code != sf.code || strings.ReplaceAll(su.stderr, "no-such-grant", "secret") != sf.stderr {
		t.Errorf("status of a forbidden and an unknown grant differ or are not 403:\nsecret:  %v\nunknown: %v", sf, su)
	}
	// Root, an operator, is told the truth.
	if r := e.run(0, "token", "no-such-grant"); r.code != 5 {
		t.Errorf("root fetching an unknown grant: want exit 5 (404), got %v", r)
	}

	// uid 65533 reads "secret" and not "open".
	if r := e.run(uidOther, "token", "secret"); r.code != exitOK || !e.prov.Valid(strings.TrimSpace(r.stdout)) {
		t.Errorf("uid %d fetching secret: %v", uidOther, r)
	}
	if r := e.run(uidOther, "token", "open"); r.code != exitForbidden {
		t.Errorf("uid %d fetching open: want exit %d, got %v", uidOther, exitForbidden, r)
	}

	// nobody's listing names only "open": not even the name "secret".
	for _, args := range [][]string{{"status"}, {"status", "--json"}} {
		r := e.run(uidNobody, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "open") {
			t.Errorf("nobody: tokend %s: want exit 0 listing open, got %v", strings.Join(args, " "), r)
		}
		if strings.Contains(r.stdout+r.stderr, "secret") {
			t.Errorf("nobody: tokend %s names the grant secret:\n%v", strings.Join(args, " "), r)
		}
	}
	var list api.TokenList
	if r := e.run(uidNobody, "status", "--json"); json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Grants) != 1 || list.Grants[0].Name != "open" {
		t.Errorf("nobody's status --json: want exactly [open], got %v", r)
	}
	if r := e.run(0, "status", "--json"); !strings.Contains(r.stdout, `"secret"`) || !strings.Contains(r.stdout, `"open"`) {
		t.Errorf("root's status lacks a grant: %v", r)
	}

	// Operator actions: forbidden to nobody (even on the grant it reads),
	// and they change nothing at the provider.
	before := e.prov.Stats()
	for _, action := range []string{"refresh", "revoke", "authorize"} {
		for _, name := range []string{"open", "secret", "no-such-grant"} {
			r := e.run(uidNobody, action, name)
			if r.code != exitForbidden || !strings.Contains(r.stderr, "forbidden") && !strings.Contains(r.stderr, "not allowed") && !strings.Contains(r.stderr, "operator") {
				t.Errorf("nobody: tokend %s %s: want exit %d (forbidden), got %v", action, name, exitForbidden, r)
			}
		}
	}
	if after := e.prov.Stats(); after.TokenRequests != before.TokenRequests || after.Revocations != before.Revocations {
		t.Errorf("forbidden operator actions reached the provider: before %+v, after %+v", before, after)
	}
	if r := e.run(uidNobody, "token", "open"); r.code != exitOK || strings.TrimSpace(r.stdout) != tok {
		t.Errorf("after nobody's forbidden actions, open changed: %v (want the same token)", r)
	}

	// Root may do all of them.
	if r := e.run(0, "refresh", "open"); r.code != exitOK {
		t.Errorf("root: tokend refresh open: %v", r)
	}
	// A client_credentials grant is refreshed by obtaining a new token.
	if s := e.prov.Stats(); s.TokenRequests != before.TokenRequests+1 {
		t.Errorf("root's refresh did not reach the token endpoint once: requests %d → %d", before.TokenRequests, s.TokenRequests)
	}
	if r := e.run(0, "revoke", "open"); r.code != exitOK {
		t.Errorf("root: tokend revoke open: %v", r)
	}
	if s := e.prov.Stats(); s.Revocations <= before.Revocations {
		t.Errorf("root's revoke reached no revocation endpoint: %d → %d", before.Revocations, s.Revocations)
	}
	if r := e.run(0, "authorize", "open"); r.code != exitOK {
		t.Errorf("root: tokend authorize open: %v", r)
	}
	r = e.run(uidNobody, "token", "open")
	if nt := strings.TrimSpace(r.stdout); r.code != exitOK || nt == tok || !e.prov.Valid(nt) {
		t.Errorf("after root's revoke and authorize, nobody's open: %v (want a new valid token)", r)
	}
}

// TestUnsafeStoreDirectory: a store in a world-writable directory (no
// sticky bit) is refused at start with a message naming the directory.
func TestUnsafeStoreDirectory(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{grants: accessGrants})
	dir := filepath.Dir(e.store)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	r := runAs(t, 0, "serve", "--config", e.config)
	if r.code == exitOK {
		t.Fatalf("tokend serve with a world-writable store directory: exit 0\n%v", r)
	}
	if !strings.Contains(r.stderr, dir) || !strings.Contains(r.stderr, "writable") {
		t.Errorf("the refusal does not name the directory %s and why:\n%v", dir, r)
	}
	if _, err := os.Stat(e.store); err == nil {
		t.Errorf("the store %s was created in the unsafe directory", e.store)
	}
	if _, err := os.Lstat(e.sock); err == nil {
		t.Errorf("the socket %s was created although the daemon refused to start", e.sock)
	}
}
