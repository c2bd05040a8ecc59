package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A store file another user created first (in a shared sticky directory)
// would have a root tokend write tokens where that user reads them. These
// tests plant such files and directories and check that Open and CheckPath
// refuse them, naming the path and the owner, and leave the planted file as
// it was.

// otherUID is a uid that is neither root nor the test's: 65533 need not
// exist, the kernel records whatever number it is given.
const otherUID = 65533

func requireRootForChown(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("store: giving a file to another uid needs root (euid 0)")
	}
}

// wantRefused checks that Open fails with ErrUnsafePermissions naming every
// string in want, without changing the file, and that CheckPath reports
// the same problem.
func wantRefused(t *testing.T, path string, want ...string) {
	t.Helper()
	err := mustOpenErr(t, Options{Path: path, LockTimeout: time.Second}, ErrUnsafePermissions)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Open error %q does not name %q", err, w)
		}
	}
	cerr := CheckPath(path, os.Geteuid())
	if cerr == nil || cerr.Error() != err.Error() {
		t.Errorf("CheckPath = %v, want the error of Open: %v", cerr, err)
	}
	if !errors.Is(cerr, ErrUnsafePermissions) {
		t.Errorf("CheckPath = %v, want ErrUnsafePermissions", cerr)
	}
}

func TestOpenRefusesFileOfAnotherUser(t *testing.T) {
	requireRootForChown(t)
	self := fmt.Sprintf("uid %d", os.Geteuid())
	t.Run("empty file planted by another user", func(t *testing.T) {
		// The attack as reported: the other user creates the file 0600
		// before tokend's first start, and waits for tokens to read.
		path := tempPath(t)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, otherUID, otherUID); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, path, path, "owned by uid 65533", "not by tokend ("+self+")")
		if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
			t.Fatalf("the planted file was written to: %v, %v", fi, err)
		}
	})
	t.Run("store given to another user", func(t *testing.T) {
		path := tempPath(t)
		s := MustOpen(t, Options{Path: path})
		if err := s.PutToken(Token{Grant: "g", AccessToken: "at", RefreshToken: "rt"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, otherUID, otherUID); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, path, path, "owned by uid 65533")
		os.Chown(path, os.Geteuid(), os.Getegid()) // for MustOpen's cleanup check
	})
	t.Run("directory owned by another user", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chown(dir, otherUID, otherUID); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "tokend.db")
		_, err := Open(Options{Path: path})
		if !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "owned by uid 65533") {
			t.Fatalf("Open = %v, want ErrUnsafePermissions naming %s and uid 65533", err, dir)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Open created the file in another user's directory: %v", err)
		}
		if cerr := CheckPath(path, os.Geteuid()); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("CheckPath = %v, want %v", cerr, err)
		}
	})
	t.Run("file planted in a sticky directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "tokend.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, otherUID, otherUID); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, path, dir, "1777")
		// The file alone is refused too, once the directory is safe.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, path, path, "owned by uid 65533")
	})
	t.Run("root's file is accepted", func(t *testing.T) {
		// A file owned by root is root's choice; tokend (as root here)
		// uses it.
		path := tempPath(t)
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckPath(path, otherUID); err != nil {
			t.Errorf("CheckPath as uid %d of root's file: %v", otherUID, err)
		}
		MustOpen(t, Options{Path: path})
	})
}

func TestOpenRefusesSharedDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o770, 0o730, 0o707, 0o777 | os.ModeSticky, 0o770 | os.ModeSticky} {
		t.Run(fmt.Sprintf("%04o", unixMode(mode)), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "tokend.db")
			// A store of our own, already there: the directory is what is
			// refused, not the file.
			MustOpen(t, Options{Path: path}).Close()
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			wantRefused(t, path, dir, fmt.Sprintf("%04o", unixMode(mode)), "writable")
			os.Chmod(dir, 0o700) // for MustOpen's cleanup check
		})
	}
}

func TestOpenRefusesSymlink(t *testing.T) {
	t.Run("to a store", func(t *testing.T) {
		target := tempPath(t)
		MustOpen(t, Options{Path: target}).Close()
		path := tempPath(t)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, path, path, "symbolic link")
	})
	t.Run("dangling", func(t *testing.T) {
		// Following it would create the file wherever the link points.
		target := filepath.Join(t.TempDir(), "elsewhere.db")
		path := tempPath(t)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Options{Path: path})
		if !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("Open = %v, want ErrUnsafePermissions naming %s as a symbolic link", err, path)
		}
		if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Open created the link's target: %v", err)
		}
		if cerr := CheckPath(path, os.Geteuid()); cerr == nil || cerr.Error() != err.Error() {
			t.Errorf("CheckPath = %v, want %v", cerr, err)
		}
	})
}

func TestOpenRefusesHardLink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokend.db")
	MustOpen(t, Options{Path: path}).Close()
	// Whoever holds the other name keeps the file whatever is done to
	// this one (chmod, chown, rename).
	other := filepath.Join(t.TempDir(), "copy.db")
	if err := os.Link(path, other); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, path, path, "2 hard links")
	if err := os.Remove(other); err != nil {
		t.Fatal(err)
	}
	if err := CheckPath(path, os.Geteuid()); err != nil {
		t.Errorf("CheckPath after removing the link: %v", err)
	}
	MustOpen(t, Options{Path: path})
}

func TestOpenRefusesFIFO(t *testing.T) {
	path := tempPath(t)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Open(Options{Path: path})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("Open = %v, want ErrCorrupt: not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Open of a FIFO hangs")
	}
}

// TestOpenCheckedRefusesSwappedFile covers the last step: bbolt's own
// open must find the very file that was checked.
func TestOpenCheckedRefusesSwappedFile(t *testing.T) {
	a, b := tempPath(t), tempPath(t)
	MustOpen(t, Options{Path: a}).Close()
	MustOpen(t, Options{Path: b}).Close()
	f, fi, err := openChecked(a, os.O_RDONLY, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if f, err := boltOpener(fi)(b, os.O_RDWR, FileMode); err == nil {
		f.Close()
		t.Fatal("bbolt's open of another file than the one checked succeeded")
	} else if !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("open = %v, want ErrUnsafePermissions: replaced", err)
	}
}

func TestCheckPath(t *testing.T) {
	uid := os.Geteuid()
	dir := t.TempDir()
	path := filepath.Join(dir, "tokend.db")
	if err := CheckPath(path, uid); err != nil {
		t.Errorf("missing file: %v", err)
	}
	if err := CheckPath(filepath.Join(dir, "none", "tokend.db"), uid); err != nil {
		t.Errorf("missing directory: %v", err)
	}
	MustOpen(t, Options{Path: path}).Close()
	if err := CheckPath(path, uid); err != nil {
		t.Errorf("a good store: %v", err)
	}
}
