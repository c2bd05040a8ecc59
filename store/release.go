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
	return s.db.View(func(tx *bolt.Tx) error { return releaseMapped(tx) })
}

// releaseMapped drops the process's hold on the pages of tx's database
// map (MADV_DONTNEED). tx must stay open while it runs, so the map cannot
// move. The map is shared and read-only: its pages stay in the page cache
// and a later read of a record, even through a key or value slice taken
// before, faults the same bytes back in.
func releaseMapped(tx *bolt.Tx) error {
	data := tx.DB().Info().Data
	size := uintptr(tx.Size()) &^ uintptr(os.Getpagesize()-1)
	if data == 0 || size == 0 {
		return nil
	}
	// Raw syscall: the map's address comes from bbolt as a uintptr,
	// and MADV_DONTNEED on a shared file mapping only drops pages.
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, size, unix.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("store: madvise %s: %w", tx.DB().Path(), errno)
	}
	return nil
}

// releaseEvery is how many bytes of records a walk of the whole file (the
// token load at start-up, the check before open) reads between two
// releases of the map's pages. Without them, such a walk leaves every page
// it touched resident, and the kernel maps neighbouring pages of the page
// cache with each fault: at 100,000 grants the token load held the whole
// 177 MiB file in the process's RSS at its peak, on top of the heap.
const releaseEvery = 4 << 20

// walkRelease counts the bytes a walk reads and releases the map's pages
// of tx every releaseEvery of them.
type walkRelease struct {
	tx   *bolt.Tx
	read int
}

func (w *walkRelease) saw(k, v []byte) {
	w.read += len(k) + len(v)
	if w.read >= releaseEvery {
		w.read = 0
		// Failing to release costs memory, not correctness: ignored here,
		// reported by ReleaseMemory.
		_ = releaseMapped(w.tx)
	}
}
