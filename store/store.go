package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names. They are part of the file format.
const (
	bucketMeta      = "meta"
	bucketClients   = "clients"
	bucketTokens    = "tokens"
	bucketHistory   = "history"
	bucketPending   = "pending"
	bucketProviders = "providers"
)

// Keys of the meta bucket.
var (
	keyFormat  = []byte("format")  // formatMagic
	keySchema  = []byte("schema")  // uint64, big endian
	keyCreated = []byte("created") // RFC 3339 text
	keyCheck   = []byte("check")   // sealed checkPlaintext; absent when unsealed
)

// formatMagic marks a bbolt file as a tokend store.
const formatMagic = "tokend-store"

const (
	// DefaultLockTimeout is the wait for the file lock when
	// Options.LockTimeout is zero.
	DefaultLockTimeout = 2 * time.Second
	// HistoryLen is the number of attempts kept per grant.
	HistoryLen = 20
	// FileMode is the mode of a store file created by Open.
	FileMode fs.FileMode = 0o600
)

// Batch tuning. bbolt's defaults (10 ms, 1000 calls) make every batch wait
// 10 ms for company; refreshes arrive a few at a time (bounded by the
// refresh concurrency), so a short delay gathers the callers that are
// already waiting without adding latency that matters, and the fsync, not
// the timer, sets the pace. Measured with BenchmarkPutTokenParallel, 8
// writers, fsync on: about 700 puts/s with the defaults, 4500 with these.
const (
	maxBatchDelay = 1 * time.Millisecond
	maxBatchSize  = 256
)

// Store is an open tokend database. Safe for concurrent use.
type Store struct {
	path string
	db   *bolt.DB
	log  *slog.Logger

	// mu is held for reading by every record operation and for writing by
	// Rekey and Close: Rekey swaps the sealer, which must not change under
	// a reader decoding records or a writer sealing them, and Close waits
	// for writes in flight, which is what flushes a pending Batch.
	mu     sync.RWMutex
	seal   *sealer // nil: secrets unsealed
	closed bool
}

// Open opens or creates the store (mode 0600). It fails with ErrLocked after
// LockTimeout when another process has it open, ErrCorrupt for a file that is
// not a tokend store (never overwriting it), ErrKeyRequired/ErrWrongKey for
// key problems. It runs schema migrations.
//
// Open also fails with ErrUnsafePermissions when the file, or its directory
// (sticky or not), is group- or world-writable, when either is owned by
// anyone but the process's effective uid or root, and when the file is a
// symbolic link or has more than one hard link (see check.go); with
// ErrNotEncrypted when a key is given for a file holding unsealed records
// (an empty file is sealed on the spot); and with ErrNewerSchema for a file
// written by a newer tokend. Errors name the file. A failed Open leaves the
// file as it was, except that a missing file is created empty.
func Open(o Options) (*Store, error) {
	return open(o, migrations)
}

func open(o Options, migs []migration) (*Store, error) {
	if o.Path == "" {
		return nil, errors.New("store: no path given")
	}
	sl, err := newSealer(o.Key)
	if err != nil {
		return nil, err
	}
	timeout := o.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := o.Path

	if err := checkDir(path); err != nil {
		return nil, err
	}
	if err := createFile(path); err != nil {
		return nil, err
	}
	// The checks run on the opened descriptor, not on the path, so the
	// file cannot be swapped between the check and the use; bbolt's own
	// opens below go through the same check and must find the same file.
	// O_NONBLOCK: opening a FIFO planted there must not hang.
	f, fi, err := openChecked(path, os.O_RDONLY|syscall.O_NONBLOCK, nil)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		log.Warn("store: file is readable by other users; chmod 600 it", "path", path, "mode", fmt.Sprintf("%04o", perm))
	}

	// A file with content is first opened read-only and inspected, so a
	// file that is not ours is never written to: even a read-write open
	// of a valid bbolt file can write (bbolt flushes a missing freelist).
	if fi.Size() > 0 {
		err = probe(f, fi, deadline)
	}
	_ = f.Close()
	if err != nil {
		return nil, err
	}

	db, err := bolt.Open(path, FileMode, &bolt.Options{
		Timeout:  remaining(deadline),
		NoSync:   o.NoSync,
		OpenFile: boltOpener(fi),
	})
	if err != nil {
		return nil, openError(path, err)
	}
	db.MaxBatchDelay = maxBatchDelay
	db.MaxBatchSize = maxBatchSize

	s := &Store{path: path, db: db, log: log, seal: sl}
	if err := db.Update(func(tx *bolt.Tx) error { return s.initTx(tx, migs) }); err != nil {
		_ = db.Close()
		if !strings.HasPrefix(err.Error(), "store: ") {
			err = fmt.Errorf("store: open %s: %w", path, err)
		}
		return nil, err
	}
	log.Debug("store: opened", "path", path, "encrypted", sl != nil)
	return s, nil
}

// remaining returns the time left until deadline, at least 1 ns: a zero
// bbolt timeout means waiting forever.
func remaining(deadline time.Time) time.Duration {
	return max(time.Until(deadline), time.Nanosecond)
}

// checkDir refuses a directory that others could use to swap, pre-create
// or hard-link the file (see check.go).
func checkDir(path string) error {
	return checkDirAs(path, os.Geteuid())
}

// createFile creates a missing store file with mode 0600 whatever the
// umask, so the secrets are never readable by others, not even briefly.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = f.Chmod(FileMode)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func lockedError(path string) error {
	return newError(ErrLocked, nil, fmt.Sprintf("store: %s is in use by another process (is tokend already running?)", path))
}

func corruptError(path, reason string, cause error) error {
	return newError(ErrCorrupt, cause, fmt.Sprintf("store: %s is not a usable tokend store: %s (the file was left untouched)", path, reason))
}

// openError classifies an error of bolt.Open.
func openError(path string, err error) error {
	switch {
	case isStoreError(err): // from openChecked; it names the file already
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return lockedError(path)
	case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("store: %w", err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum), strings.Contains(err.Error(), "file size too small"):
		return corruptError(path, "bbolt cannot open it", err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// probe checks a non-empty file without writing to it: its bbolt structure,
// then that it is a tokend store (or a bbolt file with no buckets at all,
// which is what a crash during the first Open leaves). f is the file as
// opened and checked by openChecked, fi its fstat.
func probe(f *os.File, fi fs.FileInfo, deadline time.Time) error {
	path := f.Name()
	reason, err := checkBoltFile(f, fi.Size())
	if err != nil {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	if reason != "" {
		return corruptError(path, reason, nil)
	}
	db, err := bolt.Open(path, FileMode, &bolt.Options{ReadOnly: true, Timeout: remaining(deadline), OpenFile: boltOpener(fi)})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if reason := inspect(tx); reason != "" {
			return corruptError(path, reason, nil)
		}
		return nil
	})
}

// inspect reads every page of the file and reports why it is not a tokend
// store, or "". A fault on a page outside the mapped file (a damaged
// page pointer) becomes a panic here rather than a crash, and is reported.
func inspect(tx *bolt.Tx) (reason string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			reason = fmt.Sprintf("reading it failed (%v)", r)
		}
	}()
	mb := tx.Bucket([]byte(bucketMeta))
	if mb == nil {
		var names []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, fmt.Sprintf("%q", name))
			return nil
		})
		if len(names) > 0 {
			return fmt.Sprintf("it is a bbolt file of something else (no %q bucket; buckets %s)", bucketMeta, strings.Join(names, ", "))
		}
		return ""
	}
	if string(mb.Get(keyFormat)) != formatMagic {
		return fmt.Sprintf("its %q bucket has no tokend format marker", bucketMeta)
	}
	rel := walkRelease{tx: tx}
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			rel.saw(k, v)
			if v == nil {
				if sub := b.Bucket(k); sub != nil {
					return walk(sub)
				}
			}
			return nil
		})
	}
	_ = tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	return ""
}

// migration upgrades the schema by one version: migrations[i] takes a file
// from version i to i+1. It runs inside the Open transaction, after the
// key check, so it may unseal and reseal records with sl.
type migration struct {
	name string
	up   func(tx *bolt.Tx, sl *sealer) error
}

// migrations is the schema history. Version 1 is the initial layout.
// Append only; never edit a migration that has shipped.
var migrations = []migration{
	{name: "initial buckets", up: func(tx *bolt.Tx, _ *sealer) error {
		for _, name := range []string{bucketClients, bucketTokens, bucketHistory, bucketPending, bucketProviders} {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	}},
	{name: "records sealed whole", up: sealRecordsWhole},
}

// sealRecordsWhole takes a sealed file from schema 1 (secret fields sealed
// one by one, the rest clear and unauthenticated) to schema 2 (every
// record sealed whole, bound to its bucket and key). Tokens, clients,
// history and cached provider metadata are re-encoded; pending
// authorizations are dropped: they live ten minutes, a person starts one
// again, and a record of the old format cannot be told from one planted
// without the key. A record that does not decode in the old format is
// left as it is: it is refused when read, as it was before. Without a key
// the two formats are the same plain JSON and nothing changes.
func sealRecordsWhole(tx *bolt.Tx, sl *sealer) error {
	if sl == nil {
		return nil
	}
	reencode := func(b *bolt.Bucket, conv func(k, v []byte) ([]byte, error)) error {
		type kv struct{ k, v []byte }
		var out []kv
		err := b.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil
			}
			if nv, err := conv(k, v); err == nil && nv != nil {
				out = append(out, kv{bytes.Clone(k), nv})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range out {
			if err := b.Put(r.k, r.v); err != nil {
				return err
			}
		}
		return nil
	}
	// already reports a record of the new format (a migration retried
	// after a crash never commits half, but a record written by a build
	// of schema 2 into a copy is possible): kept as it is.
	already := func(v []byte) bool { return bytes.HasPrefix(v, []byte(recordMagic)) }
	if err := reencode(tx.Bucket([]byte(bucketTokens)), func(k, v []byte) ([]byte, error) {
		if already(v) {
			return nil, nil
		}
		t, err := decodeTokenFields(sl, k, v)
		if err != nil {
			return nil, err
		}
		return encodeToken(sl, t)
	}); err != nil {
		return err
	}
	if err := reencode(tx.Bucket([]byte(bucketClients)), func(k, v []byte) ([]byte, error) {
		if already(v) {
			return nil, nil
		}
		c, err := decodeClientFields(sl, k, v)
		if err != nil {
			return nil, err
		}
		return encodeClient(sl, c)
	}); err != nil {
		return err
	}
	if err := reencode(tx.Bucket([]byte(bucketProviders)), func(k, v []byte) ([]byte, error) {
		if already(v) {
			return nil, nil
		}
		return encodeProvider(sl, k, v), nil
	}); err != nil {
		return err
	}
	hist := tx.Bucket([]byte(bucketHistory))
	if err := hist.ForEachBucket(func(grant []byte) error {
		return reencode(hist.Bucket(grant), func(_, v []byte) ([]byte, error) {
			if already(v) {
				return nil, nil
			}
			var r attemptRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return nil, err
			}
			return encodeAttempt(sl, grant, r.attempt())
		})
	}); err != nil {
		return err
	}
	if err := tx.DeleteBucket([]byte(bucketPending)); err != nil {
		return err
	}
	_, err := tx.CreateBucket([]byte(bucketPending))
	return err
}

// initTx creates or checks the meta bucket, checks the key and migrates,
// all in the one transaction of Open, so a failed Open writes nothing.
func (s *Store) initTx(tx *bolt.Tx, migs []migration) error {
	mb := tx.Bucket([]byte(bucketMeta))
	var version uint64
	if mb == nil {
		// The probe found no buckets; check again under the write lock.
		var any bool
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { any = true; return nil })
		if any {
			return corruptError(s.path, "it is a bbolt file of something else", nil)
		}
		var err error
		if mb, err = tx.CreateBucket([]byte(bucketMeta)); err != nil {
			return err
		}
		if err := mb.Put(keyFormat, []byte(formatMagic)); err != nil {
			return err
		}
		if err := mb.Put(keyCreated, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
			return err
		}
	} else {
		if string(mb.Get(keyFormat)) != formatMagic {
			return corruptError(s.path, "no tokend format marker", nil)
		}
		v := mb.Get(keySchema)
		if len(v) != 8 {
			return corruptError(s.path, "no valid schema version", nil)
		}
		version = binary.BigEndian.Uint64(v)
	}
	if version > uint64(len(migs)) {
		return newError(ErrNewerSchema, nil, fmt.Sprintf("store: %s has schema version %d, newer than this tokend knows (%d); run the tokend that wrote it (the file was left untouched)", s.path, version, len(migs)))
	}

	check := mb.Get(keyCheck)
	switch {
	case check != nil && s.seal == nil:
		return newError(ErrKeyRequired, nil, fmt.Sprintf("store: %s is encrypted and no key was given (set store.key_file or the tokend.key credential)", s.path))
	case check != nil:
		// The check binds the schema version from RecordSchema on: a
		// file whose version was set back fails here.
		if !s.seal.checkOpens(string(check), int(version)) {
			return newError(ErrWrongKey, nil, fmt.Sprintf("store: the key given does not open %s (wrong key, or its meta bucket was altered)", s.path))
		}
	case s.seal != nil:
		if hasSecretRecords(tx) {
			return newError(ErrNotEncrypted, nil, fmt.Sprintf("store: %s holds unencrypted records and a key was given; run `tokend rekey` to encrypt it, or open it without a key", s.path))
		}
		if err := mb.Put(keyCheck, []byte(s.seal.checkValue(int(version)))); err != nil {
			return err
		}
	}

	for v := version; v < uint64(len(migs)); v++ {
		s.log.Info("store: migrating schema", "path", s.path, "from", v, "to", v+1, "migration", migs[v].name)
		if err := migs[v].up(tx, s.seal); err != nil {
			return fmt.Errorf("store: migrate %s to schema version %d (%s): %w", s.path, v+1, migs[v].name, err)
		}
		if err := mb.Put(keySchema, binary.BigEndian.AppendUint64(nil, v+1)); err != nil {
			return err
		}
		if s.seal != nil {
			// The check names the schema it was written at.
			if err := mb.Put(keyCheck, []byte(s.seal.checkValue(int(v+1)))); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasSecretRecords reports whether any bucket that holds secrets has a record.
func hasSecretRecords(tx *bolt.Tx) bool {
	for _, name := range []string{bucketClients, bucketTokens, bucketPending} {
		if b := tx.Bucket([]byte(name)); b != nil {
			if k, _ := b.Cursor().First(); k != nil {
				return true
			}
		}
	}
	return false
}

// Close closes the file; pending Batch writes are flushed first. Calls
// made after Close return ErrClosed; a second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the file path as given to Open.
func (s *Store) Path() string { return s.path }

// Encrypted reports whether secrets are sealed.
func (s *Store) Encrypted() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.seal != nil
}

// rlock takes s.mu for reading, or returns ErrClosed without holding it.
func (s *Store) rlock() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// wrap prefixes an error that did not come from this package (a bbolt or
// I/O error) with the operation.
func (s *Store) wrap(op string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), "store: ") {
		return err
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
