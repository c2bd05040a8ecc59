package daemon

// Start pages in fleet mode. The start URL that `tokend authorize` prints
// is on the redirect URI's host, the load balancer, which may send it to
// any instance; so the instance that starts an authorization also keeps
// its start page in the fleet (sealed: the state and the provider's URL
// are secrets), and an instance that does not know a start id takes it
// from there. A page is used once fleet-wide: taking it deletes it, and
// one served from this instance's memory is deleted from the fleet as
// well. Binding the pending authorization (BindPending, on the start hash)
// stays the store's single-use check either way.

import (
	"errors"

	"github.com/tokend/tokend/store"
)

// errStartExpired is fleetTakeStart's answer for a page past its deadline.
var errStartExpired = errors.New("start page expired")

// fleetPutStart keeps the start page p under key in the fleet; nothing
// without fleet mode.
func (d *Daemon) fleetPutStart(key string, p startPage) error {
	if d.fleet == nil {
		return nil
	}
	return d.fleet.fl.PutStart(key, store.StartPage{State: p.state, AuthURL: p.authURL, Secure: p.secure, Deadline: p.deadline})
}

// fleetTakeStart completes the lookup of the start page under key in
// fleet mode: a page found in memory (ok) is removed from the fleet too,
// and one not found is taken from the fleet. It returns the page and
// whether there is one; an error (errStartExpired, or the store's) only
// when a page was not found in memory. Without fleet mode it returns sp
// and ok as given.
func (d *Daemon) fleetTakeStart(key string, sp startPage, ok bool) (startPage, bool, error) {
	if d.fleet == nil {
		return sp, ok, nil
	}
	now := d.clock.Now()
	p, err := d.fleet.fl.TakeStart(key, now)
	if ok {
		// Served from memory: the fleet's copy only goes. If another
		// instance used it meanwhile, BindPending refuses.
		if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) {
			d.log.Warn("removing a start page from the fleet", "err", err)
		}
		return sp, true, nil
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return startPage{}, false, nil
	case errors.Is(err, store.ErrExpired):
		return startPage{}, false, errStartExpired
	case err != nil:
		return startPage{}, false, err
	}
	return startPage{state: p.State, authURL: p.AuthURL, secure: p.Secure, deadline: p.Deadline}, true, nil
}
