package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// errNotHolder ends a refresh round whose instance no longer holds the
// grant (or lost etcd's quorum) before its next request: nothing was sent,
// nothing is recorded.
var errNotHolder = errors.New("fleet: this instance does not hold the grant's refresh lease")

// fleetMargin is the lease time a refresh request needs left when it is
// sent, and fleetRequestTimeout bounds that request (see fleet.go's doc).
func fleetMargin(cfg *config.Config) time.Duration {
	return fleetRequestTimeout(cfg) + cfg.Store.Etcd.LeaseTTL/10
}

func fleetRequestTimeout(cfg *config.Config) time.Duration {
	t := cfg.Refresh.Timeout
	if half := cfg.Store.Etcd.LeaseTTL / 2; half > 0 && (t <= 0 || half < t) {
		t = half
	}
	return t
}

// fleetHolds reports whether this instance may send a refresh of g now.
func (d *Daemon) fleetHolds(g *grant) bool {
	cfg, _ := d.config()
	return d.fleet.fl.Holds(g.name, fleetMargin(cfg))
}

// fleetObtain is obtain in fleet mode: it sends the request only while
// this instance holds the grant with margin to spare, and bounds it so it
// ends before the lease can lapse.
func (d *Daemon) fleetObtain(ctx context.Context, g *grant, cur *store.Token) (*oauth.Token, string, error) {
	if d.fleet == nil {
		return d.obtain(ctx, g, cur)
	}
	if !d.fleetHolds(g) {
		return nil, "", errNotHolder
	}
	cfg, _ := d.config()
	ctx, cancel := context.WithTimeout(ctx, fleetRequestTimeout(cfg))
	defer cancel()
	return d.obtain(ctx, g, cur)
}

// fleetAbandoned ends a refresh round that lost the grant before sending:
// the grant shows what it showed before the round.
func (d *Daemon) fleetAbandoned(g *grant) *store.Token {
	t := g.cur.Load()
	d.metrics.SetState(g.name, g.stateOf(t))
	d.log.Debug("fleet: refresh not sent: this instance no longer holds the grant", "grant", g.name)
	return t
}

// fleetRefuseManual refuses an operator's refresh on an instance that does
// not refresh g, naming the one that does.
func (d *Daemon) fleetRefuseManual(g *grant) error {
	if d.fleet == nil || d.fleetHolds(g) {
		return nil
	}
	desc := d.fleetWhy(g, "not refreshed here")
	if info := d.fleet.fl.GrantInfo(g.name); info.Owner != "" && !info.Held && info.Conflict == "" {
		desc += ": run tokend refresh " + g.name + " on " + info.Owner + " (its token reaches this instance through etcd)"
	}
	return newError(kindUnavailable, api.CodeTemporarilyUnavailable, desc)
}
