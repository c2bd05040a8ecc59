package store

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
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
