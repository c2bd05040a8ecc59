package sinks

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// TestSharedDirectorySquat: a sink in a sticky 1777 directory, as /tmp.
// Before tokend starts, another user (uid 65534) creates the temporary
// file's name tokend once used, a symlink under the new form of the name
// and a hundred more such names. tokend writes the sink all the same,
// and again after a refresh, follows nothing and leaves the other user's
// files alone.
func TestSharedDirectorySquat(t *testing.T) {
	needRoot(t)
	prov := newProvider(t, time.Hour)
	dir := testutil.SharedDir(t)
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("target"), 0o666); err != nil {
		t.Fatal(err)
	}
	squat := exec.Command("/bin/sh", "-ec", `
echo squat > .g.token.tokend-tmp
ln -s `+target+` .g.token.tokend-tmp-0
for i in $(seq 1 100); do echo squat > .g.token.tokend-tmp-$(head -c 10 /dev/urandom | base32 | tr A-Z a-z); done`)
	squat.Dir = shared
	testutil.AsUser(squat, 65534)
	if out, err := squat.CombinedOutput(); err != nil {
		t.Fatalf("the other user's squat: %v\n%s", err, out)
	}
	raw := filepath.Join(shared, "g.token")
	cfg := writeConfig(t, dir, prov.URL(), quietRefresh, "      - path: "+raw+"\n")
	ac := api.NewClient(filepath.Join(dir, "tokend.sock"))
	start(t, cfg, filepath.Join(dir, "tokend.log"), ac)
	for i := range 2 {
		if i > 0 {
			if _, err := ac.Refresh(ctx(t), "g"); err != nil {
				t.Fatal(err)
			}
		}
		tok, err := ac.RawToken(ctx(t), "g")
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the sink holding the current token", func() bool { b, _ := os.ReadFile(raw); return string(b) == tok })
	}
	st, err := ac.Status(ctx(t), "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sinks) != 1 || !st.Sinks[0].OK {
		t.Errorf("sink status: %+v", st.Sinks)
	}
	if b, _ := os.ReadFile(target); string(b) != "target" {
		t.Errorf("the symlink's target now holds %q", b)
	}
	ents, err := os.ReadDir(shared)
	if err != nil {
		t.Fatal(err)
	}
	theirs := 0
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(shared, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		uid := fi.Sys().(*syscall.Stat_t).Uid
		switch {
		case e.Name() == "g.token" && uid == 0:
		case uid == 65534:
			theirs++
		default:
			t.Errorf("%s (uid %d) in the shared directory", e.Name(), uid)
		}
	}
	if theirs != 102 {
		t.Errorf("%d of the other user's 102 files are left", theirs)
	}
}
