package gcburst

import (
	"runtime/debug"
	"testing"
)

func current() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}

func TestLower(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct{ gogc, during int }{{100, 50}, {400, 50}, {50, 50}, {20, 20}, {-1, -1}} {
		debug.SetGCPercent(tc.gogc)
		restore := Lower(50)
		if got := current(); got != tc.during {
			t.Errorf("GOGC %d: %d during the burst, want %d", tc.gogc, got, tc.during)
		}
		inner := Lower(50)
		inner()
		if got := current(); got != tc.during {
			t.Errorf("GOGC %d: %d after an inner burst ended, want %d", tc.gogc, got, tc.during)
		}
		restore()
		if got := current(); got != tc.gogc {
			t.Errorf("GOGC %d: %d after the burst, want it back", tc.gogc, got)
		}
	}
}
