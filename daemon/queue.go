package daemon

import (
	"context"
	"sync"
)

// workQueue is the scheduler's FIFO of due grants. It is unbounded in
// count but holds each grant at most once (grant.queued), so its size is
// bounded by the number of grants, and the scheduler never blocks on it.
type workQueue struct {
	mu     sync.Mutex
	items  []queued
	signal chan struct{}
	kickCh chan struct{}
}

type queued struct {
	g      *grant
	reason string
}

func (q *workQueue) init() {
	q.signal = make(chan struct{}, 1)
	q.kickCh = make(chan struct{}, 1)
}

// push queues g unless it is already queued.
func (q *workQueue) push(g *grant, reason string) bool {
	if !g.queued.CompareAndSwap(false, true) {
		return false
	}
	q.mu.Lock()
	q.items = append(q.items, queued{g, reason})
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// pop waits for an item; ok is false when ctx ends.
func (q *workQueue) pop(ctx context.Context) (queued, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			it := q.items[0]
			q.items[0] = queued{}
			q.items = q.items[1:]
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.signal <- struct{}{}:
				default:
				}
			}
			return it, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return queued{}, false
		case <-q.signal:
		}
	}
}

// done marks an item popped by pop as finished.
func (q *workQueue) done(it queued) {
	it.g.queued.Store(false)
}

// drop forgets everything still queued (at shutdown).
func (q *workQueue) drop() {
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	for _, it := range items {
		it.g.queued.Store(false)
	}
}

// kick wakes the scheduler for an early tick (after a reload).
func (q *workQueue) kick() {
	select {
	case q.kickCh <- struct{}{}:
	default:
	}
}

// inflightGroup counts the refreshes and device polls running, so that
// shutdown can wait for them before the store is closed. Unlike a bare
// sync.WaitGroup, a new one cannot start (Add from zero) while shutdown
// waits: enter refuses once close began.
type inflightGroup struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// open allows new work again (Run starts).
func (f *inflightGroup) open() {
	f.mu.Lock()
	f.closed = false
	f.mu.Unlock()
}

// enter registers one piece of work; false means shutdown has begun and
// the work must not start.
func (f *inflightGroup) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

func (f *inflightGroup) leave() { f.wg.Done() }

// closeAndWait refuses new work and waits for the running work to end.
func (f *inflightGroup) closeAndWait() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}
