package daemon

import (
	"sync"
	"time"
)

// warnEvery is the least time between two log lines of one warning that
// events can repeat many times a second (a hook dropping events, a
// failing delivery, a refused callback): the first is logged at once, the
// next ones at most this often, each line with the count of events since
// the previous line. The events are counted by metrics all the same.
const warnEvery = time.Minute

// logLimiter rate-limits repeated warnings per key (a hook, a grant, a
// listener). Safe for concurrent use.
type logLimiter struct {
	mu   sync.Mutex
	keys map[string]*limitedLine
}

type limitedLine struct {
	last time.Time // when the key's last line was logged
	held int       // events since then that were not logged
}

// allow records one event of key at now. It reports whether to log a line
// for it, and n, how many events that line stands for: this one and those
// held back since the key's previous line. A wall clock that stepped back
// lets the next event through.
func (l *logLimiter) allow(key string, now time.Time) (n int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = make(map[string]*limitedLine)
	}
	s := l.keys[key]
	if s == nil {
		s = &limitedLine{}
		l.keys[key] = s
	} else if now.Sub(s.last) < warnEvery && !now.Before(s.last) {
		s.held++
		return 0, false
	}
	n, s.last, s.held = s.held+1, now, 0
	return n, true
}

// warnLimited logs msg at WARN for key at most once per warnEvery, with
// args and "events": the events of key since its previous line, this one
// included. The events in between are not logged.
func (d *Daemon) warnLimited(key, msg string, args ...any) {
	n, ok := d.warns.allow(key, d.clock.Now())
	if !ok {
		return
	}
	d.log.Warn(msg, append(args, "events", n)...)
}
