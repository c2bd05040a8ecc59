package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Who may control the store. The file holds every grant's tokens: whoever
// owns it or can write its directory can read it (or, sealed, copy, replace
// or destroy it), swap it for a file of their own between two runs, or hold
// a second hard link that survives a chmod. So the
// file and its directory must belong to tokend's user or root, the directory
// must be writable by nobody else (a sticky bit does not help: in a sticky
// directory anyone may create the file first, and then owns it), the file
// must not be a symbolic link and must have a single link.

// CheckPath reports the ownership and permission problems Open would find
// with the store file at path and its directory, for a tokend running as
// uid: the problem Open refuses the file for, as Open words it, or nil. It
// opens, creates and changes nothing; a missing file or directory is not a
// problem here (Open creates the file, and systemd the directory). `tokend
// check-config` calls it.
func CheckPath(path string, uid int) error {
	if err := checkDirAs(path, uid); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return checkFileInfo(path, fi, uid)
}

// checkDirAs refuses a directory that anyone but uid and root could use to
// replace, pre-create or hard-link the store file.
func checkDirAs(path string, uid int) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("store: %s, the directory of %s, is not a directory", dir, path)
	}
	if owner, ok := ownerOf(fi); ok && owner != uid && owner != 0 {
		return newError(ErrUnsafePermissions, nil, fmt.Sprintf(
			"store: directory %s, which holds %s, is owned by uid %d, not by tokend (uid %d) or root: that user could replace the store file; use a directory of tokend's user, mode 0700 (systemd: StateDirectory=)",
			dir, path, owner, uid))
	}
	if fi.Mode()&0o022 != 0 {
		return newError(ErrUnsafePermissions, nil, fmt.Sprintf(
			"store: directory %s, which holds %s, is group- or world-writable (mode %04o): another user could create or replace the store file there, sticky bit or not; use a directory only tokend's user can write, mode 0700 (systemd: StateDirectory=)",
			dir, path, unixMode(fi.Mode())))
	}
	return nil
}

// checkFileInfo checks the store file as described by fi, which comes from
// fstat on the open file (Open) or from lstat (CheckPath).
func checkFileInfo(path string, fi fs.FileInfo, uid int) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return symlinkError(path)
	}
	if !fi.Mode().IsRegular() {
		return newError(ErrCorrupt, nil, fmt.Sprintf("store: %s is not a regular file (%s)", path, fi.Mode().Type()))
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && int(st.Uid) != uid && st.Uid != 0 {
		return newError(ErrUnsafePermissions, nil, fmt.Sprintf(
			"store: %s is owned by uid %d, not by tokend (uid %d): refusing to keep tokens in a file another user controls; if it is tokend's own store from a run as that user, chown it to uid %d, otherwise remove it (its owner may have read it) and let tokend create a new one",
			path, st.Uid, uid, uid))
	}
	if st != nil && st.Nlink > 1 {
		return newError(ErrUnsafePermissions, nil, fmt.Sprintf(
			"store: %s has %d hard links: another name for it may be readable by someone else, and survives any change to this one; remove the other links (find / -samefile %s) or copy the file to a new one",
			path, st.Nlink, path))
	}
	perm := fi.Mode().Perm()
	if perm&0o022 != 0 {
		return newError(ErrUnsafePermissions, nil, fmt.Sprintf("store: %s is group- or world-writable (mode %04o); chmod 600 it", path, perm))
	}
	return nil
}

func symlinkError(path string) error {
	return newError(ErrUnsafePermissions, nil, fmt.Sprintf(
		"store: %s is a symbolic link: refusing to follow it, since whoever can change the link chooses where tokens are written; set store.path to the file itself", path))
}

// openChecked opens the store file without following a symbolic link and
// checks the descriptor it got (fstat), so that what is checked is what is
// then read and written, whatever happens to the path meanwhile. want,
// when not nil, is the file an earlier openChecked checked: a different
// file now means the path changed under us, and is refused.
func openChecked(path string, flag int, want fs.FileInfo) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, FileMode)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, symlinkError(path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && want != nil && !os.SameFile(fi, want) {
		err = newError(ErrUnsafePermissions, nil, fmt.Sprintf("store: %s was replaced by another file while it was being opened; check who can write its directory", path))
	} else if err == nil {
		err = checkFileInfo(path, fi, os.Geteuid())
	}
	if err != nil {
		_ = f.Close()
		if !isStoreError(err) {
			err = fmt.Errorf("store: %w", err)
		}
		return nil, nil, err
	}
	return f, fi, nil
}

// boltOpener returns a bbolt Options.OpenFile that opens the file through
// openChecked, so bbolt maps and locks only the file Open checked.
func boltOpener(want fs.FileInfo) func(string, int, os.FileMode) (*os.File, error) {
	return func(path string, flag int, _ os.FileMode) (*os.File, error) {
		f, _, err := openChecked(path, flag, want)
		return f, err
	}
}

func isStoreError(err error) bool {
	var se *storeError
	return errors.As(err, &se)
}

// ownerOf returns the uid owning the file fi describes.
func ownerOf(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// unixMode returns the permission bits with setuid, setgid and sticky, as
// chmod takes them (01777 for /tmp).
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
