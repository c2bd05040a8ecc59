package sink

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// file writes and removes one sink's file without following a symlink
// anywhere in its path, and only in a directory no other user can swap
// files in (sinkDir).
type file struct {
	path    string
	mode    os.FileMode
	uid     int // -1: tokend's own
	gid     int // -1: tokend's own
	selfUID int

	// tmpSuffix makes a temporary file's random suffix; nil is
	// randomSuffix (tests make names collide).
	tmpSuffix func() string
	// swept is set once the temporary files a crash left are removed:
	// done at the first write or removal, as they can only be older.
	swept bool
}

// tmpAttempts is how many random temporary names a write tries before it
// gives up: another user in a shared directory cannot guess them, so a
// clash is a stale file or astronomically rare.
const tmpAttempts = 8

// openSinkDir opens the directory of path with no symlink in any
// component (RESOLVE_NO_SYMLINKS), and checks what it opened: a directory
// owned by root or tokend's user, writable by no one else unless sticky.
// It returns whether the directory is shared (sticky and writable by
// others), in which case only a file of ours may be replaced.
func openSinkDir(path string, selfUID int) (fd int, shared bool, err error) {
	dir := filepath.Dir(path)
	fd, err = openNoSymlinks(dir)
	if errors.Is(err, unix.ENOENT) {
		// The sink directory is created when its parent is a safe
		// directory of tokend's (the default /run/tokend/sinks under the
		// unit's RuntimeDirectory=tokend).
		if perr := mkdirIn(dir, selfUID); perr == nil {
			fd, err = openNoSymlinks(dir)
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.ELOOP):
			return -1, false, fmt.Errorf("sink directory %s: a component of the path is a symbolic link; name the real directory", dir)
		case errors.Is(err, unix.ENOENT):
			return -1, false, fmt.Errorf("sink directory %s does not exist", dir)
		}
		return -1, false, fmt.Errorf("sink directory %s: %w", dir, err)
	}
	shared, err = checkDir(fd, dir, selfUID)
	if err != nil {
		unix.Close(fd)
		return -1, false, err
	}
	return fd, shared, nil
}

// checkDir checks the directory open at fd: owned by root or tokend's user,
// writable by no one else unless sticky (shared).
func checkDir(fd int, dir string, selfUID int) (shared bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, fmt.Errorf("sink directory %s: %w", dir, err)
	}
	if st.Uid != 0 && int(st.Uid) != selfUID {
		return false, fmt.Errorf("sink directory %s is owned by uid %d, neither root nor tokend's user (uid %d): refused", dir, st.Uid, selfUID)
	}
	if st.Mode&0o022 != 0 {
		if st.Mode&unix.S_ISVTX == 0 {
			return false, fmt.Errorf("sink directory %s (mode %04o) is writable by other users and not sticky: another user could replace the file; refused", dir, st.Mode&0o7777)
		}
		return true, nil
	}
	return false, nil
}

// mkdirIn creates dir (mode 0755) when its parent is a directory tokend
// may write safely: no symlinks, not shared.
func mkdirIn(dir string, selfUID int) error {
	parent := filepath.Dir(dir)
	pfd, err := openNoSymlinks(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if shared, err := checkDir(pfd, parent, selfUID); err != nil || shared {
		return errors.New("parent not ours")
	}
	err = unix.Mkdirat(pfd, filepath.Base(dir), 0o755)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return err
	}
	// 0755 whatever the umask (the unit's UMask=0077 would make it 0700,
	// and no reader could reach its sinks).
	fd, err := unix.Openat(pfd, filepath.Base(dir), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fchmod(fd, 0o755)
}

// openNoSymlinks opens directory dir for reading with no symlink followed
// in any component: openat2 with RESOLVE_NO_SYMLINKS, or where openat2 is
// missing or filtered (ENOSYS, EPERM from a seccomp filter), a walk from
// / that opens each component with O_NOFOLLOW.
func openNoSymlinks(dir string) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return fd, err
	}
	return walkNoSymlinks(dir)
}

func walkNoSymlinks(dir string) (int, error) {
	cur, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, c := range strings.Split(strings.Trim(filepath.Clean(dir), "/"), "/") {
		if c == "" {
			continue
		}
		next, err := unix.Openat(cur, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOTDIR) {
			// O_NOFOLLOW|O_DIRECTORY fails ENOTDIR on a symlink too.
			var st unix.Stat_t
			if unix.Fstatat(cur, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
				err = unix.ELOOP
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// ours reports whether an existing entry name in dirfd is a regular file
// tokend may replace or remove in a shared directory: owned by tokend's
// user or the sink's owner. A missing entry is ours to create.
func (f *file) ours(dirfd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.oursStat(name, &st)
}

// oursStat is ours for an entry that exists, of stat st.
func (f *file) oursStat(name string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s exists and is not a regular file (mode %o): refused in a shared directory", filepath.Join(filepath.Dir(f.path), name), st.Mode)
	}
	if int(st.Uid) != f.selfUID && (f.uid < 0 || int(st.Uid) != f.uid) {
		return fmt.Errorf("%s belongs to uid %d, not to tokend or the sink's owner: refused in a shared directory", filepath.Join(filepath.Dir(f.path), name), st.Uid)
	}
	return nil
}

// tmpPrefix starts the name of every temporary file of the sink:
// ".NAME.tokend-tmp-" and a random suffix. Versions before random names
// used ".NAME.tokend-tmp" alone; isTmpName knows both, to remove what a
// crash left.
func (f *file) tmpPrefix() string { return "." + filepath.Base(f.path) + ".tokend-tmp" }

func (f *file) isTmpName(name string) bool {
	p := f.tmpPrefix()
	return name == p || strings.HasPrefix(name, p+"-")
}

// randomSuffix is 80 random bits in lower-case base32: a name no other
// user can create first.
func randomSuffix() string { return strings.ToLower(rand.Text()[:16]) }

// createTemp creates a new temporary file in dirfd under a random name
// (O_EXCL: never one that exists, O_NOFOLLOW: never through a symlink),
// trying tmpAttempts names.
func (f *file) createTemp(dirfd int) (fd int, name string, err error) {
	suffix := f.tmpSuffix
	if suffix == nil {
		suffix = randomSuffix
	}
	for range tmpAttempts {
		name = f.tmpPrefix() + "-" + suffix()
		fd, err = unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if !errors.Is(err, unix.EEXIST) {
			break
		}
	}
	if err != nil {
		return -1, "", fmt.Errorf("creating a temporary file for %s: %w", f.path, err)
	}
	return fd, name, nil
}

// sweep removes the sink's temporary files a crash left in dirfd, once per
// file. In a shared directory only files that are ours (a regular
// file of tokend's user or the sink's owner) are removed; another user's
// file with such a name is left alone and no longer in the way, as every
// write picks a new name. unlinkat follows nothing. Failures are ignored:
// a leftover file harms nothing but space.
func (f *file) sweep(dirfd int, shared bool) {
	if f.swept {
		return
	}
	dup, err := unix.FcntlInt(uintptr(dirfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return
	}
	d := os.NewFile(uintptr(dup), filepath.Dir(f.path))
	defer d.Close()
	for {
		names, err := d.Readdirnames(256)
		for _, name := range names {
			if !f.isTmpName(name) {
				continue
			}
			// In a sticky directory no one but its owner (or root) can
			// put another file in place of one that is ours.
			var st unix.Stat_t
			if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || (shared && f.oursStat(name, &st) != nil) {
				continue
			}
			_ = unix.Unlinkat(dirfd, name, 0)
		}
		if err != nil {
			break
		}
	}
	f.swept = true
}

// write replaces the file with data: a temporary file in the same
// directory, given its owner and mode before it has content, written,
// fsynced and renamed over the old one; then the directory is fsynced.
// A reader sees the old file or the new one, never a part; so does
// whoever looks after a crash at any moment.
func (f *file) write(data []byte) error {
	dirfd, shared, err := openSinkDir(f.path, f.selfUID)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	name := filepath.Base(f.path)
	if shared {
		if err := f.ours(dirfd, name); err != nil {
			return err
		}
	}
	f.sweep(dirfd, shared)
	fd, tmp, err := f.createTemp(dirfd)
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(fd), tmp)
	ok := false
	defer func() {
		if !ok {
			out.Close()
			_ = unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	if f.uid >= 0 || f.gid >= 0 {
		if err := unix.Fchown(fd, f.uid, f.gid); err != nil {
			return fmt.Errorf("setting owner %d:%d of %s: %w (tokend needs CAP_CHOWN to give a file to another user; it may give it to a group it is a member of)", f.uid, f.gid, f.path, err)
		}
	}
	// After chown, which clears setuid/setgid bits: the mode is final.
	if err := unix.Fchmod(fd, uint32(f.mode.Perm())); err != nil {
		return fmt.Errorf("setting mode of %s: %w", f.path, err)
	}
	if _, err := out.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", f.path, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", f.path, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", f.path, err)
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return fmt.Errorf("renaming into %s: %w", f.path, err)
	}
	ok = true
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("syncing the directory of %s: %w", f.path, err)
	}
	return nil
}

// remove deletes the file (and temporary files a crash left), under the
// same rules as write. A file that is not there is removed already.
func (f *file) remove() error {
	dirfd, shared, err := openSinkDir(f.path, f.selfUID)
	if err != nil {
		if _, serr := os.Lstat(filepath.Dir(f.path)); errors.Is(serr, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer unix.Close(dirfd)
	f.swept = false // a removal after writes sweeps again
	f.sweep(dirfd, shared)
	name := filepath.Base(f.path)
	if shared {
		if err := f.ours(dirfd, name); err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing %s: %w", f.path, err)
	}
	return unix.Fsync(dirfd)
}

// CheckPath says what would stop tokend, running as uid, from writing
// a sink at path: symlinks in the directory's path, its owner and mode.
// check-config uses it; it creates nothing. nil means the directory is
// fit; an error wrapping os.ErrNotExist means it does not exist (yet).
// shared reports a fit directory other users may write (sticky, as
// /tmp): any of them can create the sink's own name first and so stop
// every write until it is removed.
func CheckPath(path string, uid int) (shared bool, err error) {
	dir := filepath.Dir(path)
	fd, err := openNoSymlinks(dir)
	switch {
	case errors.Is(err, unix.ENOENT):
		return false, fmt.Errorf("sink directory %s does not exist: %w", dir, os.ErrNotExist)
	case errors.Is(err, unix.ELOOP):
		return false, fmt.Errorf("sink directory %s: a component of the path is a symbolic link; name the real directory", dir)
	case err != nil:
		return false, fmt.Errorf("sink directory %s: %w", dir, err)
	}
	defer unix.Close(fd)
	return checkDir(fd, dir, uid)
}
