package hook

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/tokend/tokend/config"
)

const (
	// QueueSize bounds the events waiting for one hook; when it is full the
	// oldest is dropped.
	QueueSize = 256
	// attempts bounds the requests of one webhook delivery.
	attempts = 4
	// backoffFirst is the wait after a webhook's first failed attempt;
	// each further one doubles it.
	backoffFirst = time.Second
	// backoffMax caps the wait between two webhook attempts.
	backoffMax = 30 * time.Second
	// stderrTail is how much of a failed command's stderr is logged.
	stderrTail = 512
	// stopWait is how long Stop waits for the workers to end.
	stopWait = 5 * time.Second
)

// Metrics counts hook deliveries (metrics.Metrics does): result is
// success, failure, timeout or dropped, and d the time from the event to
// the end of its delivery.
type Metrics interface {
	ObserveHook(hook, result string, d time.Duration)
}

// Engine is what the hooks need of the engine that runs them.
type Engine struct {
	// Log takes the hooks' log lines.
	Log *slog.Logger
	// WarnLimited logs a warning that may repeat at most so often per key.
	WarnLimited func(key, msg string, args ...any)
	// Metrics, if not nil, counts deliveries.
	Metrics Metrics
	// Wait returns after d, or false as soon as ctx ends; the waits
	// between webhook attempts run on it, so they follow the engine's
	// clock. Nil waits on real time.
	Wait func(ctx context.Context, d time.Duration) bool
}

// Set is the runners of the configured hooks, replaced on reload.
type Set struct {
	eng     Engine
	mu      sync.Mutex // guards runners and stopped; held while enqueueing
	runners []*runner
	stopped bool            // no more workers start: wg.Add happens before wg.Wait
	ctx     context.Context // cancelled by Stop: kills what runs, drops what waits
	stop    context.CancelFunc
	wg      sync.WaitGroup
	client  *http.Client
}

type runner struct {
	s     *Set
	cfg   config.Hook
	label string

	mu      sync.Mutex
	queue   []*Event
	running bool
}

// NewSet returns a Set with no hooks.
func NewSet(eng Engine) *Set {
	if eng.Wait == nil {
		eng.Wait = realWait
	}
	s := &Set{eng: eng}
	s.ctx, s.stop = context.WithCancel(context.Background())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	s.client = &http.Client{
		Transport: tr,
		// A redirect could lead to plain http or another host; the
		// receiver must answer itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// Configure installs hooks. A hook whose configuration did not change
// keeps its runner and queue, so a reload does not reorder its events.
func (s *Set) Configure(hooks []config.Hook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	runners := make([]*runner, 0, len(hooks))
	for i, hc := range hooks {
		label := hc.Label(i)
		var r *runner
		for _, o := range s.runners {
			if o.label == label && reflect.DeepEqual(o.cfg, hc) {
				r = o
				break
			}
		}
		if r == nil {
			r = &runner{s: s, cfg: hc, label: label}
			if r.cfg.Timeout <= 0 {
				r.cfg.Timeout = config.DefaultHookTimeout
			}
		}
		runners = append(runners, r)
	}
	s.runners = runners
}

// Stop kills what hooks run, drops what waits and waits (a little) for
// the workers to end; it reports whether they did.
func (s *Set) Stop() bool {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(stopWait):
		return false
	}
}

// Emit queues e (its ID left empty: Emit gives it one) for the hooks that
// want its event and grant. It never blocks.
func (s *Set) Emit(e Event) {
	s.mu.Lock() // enqueue never blocks: a short hold
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	var ep *Event
	for _, r := range s.runners {
		if !r.cfg.Wants(e.Event, e.Grant) {
			continue
		}
		if ep == nil {
			ep = new(Event)
			*ep = e
			ep.ID = rand.Text()
			ep.queued = time.Now()
		}
		r.enqueue(ep)
	}
}

// enqueue queues e; the caller holds r.s.mu.
func (r *runner) enqueue(e *Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= QueueSize {
		old := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.observe("dropped", 0)
		r.s.eng.WarnLimited("hook dropped "+r.label, "hook queue full: dropped the oldest events",
			"hook", r.label, "last_event", old.Event, "last_grant", old.Grant)
	}
	r.queue = append(r.queue, e)
	if !r.running {
		r.running = true
		r.s.wg.Add(1)
		go r.loop()
	}
}

func (r *runner) loop() {
	defer r.s.wg.Done()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 || r.s.ctx.Err() != nil {
			r.queue = nil
			r.running = false
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.mu.Unlock()
		r.deliver(e)
	}
}

func (r *runner) observe(result string, d time.Duration) {
	if m := r.s.eng.Metrics; m != nil {
		m.ObserveHook(r.label, result, d)
	}
}

func (r *runner) deliver(e *Event) {
	var result string
	var err error
	if len(r.cfg.Command) > 0 {
		result, err = r.runCommand(e)
	} else {
		result, err = r.post(e)
	}
	if r.s.ctx.Err() != nil {
		return // shutting down: not the hook's failure
	}
	latency := time.Since(e.queued)
	r.observe(result, latency)
	if result == "success" {
		r.s.eng.Log.Debug("hook delivered", "hook", r.label, "event", e.Event, "grant", e.Grant, "latency", latency)
		return
	}
	r.s.eng.WarnLimited("hook failed "+r.label, "hook failed", "hook", r.label, "event", e.Event, "grant", e.Grant, "result", result, "err", err)
}

// realWait is Engine.Wait on real time.
func realWait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
