package store

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func rssFileKiB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseMemory(t *testing.T) {
	s := MustOpen(t, Options{Path: t.TempDir() + "/tokend.db", NoSync: true})
	for i := range 800 {
		tok := Token{Grant: fmt.Sprintf("g%05d", i), AccessToken: strings.Repeat("a", 2000), Obtained: time.Unix(0, 0)}
		if err := s.PutToken(tok, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Tokens(); err != nil {
		t.Fatal(err)
	}
	before := rssFileKiB(t)
	if err := s.ReleaseMemory(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	if after >= before {
		t.Errorf("RssFile %d KiB before, %d KiB after: nothing released", before, after)
	}
	// Every record reads back as before.
	toks, err := s.Tokens()
	if err != nil || len(toks) != 800 || toks[799].AccessToken != strings.Repeat("a", 2000) {
		t.Fatalf("after release: %d tokens, %v", len(toks), err)
	}
}

// fillTokens writes n sealed token records of about size bytes each in
// one transaction (set-up, not what is measured).
func fillTokens(t *testing.T, s *Store, n, size int) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketTokens))
		for i := range n {
			tok := Token{Grant: fmt.Sprintf("g%06d", i), AccessToken: strings.Repeat("a", size), Generation: 1, State: "valid", Obtained: time.Unix(1, 0)}
			v, err := encodeToken(s.seal, tok)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(tok.Grant), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A walk of every token (the daemon's load at start-up) does not leave the
// pages it read resident: the file's pages it holds stay within a few
// releaseEvery, not the size of what it read.
func TestEachTokenReleasesPagesAsItReads(t *testing.T) {
	s := MustOpen(t, Options{Key: newKey(t), NoSync: true})
	const n, size = 12000, 2000 // about 26 MiB of sealed records
	fillTokens(t, s, n, size)
	if err := s.ReleaseMemory(); err != nil {
		t.Fatal(err)
	}
	before := rssFileKiB(t)
	seen := 0
	if err := s.EachToken(func(tok *Token) error {
		if len(tok.AccessToken) != size {
			return fmt.Errorf("token %s: %d bytes", tok.Grant, len(tok.AccessToken))
		}
		seen++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	grew := rssFileKiB(t) - before
	if seen != n {
		t.Fatalf("EachToken saw %d of %d tokens", seen, n)
	}
	if limit := 3 * releaseEvery >> 10; grew > limit {
		t.Errorf("RssFile grew by %d KiB reading %d KiB of records: the pages read stayed resident (limit %d KiB)", grew, n*size>>10, limit)
	}
}

// The check before open reads every page of the file through a map of its
// own; it releases them as it goes too.
func TestInspectReleasesPagesAsItReads(t *testing.T) {
	s := MustOpen(t, Options{Key: newKey(t), NoSync: true})
	fillTokens(t, s, 12000, 2000)
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, FileMode, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if err := releaseMapped(tx); err != nil {
			return err
		}
		before := rssFileKiB(t)
		if reason := inspect(tx); reason != "" {
			return errors.New(reason)
		}
		if grew, limit := rssFileKiB(t)-before, 3*releaseEvery>>10; grew > limit {
			t.Errorf("RssFile grew by %d KiB checking a %d KiB file (limit %d KiB)", grew, tx.Size()>>10, limit)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
