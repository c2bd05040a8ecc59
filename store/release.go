package store

import (
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
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
	// Inside a read transaction: bbolt remaps the file (when a write grows
	// it) only once no read transaction is open, so the mapping cannot move
	// while it is advised.
	return s.db.View(func(tx *bolt.Tx) error {
		data := s.db.Info().Data
		size := uintptr(tx.Size()) &^ uintptr(os.Getpagesize()-1)
		if data == 0 || size == 0 {
			return nil
		}
		// Raw syscall: the map's address comes from bbolt as a uintptr,
		// and MADV_DONTNEED on a shared file mapping only drops pages.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, size, unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("store: madvise %s: %w", s.path, errno)
		}
		return nil
	})
}
