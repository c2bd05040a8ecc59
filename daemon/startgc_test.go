package daemon

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// gcPercent returns GOGC as the runtime holds it (-1: off).
func gcPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

// gcWatchStore is a memStore that records GOGC while the daemon opens it
// and while it reads every token.
type gcWatchStore struct {
	*memStore
	atLoad atomic.Int64
}

func (s *gcWatchStore) EachToken(fn func(t *store.Token) error) error {
	s.atLoad.Store(int64(gcPercent()))
	return s.memStore.EachToken(fn)
}

// The daemon opens its store and loads every token with the collector at
// startGCPercent, so the heap does not grow to twice what the load keeps
// (the start-up peak), and gives GOGC back as it found it once started.
// A lower GOGC, or GOGC=off, chosen by whoever runs the daemon is kept.
// Not parallel: GOGC belongs to the process.
func TestStartLoadsTokensWithLowerGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		name           string
		gogc, atLoad   int
		afterStartGOGC int
	}{
		{"default", 100, startGCPercent, 100},
		{"higher", 400, startGCPercent, 400},
		{"lower kept", 20, 20, 20},
		{"off kept", -1, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &gcWatchStore{memStore: newMemStore()}
			opened := int64(0)
			opts := Options{OpenStore: func(config.Store, *slog.Logger) (Store, error) {
				opened = int64(gcPercent())
				return st, nil
			}}
			h := newHarness(t, harnessOpts{noRun: true})
			debug.SetGCPercent(tc.gogc)
			h.startWith(opts)
			after := gcPercent()
			h.stop()
			if opened != int64(tc.atLoad) || st.atLoad.Load() != int64(tc.atLoad) {
				t.Errorf("GOGC %d: the store was opened at GOGC %d and the tokens loaded at %d; want %d", tc.gogc, opened, st.atLoad.Load(), tc.atLoad)
			}
			if after != tc.afterStartGOGC {
				t.Errorf("GOGC %d: %d after start, want %d", tc.gogc, after, tc.afterStartGOGC)
			}
		})
	}
}

// A store that does not open leaves GOGC as it was.
func TestLowerGCPercentOpenFailure(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	cfg := newHarness(t, harnessOpts{noRun: true}).cfg
	d, err := New(cfg, Options{OpenStore: func(config.Store, *slog.Logger) (Store, error) { return nil, errOpen }})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(t.Context(), serversOf(d)); err != errOpen {
		t.Fatalf("Run = %v, want the open error", err)
	}
	if p := gcPercent(); p != 100 {
		t.Fatalf("GOGC %d after a failed open, want 100 back", p)
	}
}

var errOpen = errors.New("store: cannot open")
