package daemon

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when a test advances it. Timers fire
// (in deadline order) when Advance passes their deadline.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	added  chan struct{}
}

type fakeTimer struct {
	c     *fakeClock
	at    time.Time
	ch    chan time.Time
	fired bool
}

func newFakeClock(t0 time.Time) *fakeClock {
	return &fakeClock{now: t0, added: make(chan struct{}, 1024)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.fired = true
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	select {
	case c.added <- struct{}{}:
	default:
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return !t.fired
		}
	}
	return false
}

// Advance moves the clock by d, firing every timer that comes due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []*fakeTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.fired = true
			t.ch <- c.now
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
}

// Waiters returns how many timers are pending.
func (c *fakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// hasTimer reports whether a timer is pending that fires d from now.
func (c *fakeClock) hasTimer(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.now.Add(d)
	for _, t := range c.timers {
		if t.at.Equal(at) {
			return true
		}
	}
	return false
}

// waitFor polls cond (on real time, in small steps) until it holds or the
// test's patience runs out. It waits for goroutines to react to a clock
// move, never for the clock itself.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestFakeClockFiresInOrder(t *testing.T) {
	c := newFakeClock(time.Unix(1000, 0))
	a := c.NewTimer(time.Second)
	b := c.NewTimer(3 * time.Second)
	c.Advance(2 * time.Second)
	select {
	case <-a.C():
	default:
		t.Fatal("1 s timer did not fire after 2 s")
	}
	select {
	case <-b.C():
		t.Fatal("3 s timer fired after 2 s")
	default:
	}
	if !b.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	if c.Waiters() != 0 {
		t.Fatal("stopped timer still pending")
	}
}
