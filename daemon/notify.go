package daemon

// What the daemon reports of its grants: each token published to the
// Metrics, the count of grants holding a valid token to the Notifier.

import (
	"fmt"

	"github.com/tokend/tokend/store"
)

func (d *Daemon) publishMetrics(name string, t *store.Token, p Policy) {
	d.metrics.SetState(name, t.State)
	d.metrics.SetFailures(name, t.Failures)
	if t.AccessToken != "" {
		d.metrics.SetExpiry(name, expiryOf(t, p), t.RefreshExpiry)
	}
	if !t.LastSuccess.IsZero() {
		d.metrics.SetLastSuccess(name, t.LastSuccess)
	}
}

// notifyStatus tells the service manager how many grants hold a valid token.
func (d *Daemon) notifyStatus() {
	d.mu.RLock()
	ticks := d.ticks
	d.mu.RUnlock()
	at := int64(d.clock.Now().Sub(d.epoch))
	valid := 0
	for _, ts := range ticks {
		if at < ts.validUntil.Load() {
			valid++
		}
	}
	d.sendStatus(valid, len(ticks))
}

func (d *Daemon) sendStatus(valid, total int) {
	_ = d.notifier.Status(fmt.Sprintf("%d of %d grants hold a valid token", valid, total))
}
