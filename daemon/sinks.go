package daemon

import (
	"maps"
	"slices"
	"strings"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/sink"
	"github.com/tokend/tokend/store"
)

// Sinks. Every configured sink has a worker (package sink); publish hands
// it the grant's newest token and never waits. The engine decides which
// sinks there are and what token each is offered.

// sinkEngine is what a sink worker needs of d.
func (d *Daemon) sinkEngine() sink.Engine {
	m, _ := d.metrics.(sink.Metrics)
	return sink.Engine{SelfUID: int(d.selfUID), Now: d.clock.Now, Log: d.log, WarnLimited: d.warnLimited, Metrics: m}
}

// sinkToken is what the sinks write of t under policy p; nil for none.
func sinkToken(t *store.Token, p Policy) *sink.Token {
	if t == nil {
		return nil
	}
	return &sink.Token{
		AccessToken: t.AccessToken, TokenType: t.TokenType, Scope: t.Scope,
		Expiry: t.Expiry, ExpiresAt: expiryOf(t, p), Generation: t.Generation,
	}
}

// sinkSet is every sink worker, by grant, then path.
type sinkSet map[string]map[string]*sink.Worker

// syncSinks makes the running workers those of the configuration: it
// stops the workers of sinks that are gone or changed, removes the files
// of sinks that are gone, starts workers for new or changed sinks and
// offers every worker its grant's current token. It runs after the tokens
// are loaded (start-up, reload).
func (d *Daemon) syncSinks() {
	d.sinkMu.Lock()
	defer d.sinkMu.Unlock()
	cfg, p := d.config()
	want := map[string]map[string]config.Sink{}
	for name, g := range cfg.Grants {
		for _, s := range g.Sinks {
			if want[name] == nil {
				want[name] = map[string]config.Sink{}
			}
			want[name][s.Path] = s
		}
	}
	paths := map[string]bool{}
	for _, ss := range want {
		for p := range ss {
			paths[p] = true
		}
	}
	next := sinkSet{}
	for name, ws := range d.sinks {
		for path, w := range ws {
			s, keep := want[name][path]
			if keep && sameSink(s, w.Config()) {
				if next[name] == nil {
					next[name] = map[string]*sink.Worker{}
				}
				next[name][path] = w
				continue
			}
			w.Halt()
			if !paths[path] {
				if err := w.RemoveFile(); err != nil {
					d.log.Warn("removing the file of a sink no longer configured", "grant", name, "path", path, "err", err)
				} else {
					d.log.Info("sink removed from the configuration; file removed", "grant", name, "path", path)
				}
			}
		}
	}
	for name, ss := range want {
		for path, s := range ss {
			if next[name][path] != nil {
				continue
			}
			w, err := sink.NewWorker(d.sinkEngine(), name, s)
			if err != nil {
				d.log.Error("sink not started", "grant", name, "path", path, "err", err)
				continue
			}
			if next[name] == nil {
				next[name] = map[string]*sink.Worker{}
			}
			next[name][path] = w
			w.Start()
		}
	}
	d.sinks = next
	// Every grant's token state learns its workers, and each worker is
	// offered the current token: start-up brings every sink up to date.
	for _, g := range d.grantList() {
		if len(next[g.name]) == 0 {
			g.sinks.Store(nil) // no allocation for each grant without sinks
			continue
		}
		ws := slices.Collect(maps.Values(next[g.name]))
		slices.SortFunc(ws, func(a, b *sink.Worker) int { return strings.Compare(a.Config().Path, b.Config().Path) })
		g.sinks.Store(&ws)
		t := sinkToken(g.cur.Load(), p)
		for _, w := range ws {
			w.Offer(t)
		}
	}
}

// stopSinks halts every worker at shutdown; the files stay.
func (d *Daemon) stopSinks() {
	d.sinkMu.Lock()
	defer d.sinkMu.Unlock()
	for _, ws := range d.sinks {
		for _, w := range ws {
			w.Halt()
		}
	}
	d.sinks = nil
	for _, g := range d.grantList() {
		g.sinks.Store(nil)
	}
}

// offerSinks hands t, under policy p, to the grant's sink workers.
func (ts *tokenState) offerSinks(t *store.Token, p Policy) {
	if ws := ts.sinks.Load(); ws != nil {
		st := sinkToken(t, p)
		for _, w := range *ws {
			w.Offer(st)
		}
	}
}

// sinkStatus lists the status of g's sinks.
func (g *grant) sinkStatus() []api.SinkStatus {
	ws := g.sinks.Load()
	if ws == nil || len(*ws) == 0 {
		return nil
	}
	out := make([]api.SinkStatus, 0, len(*ws))
	for _, w := range *ws {
		out = append(out, w.Status())
	}
	return out
}

func sameSink(a, b config.Sink) bool {
	return a.Path == b.Path && a.Format == b.Format && a.Mode == b.Mode && a.Owner == b.Owner && a.Group == b.Group &&
		slices.Equal(a.Command, b.Command) && a.CommandTimeout == b.CommandTimeout
}
