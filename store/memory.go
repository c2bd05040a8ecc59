package store

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReleaseMemory drops this process's hold on the file's pages that reads
// have touched so far. bbolt reads through a shared, read-only memory map;
// reading every token at start-up leaves the whole file resident and
// counted in the process's RSS long after. The pages stay in the kernel's
// page cache and come back on the next read, so nothing is lost and no
// read is affected. Safe for concurrent use.
func (s *Store) ReleaseMemory() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	data := s.db.Info().Data
	size := uintptr(fi.Size()) &^ uintptr(os.Getpagesize()-1)
	if data == 0 || size == 0 {
		return nil
	}
	// Raw syscall: the map's address comes from bbolt as a uintptr, and
	// MADV_DONTNEED on a shared file mapping only unmaps pages.
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, size, unix.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("store: madvise %s: %w", s.path, errno)
	}
	return nil
}
