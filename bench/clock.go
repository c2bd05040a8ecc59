package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/daemon"
)

// shiftClock is real time plus an offset that Shift moves forward. Timers
// run on real time, but a Shift fires every timer whose deadline the new
// time has passed, so the daemon's scheduler wakes at once, as it would
// had that much time gone by. The storm benchmark uses it to make a
// thousand fresh tokens due in one step without waiting 45 minutes.
type shiftClock struct {
	off    atomic.Int64 // time.Duration
	mu     sync.Mutex
	timers map[*shiftTimer]struct{}
}

func newShiftClock() *shiftClock {
	return &shiftClock{timers: map[*shiftTimer]struct{}{}}
}

func (c *shiftClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Shift moves the clock forward by d and fires the timers now due.
func (c *shiftClock) Shift(d time.Duration) {
	c.off.Add(int64(d))
	now := c.Now()
	c.mu.Lock()
	var due []*shiftTimer
	for t := range c.timers {
		if !now.Before(t.deadline) {
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.fire()
	}
}

func (c *shiftClock) NewTimer(d time.Duration) daemon.Timer {
	t := &shiftTimer{c: c, ch: make(chan time.Time, 1), deadline: c.Now().Add(d)}
	c.mu.Lock()
	c.timers[t] = struct{}{}
	c.mu.Unlock()
	t.real = time.AfterFunc(d, t.fire)
	return t
}

type shiftTimer struct {
	c        *shiftClock
	ch       chan time.Time
	deadline time.Time
	once     sync.Once
	real     *time.Timer
	fired    atomic.Bool
}

func (t *shiftTimer) fire() {
	t.once.Do(func() {
		t.fired.Store(true)
		t.c.mu.Lock()
		delete(t.c.timers, t)
		t.c.mu.Unlock()
		t.ch <- t.c.Now()
	})
}

func (t *shiftTimer) C() <-chan time.Time { return t.ch }

func (t *shiftTimer) Stop() bool {
	t.real.Stop()
	t.c.mu.Lock()
	_, pending := t.c.timers[t]
	delete(t.c.timers, t)
	t.c.mu.Unlock()
	return pending && !t.fired.Load()
}
