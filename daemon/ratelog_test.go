package daemon

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/hook"
)

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	steps := []struct {
		key  string
		at   time.Time
		n    int
		want bool
	}{
		{"a", at(0), 1, true},
		{"a", at(time.Second), 0, false},
		{"b", at(time.Second), 1, true}, // keys are apart
		{"a", at(30 * time.Second), 0, false},
		{"a", at(warnEvery), 3, true}, // the line counts the two held back
		{"a", at(warnEvery + time.Second), 0, false},
		{"a", at(time.Second), 2, true}, // the clock stepped back
	}
	for i, s := range steps {
		n, ok := l.allow(s.key, s.at)
		if ok != s.want || n != s.n {
			t.Fatalf("step %d (%s at %s): allow = %d, %v; want %d, %v", i, s.key, s.at.Sub(t0), n, ok, s.n, s.want)
		}
	}
}

// A slow hook under a burst of events drops the oldest, counts every drop,
// and logs at most one line per warnEvery with the drops since the last
// line: the log once took a WARN line per dropped event (about 530 a
// second under load).
func TestSlowHookBurstLogsBoundedLines(t *testing.T) {
	m := &hookMetrics{}
	// The hook says when it has taken an event off the queue: the one
	// event it takes, at a moment of its own, is the queue's one free
	// place, and the counts below hold only once it is taken.
	started := filepath.Join(t.TempDir(), "started")
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		c.Hooks = []config.Hook{{Events: []string{config.EventRevoked}, Command: []string{"sh", "-c", `: >"$0"; exec sleep 60`, started}, Timeout: time.Minute}}
	}})
	h.startWith(Options{Metrics: m})
	g := h.d.grant("cc")
	h.d.emit(g, config.EventRevoked, g.cur.Load())
	waitFor(t, "the hook to run its first event", func() bool {
		_, err := os.Stat(started)
		return err == nil
	})
	burst := func() {
		for range 2000 {
			h.d.emit(g, config.EventRevoked, g.cur.Load())
		}
	}
	dropLines := func() []string {
		var out []string
		for _, l := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(l, "hook queue full") {
				out = append(out, l)
			}
		}
		return out
	}
	burst()
	first := m.count("hook0/dropped")
	if first != 2000-hook.QueueSize {
		t.Fatalf("%d events dropped of 2000 with a queue of %d", first, hook.QueueSize)
	}
	if lines := dropLines(); len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "events=1") {
		t.Fatalf("after the first burst (%d drops), the drop lines are:\n%s", first, strings.Join(lines, "\n"))
	}
	burst() // within warnEvery: counted, not logged
	if lines := dropLines(); len(lines) != 1 {
		t.Fatalf("%d drop lines within %s", len(lines), warnEvery)
	}
	h.advance(warnEvery)
	burst()
	lines := dropLines()
	if len(lines) != 2 {
		t.Fatalf("%d drop lines after three bursts over %s, want 2", len(lines), warnEvery)
	}
	// The second line counts the drops held back since the first, and its own.
	got := regexp.MustCompile(`events=(\d+)`).FindStringSubmatch(lines[1])
	if want := strconv.Itoa(first - 1 + 2000 + 1); got == nil || got[1] != want {
		t.Fatalf("second drop line %q, want events=%s", lines[1], want)
	}
	if total := m.count("hook0/dropped"); total != first+4000 {
		t.Fatalf("%d drops counted, want %d", total, first+4000)
	}
	h.stop() // kills the sleeping command at once
}

// Callbacks with unknown states, which any local process can send to the
// loopback callback listener, log one line per warnEvery, not one each.
func TestUnknownCallbacksLogBoundedLines(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for i := range 50 {
		resp, err := http.Get("http://" + h.d.CallbackAddr() + "/callback?code=x&state=unknown" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("callback with an unknown state: %d", resp.StatusCode)
		}
	}
	if n := strings.Count(h.logs.String(), "callback with an unknown or already used state"); n != 1 {
		t.Fatalf("%d log lines for 50 callbacks with unknown states, want 1", n)
	}
}
