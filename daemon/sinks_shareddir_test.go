package daemon

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
)

// owner is the uid owning path (not following a symlink).
func owner(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

// TestSinkTempNameSquatted: in a sticky shared directory another user
// (uid 65534) creates the temporary file's name tokend used to use, a
// symlink under it, and names of the new form, before tokend's first
// write. The sink is written all the same; the squatter's files are left
// as they are and nothing is written through the symlink. tokend's own
// temporary files a crash left, of the old name or the new, are removed.
func TestSinkTempNameSquatted(t *testing.T) {
	dir := testutil.StickyDir(t)
	target := filepath.Join(testutil.SharedDir(t), "target")
	must(t, os.WriteFile(target, []byte("target"), 0o666))
	testutil.AsNobody(t, dir, `
echo squat > .cc.token.tokend-tmp
ln -s `+target+` .cc.token.tokend-tmp-link
for i in $(seq 1 64); do echo squat > .cc.token.tokend-tmp-$i; done
echo squat > .other.token.tokend-tmp`)
	// What a tokend killed in the middle of writes leaves, as root.
	must(t, os.WriteFile(filepath.Join(dir, ".mine.token.tokend-tmp"), []byte("stale"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, ".mine.token.tokend-tmp-abcdefghijklmnop"), []byte("stale"), 0o600))

	cc, mine := filepath.Join(dir, "cc.token"), filepath.Join(dir, "mine.token")
	h := newHarness(t, harnessOpts{noRun: true, config: withSinks("cc", config.Sink{Path: cc}, config.Sink{Path: mine})})
	h.start()
	if code, body := h.do(http.MethodPost, "/v1/tokens/cc/refresh"); code != 200 {
		t.Fatalf("refresh: %d %s", code, body)
	}
	tok := h.token("cc").AccessToken
	waitFile(t, cc, tok)
	waitFile(t, mine, tok)
	waitFor(t, "both sinks OK in status", func() bool {
		n := 0
		for _, s := range h.status("cc").Sinks {
			if s.OK {
				n++
			}
		}
		return n == 2
	})
	if got := readOr(target); got != "target" {
		t.Errorf("the symlink's target now holds %q", got)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	squat := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case e.Name() == "cc.token" || e.Name() == "mine.token":
			if owner(t, p) != 0 {
				t.Errorf("%s: owned by uid %d", p, owner(t, p))
			}
		case owner(t, p) == 65534:
			squat++
		default:
			t.Errorf("%s: left in the directory (uid %d)", p, owner(t, p))
		}
	}
	if squat != 67 {
		t.Errorf("%d of the other user's 67 files are left, want all", squat)
	}
	if got := readOr(filepath.Join(dir, ".cc.token.tokend-tmp")); got != "squat\n" {
		t.Errorf("the other user's file now holds %q", got)
	}
}
