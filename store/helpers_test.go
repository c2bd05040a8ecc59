package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MustOpen opens a store for a test, in a fresh temporary directory when
// opts.Path is empty. Cleanup closes it and runs bbolt's full consistency
// check (tx.Check) on the file.
func MustOpen(tb testing.TB, opts Options) *Store {
	tb.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(tb.TempDir(), "tokend.db")
	}
	s, err := Open(opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", opts.Path, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		MustCheck(tb, s.Path())
	})
	return s
}

// MustCheck runs bbolt's consistency check on a closed store file.
func MustCheck(tb testing.TB, path string) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		tb.Errorf("check %s: open: %v", path, err)
		return
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			tb.Errorf("check %s: %v", path, err)
		}
		return nil
	})
	if err != nil {
		tb.Errorf("check %s: %v", path, err)
	}
}

// newKey returns a random store key.
func newKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// tempPath returns a store path in a fresh temporary directory.
func tempPath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "tokend.db")
}

// mustRead returns a file's bytes.
func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mustOpenErr opens a store that must fail with want, and checks the file
// bytes did not change.
func mustOpenErr(tb testing.TB, opts Options, want error) error {
	tb.Helper()
	before := mustRead(tb, opts.Path)
	s, err := Open(opts)
	if err == nil {
		s.Close()
		tb.Fatalf("Open(%s) succeeded, want %v", opts.Path, want)
	}
	if !errors.Is(err, want) {
		tb.Fatalf("Open(%s) = %v, want %v", opts.Path, err, want)
	}
	if after := mustRead(tb, opts.Path); !bytes.Equal(before, after) {
		tb.Fatalf("Open(%s) failing with %v modified the file", opts.Path, err)
	}
	return err
}
