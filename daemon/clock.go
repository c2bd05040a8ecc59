package daemon

import (
	"context"
	"time"
)

// Clock is the daemon's only source of time, so the scheduler, the refresher
// and expiry arithmetic can be tested by moving a fake clock instead of
// sleeping. Implementations must be safe for concurrent use.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the daemon uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// backoffTimer adapts a Clock timer to backoff.Timer, so retries wait on the
// injected clock too.
type backoffTimer struct {
	clock Clock
	t     Timer
}

func (b *backoffTimer) Start(d time.Duration) {
	if b.t != nil {
		b.t.Stop()
	}
	b.t = b.clock.NewTimer(d)
}

func (b *backoffTimer) Stop() {
	if b.t != nil {
		b.t.Stop()
	}
}

func (b *backoffTimer) C() <-chan time.Time { return b.t.C() }

// wait returns after dur on the daemon's clock, or false as soon as ctx
// ends (the waits between webhook attempts run on it).
func (d *Daemon) wait(ctx context.Context, dur time.Duration) bool {
	t := d.clock.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
