package sink

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testutil"
)

// countingMetrics counts sink writes by "grant result".
type countingMetrics struct{ testutil.Counts }

func (m *countingMetrics) ObserveSinkWrite(grant, result string) { m.Add(grant + " " + result) }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWorkerWritesAndRemoves: an offered token is written in the sink's
// format and counted; an offer without a token removes the file.
func TestWorkerWritesAndRemoves(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "t")
	m := &countingMetrics{}
	eng := Engine{
		SelfUID:     os.Geteuid(),
		Now:         func() time.Time { return now },
		Log:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		WarnLimited: func(string, string, ...any) {},
		Metrics:     m,
	}
	w, err := NewWorker(eng, "g", config.Sink{Path: path, Format: config.SinkHeader})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	defer w.Halt()
	w.Offer(&Token{AccessToken: "at-1", TokenType: "DPoP", ExpiresAt: now.Add(time.Hour)})
	waitFor(t, "the file written", func() bool { return readOr(path) == "Authorization: DPoP at-1\n" })
	waitFor(t, "the write in status", func() bool { s := w.Status(); return s.OK && s.WrittenAt.Equal(now) })
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != config.DefaultSinkMode {
		t.Errorf("file mode %v, %v; want %v", fi.Mode(), err, os.FileMode(config.DefaultSinkMode))
	}
	if n := m.Get("g written"); n != 1 {
		t.Errorf("writes counted %d, want 1", n)
	}
	w.Offer(nil)
	waitFor(t, "the file removed", func() bool { _, err := os.Lstat(path); return os.IsNotExist(err) })
	waitFor(t, "the removal counted", func() bool { return m.Get("g removed") == 1 })
	if s := w.Status(); !s.OK || !s.WrittenAt.IsZero() || s.Path != path {
		t.Errorf("status after removal %+v", s)
	}
}
