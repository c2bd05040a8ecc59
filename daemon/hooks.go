package daemon

// Hooks: package hook runs them; the engine decides which event fires
// when (config/hooks.go lists them) and what it says.

import (
	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/hook"
	"github.com/tokend/tokend/store"
)

// newHooks returns d's hooks, none configured yet.
func (d *Daemon) newHooks() *hook.Set {
	m, _ := d.metrics.(hook.Metrics)
	return hook.NewSet(hook.Engine{Log: d.log, WarnLimited: d.warnLimited, Metrics: m, Wait: d.wait})
}

// configureHooks installs the hooks of cfg. A hook whose configuration
// did not change keeps its runner and queue, so a reload does not reorder
// its events.
func (d *Daemon) configureHooks(cfg *config.Config) { d.hooks.Configure(cfg.Hooks) }

// stopHooks kills what hooks run, drops what waits and waits (a little)
// for the workers to end.
func (d *Daemon) stopHooks() {
	if !d.hooks.Stop() {
		d.log.Warn("hooks still running at exit")
	}
}

// emit tells the hooks that want it about event on g, whose record is now
// t. It never blocks.
func (d *Daemon) emit(g *grant, event string, t *store.Token) {
	e := hook.Event{Event: event, Grant: g.name, State: t.State,
		Error: t.LastError, ErrorCode: t.LastErrorCode, Time: d.clock.Now().UTC(),
		Generation: t.Generation}
	if t.AccessToken != "" {
		e.ExpiresAt = t.Expiry.UTC()
	}
	d.hooks.Emit(e)
}

// emitFailure emits event for a failed attempt of g, with the record the
// failure gives it.
func (d *Daemon) emitFailure(g *grant, p Policy, event string, err error) {
	n := d.withFailure(g, p, err)
	d.emit(g, event, &n)
}

// emitObtained emits refreshed for a new token set n, and recovered when
// the grant was in trouble before (prior is its state then).
func (d *Daemon) emitObtained(g *grant, prior string, n *store.Token) {
	d.emit(g, config.EventRefreshed, n)
	switch prior {
	case api.StateFailing, api.StateExpired, api.StateReauthorizationRequired, api.StateCredentialsError, api.StateConfigurationError:
		d.emit(g, config.EventRecovered, n)
	}
}

// emitTransition emits reauthorization_required or expired when a failure
// moves g into that state from another (prior).
func (d *Daemon) emitTransition(g *grant, prior string, n *store.Token) {
	if n.State == prior {
		return
	}
	switch n.State {
	case api.StateReauthorizationRequired:
		d.emit(g, config.EventReauthorizationRequired, n)
	case api.StateExpired:
		d.emit(g, config.EventExpired, n)
	}
}
