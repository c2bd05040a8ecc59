package etcdstore

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// Lock takes the fleet-wide lock of name: a key under locks/ bound to this
// instance's lease, so an instance that dies releases it within the
// lease's life. It waits (watching the key) until the lock is free or ctx
// ends. It is not concurrency.Mutex: that needs a concurrency.Session,
// which renews the lease on its own, behind this instance's tracking of
// when its lease ends (and keeps it alive when this instance would not).
func (s *Store) Lock(ctx context.Context, name string) (func(), error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	k := s.key("locks/" + name)
	for {
		s.mu.Lock()
		lease := s.lease
		s.mu.Unlock()
		if lease == 0 {
			return nil, store.NewError(store.ErrUnavailable, nil, "store: etcd: lock "+name+": this instance has no lease")
		}
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Txn(rctx).
			// Free: absent, or a key bound to no lease (no holder's).
			If(clientv3.Compare(clientv3.LeaseValue(k), "=", 0)).
			Then(clientv3.OpPut(k, s.inst, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(k)).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, unavailable("lock "+name, err)
		}
		if resp.Succeeded {
			return func() {
				c, cancel := s.req()
				defer cancel()
				_, _ = s.cli.Txn(c).If(clientv3.Compare(clientv3.LeaseValue(k), "=", int64(lease))).Then(clientv3.OpDelete(k)).Commit()
			}, nil
		}
		// Held: wait for the key to go, then try again.
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, k, clientv3.WithRev(resp.Header.Revision+1))
	wait:
		for {
			select {
			case <-ctx.Done():
				wcancel()
				return nil, ctx.Err()
			case <-s.ctx.Done():
				wcancel()
				return nil, store.ErrClosed
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break wait
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete {
						break wait
					}
				}
			}
		}
		wcancel()
	}
}
