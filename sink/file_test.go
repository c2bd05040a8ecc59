package sink

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/internal/testutil"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

// TestTempNameRetries: a write whose random names are taken tries
// others, and fails without following anything when every try is taken.
func TestTempNameRetries(t *testing.T) {
	dir := testutil.StickyDir(t)
	target := filepath.Join(testutil.SharedDir(t), "target")
	must(t, os.WriteFile(target, []byte("target"), 0o666))
	testutil.AsNobody(t, dir, `
echo squat > .s.tokend-tmp-1
ln -s `+target+` .s.tokend-tmp-2`)
	next := 0
	f := &file{path: filepath.Join(dir, "s"), mode: 0o600, uid: -1, gid: -1, selfUID: 0,
		tmpSuffix: func() string { next++; return string(rune('0' + next)) }}
	must(t, f.write([]byte("one")))
	if next != 3 || readOr(f.path) != "one" {
		t.Errorf("after %d names, the sink holds %q", next, readOr(f.path))
	}

	next = 0
	f.tmpSuffix = func() string { next = next%2 + 1; return string(rune('0' + next)) }
	err := f.write([]byte("two"))
	if err == nil || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("every name taken: %v", err)
	}
	if readOr(f.path) != "one" || readOr(target) != "target" {
		t.Errorf("sink %q, symlink target %q", readOr(f.path), readOr(target))
	}
}

// TestOpenNoSymlinksWalk checks the O_NOFOLLOW walk used where openat2 is
// missing or filtered.
func TestOpenNoSymlinksWalk(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	must(t, os.Mkdir(real, 0o755))
	must(t, os.Symlink(real, filepath.Join(base, "link")))
	// The walk itself, as openNoSymlinks runs it after ENOSYS.
	walk := func(dir string) error {
		fd, err := walkNoSymlinks(dir)
		if err == nil {
			unix.Close(fd)
		}
		return err
	}
	if err := walk(real); err != nil {
		t.Errorf("walk %s: %v", real, err)
	}
	if err := walk(filepath.Join(base, "link")); !errors.Is(err, unix.ELOOP) {
		t.Errorf("walk through a symlink: %v, want ELOOP", err)
	}
	if err := walk(filepath.Join(base, "nope")); !errors.Is(err, unix.ENOENT) {
		t.Errorf("walk to a missing directory: %v, want ENOENT", err)
	}
}

// TestCheckPathRefusesSymlink: check-config names a symlink in the
// directory's path.
func TestCheckPathRefusesSymlink(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	must(t, os.Mkdir(real, 0o755))
	must(t, os.Symlink(real, filepath.Join(base, "link")))
	if _, err := CheckPath(filepath.Join(base, "link", "t"), os.Geteuid()); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("CheckPath through a symlink = %v", err)
	}
	if _, err := CheckPath(filepath.Join(base, "nope", "t"), os.Geteuid()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckPath of a missing directory = %v, want os.ErrNotExist", err)
	}
	if shared, err := CheckPath(filepath.Join(real, "t"), os.Geteuid()); err != nil || shared {
		t.Errorf("CheckPath of a private directory = %v, %v", shared, err)
	}
}
