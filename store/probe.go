package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The bbolt meta page, as written by go.etcd.io/bbolt v1 (file format
// version 2) in the machine's byte order: a 16-byte page header, then
// magic, version, pageSize, flags (uint32 each), root bucket (pgid,
// sequence), freelist pgid, high-water pgid, txid and an FNV-64a checksum
// of everything before it.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	boltPageHeader     = 16
	boltMetaChecksumAt = 56 // offset of the checksum inside the meta
	boltMetaSize       = 64
	boltNoFreelist     = ^uint64(0)
)

type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// parseBoltMeta decodes and validates the meta in a page starting at buf[0].
func parseBoltMeta(buf []byte) (boltMeta, bool) {
	if len(buf) < boltPageHeader+boltMetaSize {
		return boltMeta{}, false
	}
	m := buf[boltPageHeader : boltPageHeader+boltMetaSize]
	ne := binary.NativeEndian
	if ne.Uint32(m[0:]) != boltMagic || ne.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaChecksumAt])
	if h.Sum64() != ne.Uint64(m[boltMetaChecksumAt:]) {
		return boltMeta{}, false
	}
	return boltMeta{
		pageSize: ne.Uint32(m[8:]),
		root:     ne.Uint64(m[16:]),
		freelist: ne.Uint64(m[32:]),
		pgid:     ne.Uint64(m[40:]),
		txid:     ne.Uint64(m[48:]),
	}, true
}

// checkBoltFile checks, by reading the file and without taking its lock,
// that it looks like a complete bbolt file: a valid meta page, and a size
// that holds every page the meta refers to. bbolt maps the file into memory
// and trusts the meta; touching a page past the end of a truncated file is
// a SIGBUS that kills the process, so this runs before bbolt sees the file.
// It returns a description of the problem, or "" for a plausible file.
func checkBoltFile(f *os.File, size int64) (string, error) {
	if size < 2*1024 {
		return fmt.Sprintf("%d bytes is too short for a bbolt file", size), nil
	}
	var metas []boltMeta
	buf := make([]byte, boltPageHeader+boltMetaSize)
	read := func(off int64) (boltMeta, bool, error) {
		if _, err := f.ReadAt(buf, off); err != nil {
			if errors.Is(err, io.EOF) {
				return boltMeta{}, false, nil
			}
			return boltMeta{}, false, err
		}
		m, ok := parseBoltMeta(buf)
		return m, ok, nil
	}
	m0, ok, err := read(0)
	if err != nil {
		return "", err
	}
	if ok {
		metas = append(metas, m0)
		if m1, ok, err := read(int64(m0.pageSize)); err != nil {
			return "", err
		} else if ok {
			metas = append(metas, m1)
		}
	} else {
		// The first meta page is damaged: find the second one the way bbolt
		// does, trying every page size from 1 KiB up.
		for i := 0; i <= 14; i++ {
			off := int64(1024) << i
			if off >= size-1024 {
				break
			}
			if m1, ok, err := read(off); err != nil {
				return "", err
			} else if ok {
				metas = append(metas, m1)
				break
			}
		}
	}
	if len(metas) == 0 {
		return "no valid bbolt meta page (not a bbolt file)", nil
	}
	// bbolt uses the valid meta with the highest transaction id.
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	ps := uint64(m.pageSize)
	switch {
	case ps < 1024 || ps&(ps-1) != 0:
		return fmt.Sprintf("invalid page size %d", ps), nil
	case m.root >= m.pgid || (m.freelist != boltNoFreelist && m.freelist >= m.pgid):
		return "meta page refers to pages past its high-water mark", nil
	case m.pgid > uint64(size)/ps:
		return fmt.Sprintf("file is truncated: %d bytes, the meta page needs %d", size, m.pgid*ps), nil
	}
	return "", nil
}
