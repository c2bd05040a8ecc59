package security

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

// TestStorePlantedByAnotherUser plants the store as another user would: a
// user (uid 65533) creates tokend's store file first, 0600, in a directory
// they can write; a root tokend used to write its tokens into it, and the
// user read them, while check-config said OK. Now serve refuses to start,
// check-config fails naming the file, and the file stays empty.
func TestStorePlantedByAnotherUser(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov: devprovider.Options{AccessTTL: time.Hour},
		grants: `  g:
    client: app
    type: client_credentials
    scopes: [read]
    readers: {uids: [0]}
`,
	})
	// A shared directory such as /tmp.
	shared := filepath.Join(e.dir, "tmp")
	mustMkdir(t, shared, 0o777|os.ModeSticky)

	tests := []struct {
		name string
		// plant prepares dir as root and has the attacker create the file.
		plant func(t *testing.T, dir, file string)
		want  []string // in the errors, besides the file's path
	}{
		{"sticky shared directory", func(t *testing.T, dir, file string) {
			// The reported case: /tmp/x, 1777, and the other user's file.
			mustMkdir(t, dir, 0o777|os.ModeSticky)
			asUser(t, uidOther, `umask 077 && : > "$1"`, file)
		}, []string{"group- or world-writable", "1777"}},
		{"file of another user in root's directory", func(t *testing.T, dir, file string) {
			// The directory is safe by now; the file is not.
			mustMkdir(t, dir, 0o777|os.ModeSticky)
			asUser(t, uidOther, `umask 077 && : > "$1"`, file)
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, []string{"owned by uid 65533", "not by tokend (uid 0)"}},
		{"directory of another user", func(t *testing.T, dir, file string) {
			asUser(t, uidOther, `umask 022 && mkdir "$1" && umask 077 && : > "$2"`, dir, file)
		}, []string{"owned by uid 65533"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(shared, string(rune('a'+i)))
			file := filepath.Join(dir, "tokend.db")
			tt.plant(t, dir, file)
			owner := func() uint32 {
				fi, err := os.Lstat(file)
				if err != nil {
					t.Fatal(err)
				}
				return fi.Sys().(*syscall.Stat_t).Uid
			}
			if owner() != uidOther {
				t.Fatalf("the attacker's file %s is owned by uid %d", file, owner())
			}
			cfg := e.withStore(t, file)

			// check-config says what is wrong, naming the file.
			r := runAs(t, 0, "check-config", cfg)
			if r.code == exitOK || strings.Contains(r.stdout, ": OK") {
				t.Errorf("check-config accepts the planted store: %v", r)
			}
			wantIn(t, "check-config", r.stderr, append([]string{file}, tt.want...))

			// serve refuses to start (were it to start, it is made to fetch
			// a token, which it would write into the file).
			started, out := e.serveOnce(t, cfg)
			if started {
				t.Errorf("tokend serve started with a store file of another user:\n%s", out)
			} else {
				wantIn(t, "tokend serve", out, append([]string{file}, tt.want...))
			}

			// The attacker finds the file as they left it: empty, theirs.
			if got := asUser(t, uidOther, `cat "$1"`, file); got != "" {
				t.Errorf("uid 65533 reads %d bytes from the file they planted: tokend wrote into it", len(got))
			}
			if owner() != uidOther {
				t.Errorf("the planted file changed owner")
			}
		})
	}
}

// wantIn checks that out holds every string in want.
func wantIn(t *testing.T, what, out string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, out)
		}
	}
}

// asUser runs the shell script as uid (same gid, no supplementary groups)
// with args as $1, $2, ..., and returns its output; it fails the test if
// the script fails.
func asUser(t *testing.T, uid uint32, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := userCmd(ctx, uid, nil, "/bin/sh", append([]string{"-c", script, "sh"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("as uid %d: sh -c %q %q: %v\n%s", uid, script, args, err, stderr.String())
	}
	return stdout.String()
}

// withStore writes a copy of e's configuration with store.path set to path
// and returns the copy's path.
func (e *env) withStore(t *testing.T, path string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	mustWrite(t, cfg, e.configWith("path: "+e.store+"\n", "path: "+path+"\n"))
	return cfg
}

// serveOnce runs `tokend serve --config cfg` until it exits, and returns its
// output. Should it start instead (it answers on the socket), it is made
// to fetch grant g's token, so that it writes to its store, and stopped;
// started is then true.
func (e *env) serveOnce(t *testing.T, cfg string) (started bool, output string) {
	t.Helper()
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(tokendBin, "serve", "--config", cfg)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			done <- err
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			done <- <-done
		}
	}
	defer stop() // also when awaitServe gives up
	if exited, err := e.awaitServe(done, out); exited {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("tokend serve exited with %v, want a failure exit code", err)
		}
		return false, out.String()
	}
	e.run(0, "token", "g")
	stop()
	return true, out.String()
}
