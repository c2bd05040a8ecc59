package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesFileWithMode0600WhateverTheUmask(t *testing.T) {
	// Not parallel: the umask is per process.
	for _, umask := range []int{0, 0o022, 0o077, 0o277} {
		t.Run(fmt.Sprintf("umask=%04o", umask), func(t *testing.T) {
			path := tempPath(t)
			old := syscall.Umask(umask)
			s, err := Open(Options{Path: path})
			syscall.Umask(old)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Fatalf("mode %04o, want 0600", got)
			}
		})
	}
}

func TestOpenReopenKeepsData(t *testing.T) {
	path := tempPath(t)
	s := MustOpen(t, Options{Path: path})
	if err := s.PutToken(Token{Grant: "g", AccessToken: "a"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpen(t, Options{Path: path})
	tok, err := s.Token("g")
	if err != nil || tok.AccessToken != "a" {
		t.Fatalf("Token = %+v, %v", tok, err)
	}
	if s.Path() != path || s.Encrypted() {
		t.Fatalf("Path %q Encrypted %v", s.Path(), s.Encrypted())
	}
}

func TestOpenInitialisesEmptyFile(t *testing.T) {
	path := tempPath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := MustOpen(t, Options{Path: path})
	if err := s.PutToken(Token{Grant: "g"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesUnsafePermissions(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o620, 0o602, 0o666} {
			path := tempPath(t)
			MustOpen(t, Options{Path: path}).Close()
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			err := mustOpenErr(t, Options{Path: path}, ErrUnsafePermissions)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("%04o", mode)) {
				t.Errorf("error %q does not name the file and mode", err)
			}
			os.Chmod(path, 0o600) // for the cleanup check
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "tokend.db")
		_, err := Open(Options{Path: path})
		if !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "0777") {
			t.Fatalf("Open = %v, want ErrUnsafePermissions naming %s and 0777", err, dir)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Open created the file in an unsafe directory: %v", err)
		}
	})
	// Sticky does not help: another user may create the file first (see
	// owner_test.go).
	t.Run("sticky directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "tokend.db")
		if _, err := Open(Options{Path: path}); !errors.Is(err, ErrUnsafePermissions) || !strings.Contains(err.Error(), "1777") {
			t.Fatalf("Open = %v, want ErrUnsafePermissions naming mode 1777", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Open created the file in an unsafe directory: %v", err)
		}
	})
}

func TestOpenLockedInProcess(t *testing.T) {
	path := tempPath(t)
	MustOpen(t, Options{Path: path})
	for _, timeout := range []time.Duration{300 * time.Millisecond, 0} {
		want := timeout
		if want == 0 {
			want = DefaultLockTimeout
		}
		start := time.Now()
		_, err := Open(Options{Path: path, LockTimeout: timeout})
		elapsed := time.Since(start)
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "in use") {
			t.Errorf("error %q does not name the file or say it is in use", msg)
		}
		// bbolt polls the lock every 50 ms and gives up one poll early.
		if elapsed < want-100*time.Millisecond || elapsed > want+time.Second {
			t.Errorf("LockTimeout %v: failed after %v", timeout, elapsed)
		}
	}
}

// TestHelperHoldStore is not a test: TestOpenLockedByAnotherProcess runs
// the test binary with it to hold a store open in a second process.
func TestHelperHoldStore(t *testing.T) {
	path := os.Getenv("STORE_TEST_HOLD")
	if path == "" {
		t.Skip("helper process only")
	}
	s, err := Open(Options{Path: path})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	s.Close()
	os.Exit(0)
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	path := tempPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldStore$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	start := time.Now()
	_, err = Open(Options{Path: path, LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "is tokend already running?") {
		t.Fatalf("Open = %v, want ErrLocked", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("took %v", elapsed)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	MustOpen(t, Options{Path: path}) // free again
}

// writeBolt creates a bbolt file at path and runs fn in an update.
func writeBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// bigStore writes a store with enough records to span many pages.
func bigStore(t *testing.T, path string) {
	t.Helper()
	s, err := Open(Options{Path: path, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := s.PutToken(Token{Grant: fmt.Sprintf("grant-%03d", i), AccessToken: strings.Repeat("x", 500)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesCorruptFiles(t *testing.T) {
	random := make([]byte, 64<<10)
	rand.Read(random)
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, path string)
	}{
		{"random bytes", func(t *testing.T, path string) { os.WriteFile(path, random, 0o600) }},
		{"short random bytes", func(t *testing.T, path string) { os.WriteFile(path, random[:100], 0o600) }},
		{"text file", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(strings.Repeat("store:\n  path: /var/lib/tokend/tokend.db\n", 200)), 0o600)
		}},
		{"truncated store", func(t *testing.T, path string) {
			bigStore(t, path)
			b := mustRead(t, path)
			os.WriteFile(path, b[:len(b)/2], 0o600)
		}},
		{"truncated to the meta pages", func(t *testing.T, path string) {
			bigStore(t, path)
			b := mustRead(t, path)
			os.WriteFile(path, b[:2*os.Getpagesize()], 0o600)
		}},
		{"damaged pages", func(t *testing.T, path string) {
			bigStore(t, path)
			b := mustRead(t, path)
			ps := os.Getpagesize()
			// Leave the meta pages; scribble over everything else.
			copy(b[2*ps:], random)
			os.WriteFile(path, b, 0o600)
		}},
		{"damaged meta pages", func(t *testing.T, path string) {
			bigStore(t, path)
			b := mustRead(t, path)
			ps := os.Getpagesize()
			copy(b[16:64], random)
			copy(b[ps+16:ps+64], random)
			os.WriteFile(path, b, 0o600)
		}},
		{"bbolt file of something else", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("members"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			})
		}},
		{"meta bucket without marker", func(t *testing.T, path string) {
			writeBolt(t, path, func(tx *bolt.Tx) error {
				b, err := tx.CreateBucket([]byte("meta"))
				if err != nil {
					return err
				}
				return b.Put([]byte("format"), []byte("something-else"))
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tempPath(t)
			tc.write(t, path)
			err := mustOpenErr(t, Options{Path: path, LockTimeout: 500 * time.Millisecond}, ErrCorrupt)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			t.Log(err)
		})
	}
}

// An empty bbolt file (no buckets) is what a crash during the first Open
// leaves: it is initialised.
func TestOpenInitialisesEmptyBoltFile(t *testing.T) {
	path := tempPath(t)
	writeBolt(t, path, func(*bolt.Tx) error { return nil })
	s := MustOpen(t, Options{Path: path})
	if err := s.PutToken(Token{Grant: "g"}, nil); err != nil {
		t.Fatal(err)
	}
}

func readSchema(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v uint64
	db.View(func(tx *bolt.Tx) error {
		v = binary.BigEndian.Uint64(tx.Bucket([]byte(bucketMeta)).Get(keySchema))
		return nil
	})
	return v
}

func TestSchemaMigration(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	n := len(migrations)
	v1 := migrations
	// The version after the current one, in this test, renames every
	// "failing" state to "degraded", re-encoding (and so re-sealing)
	// every token.
	v2 := append(v1[:n:n], migration{name: "test: rename state", up: func(tx *bolt.Tx, sl *sealer) error {
		b := tx.Bucket([]byte(bucketTokens))
		var toks []Token
		b.ForEach(func(k, v []byte) error {
			tok, err := decodeToken(sl, k, v)
			toks = append(toks, tok)
			return err
		})
		for _, tok := range toks {
			if tok.State == "failing" {
				tok.State = "degraded"
			}
			v, err := encodeToken(sl, tok)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(tok.Grant), v); err != nil {
				return err
			}
		}
		_, err := tx.CreateBucket([]byte("v2"))
		return err
	}})

	s, err := open(Options{Path: path, Key: key}, v1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(Token{Grant: "g", AccessToken: "secret-a", State: "failing"}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := readSchema(t, path); v != uint64(n) {
		t.Fatalf("schema %d, want %d", v, n)
	}

	s, err = open(Options{Path: path, Key: key}, v2)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("g")
	if err != nil || tok.State != "degraded" || tok.AccessToken != "secret-a" {
		t.Fatalf("after migration: %+v %v", tok, err)
	}
	s.Close()
	if v := readSchema(t, path); v != uint64(n+1) {
		t.Fatalf("schema %d, want %d", v, n+1)
	}
	MustCheck(t, path)

	// Migrations run once.
	s, err = open(Options{Path: path, Key: key}, v2)
	if err != nil {
		t.Fatalf("reopen at version 2: %v", err)
	}
	s.Close()

	// A build that only knows version 1 refuses the file.
	err = mustOpenErr(t, Options{Path: path, Key: key}, ErrNewerSchema)
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", n+1)) {
		t.Fatalf("error %q does not name the file and version", err)
	}
}

func TestFailedMigrationWritesNothing(t *testing.T) {
	path := tempPath(t)
	s, err := open(Options{Path: path}, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	boom := errors.New("boom")
	bad := append(migrations[:1:1], migration{name: "test: fails", up: func(tx *bolt.Tx, _ *sealer) error {
		tx.CreateBucket([]byte("half-done"))
		return boom
	}})
	before := mustRead(t, path)
	if _, err := open(Options{Path: path}, bad); !errors.Is(err, boom) || !strings.Contains(err.Error(), "schema version 2") {
		t.Fatalf("open = %v", err)
	}
	if !bytes.Equal(before, mustRead(t, path)) {
		t.Fatal("failed migration changed the file")
	}
}

func TestClosedStore(t *testing.T) {
	s := MustOpen(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Token("g"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Token after Close = %v", err)
	}
	if err := s.PutToken(Token{Grant: "g"}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutToken after Close = %v", err)
	}
}
