package systemd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Credential returns the path of a systemd credential
// ($CREDENTIALS_DIRECTORY/name) if it exists. tokend.service loads the store
// key as the credential "tokend.key" (LoadCredential=). A name with a path
// separator is never a credential and returns ok=false.
func Credential(name string) (path string, ok bool) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", false
	}
	path = filepath.Join(dir, name)
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return path, true
}

// UnderJournal reports whether stderr is connected to the journal
// ($JOURNAL_STREAM matches stderr's device and inode), so logs can omit
// timestamps. Comparing device and inode, not only the variable's presence,
// matters because the variable is inherited by children whose stderr was
// redirected elsewhere.
func UnderJournal() bool {
	return underJournal(os.Getenv("JOURNAL_STREAM"), int(os.Stderr.Fd()))
}

func underJournal(stream string, fd int) bool {
	devStr, inoStr, ok := strings.Cut(stream, ":")
	if !ok {
		return false
	}
	dev, err := strconv.ParseUint(devStr, 10, 64)
	if err != nil {
		return false
	}
	ino, err := strconv.ParseUint(inoStr, 10, 64)
	if err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
