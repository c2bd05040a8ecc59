package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// keepAliveEvery is how often the lease is renewed: a quarter of its
// life, so a healthy instance always has at least three quarters left.
func (s *Store) keepAliveEvery() time.Duration {
	s.mu.Lock()
	ttl := s.leaseTTL
	s.mu.Unlock()
	return max(ttl/4, 100*time.Millisecond)
}

// try is the context of one try of a request that is tried again at once
// when it fails (a lease renewal, a token write): bounded by the renewal
// period (at least 500 ms, at most RequestTimeout), so that a try held by
// a member that lost its leader leaves time for another before the lease
// can run out.
func (s *Store) try() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, min(s.reqTO, max(s.keepAliveEvery(), 500*time.Millisecond)))
}

// newLease takes a fresh lease and registers the instance under it.
func (s *Store) newLease(ctx context.Context) error {
	secs := int64((s.ttl + time.Second - 1) / time.Second)
	sent := s.clock()
	gr, err := s.cli.Grant(ctx, secs)
	if err != nil {
		s.noteErr(err)
		return unavailable("take a lease", err)
	}
	iv, _ := json.Marshal(map[string]any{"started": sent.UTC()})
	// Not while a rekey runs: Rekey checks that no instance is registered
	// after it has put its marker, so one of the two refuses.
	rk := s.key(rekeyMarker)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(rk), "=", 0)).
		Then(clientv3.OpPut(s.key("instances/"+s.inst), string(iv), clientv3.WithLease(gr.ID))).Commit()
	if err == nil && !resp.Succeeded {
		err = errRekeying
	}
	if err != nil {
		_, _ = s.cli.Revoke(ctx, gr.ID)
		s.noteErr(err)
		if errors.Is(err, errRekeying) {
			return store.NewError(store.ErrLocked, nil, fmt.Sprintf("store: etcd prefix %s is being rekeyed (tokend rekey): start the instances once it has finished, with the new key", s.pfx))
		}
		return unavailable("register the instance", err)
	}
	ttl := time.Duration(gr.TTL) * time.Second
	s.mu.Lock()
	s.lease, s.leaseTTL, s.leaseExp = gr.ID, ttl, sent.Add(ttl)
	s.mu.Unlock()
	s.log.Info("store: etcd lease taken", "instance", s.inst, "ttl", ttl)
	return nil
}

// keepAlive renews the lease, one request at a time, stamping its expiry
// from when the request was sent (the server's clock starts later, never
// earlier). A lease found expired (a pause, a partition longer than its
// life) is replaced by a new one and every grant campaigned for again.
func (s *Store) keepAlive() {
	defer s.wg.Done()
	t := time.NewTimer(s.keepAliveEvery())
	defer t.Stop()
	failed := 0 // renewals failed in a row
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		case <-s.renewNow:
		}
		t.Reset(s.keepAliveEvery())
		if s.paused.Load() {
			continue
		}
		s.mu.Lock()
		lease := s.lease
		s.mu.Unlock()
		if lease == 0 {
			ctx, cancel := s.req()
			// The store may have been rekeyed while this instance had no
			// lease (a pause, a partition): it must not write with the
			// old key, so it checks the key before registering again.
			err := s.checkMeta(ctx)
			if err == nil {
				err = s.newLease(ctx)
			} else if !errors.Is(err, store.ErrUnavailable) {
				s.log.Error("store: etcd: not registering again: the store no longer opens with this instance's key (rekeyed?); restart it with the current key", "instance", s.inst, "err", err)
			}
			cancel()
			if err == nil {
				failed = 0
				s.renewed.Store(true)
				s.quorum.Store(true)
				s.wantCampaign()
			}
			continue
		}
		sent := s.clock()
		ctx, cancel := s.try()
		resp, err := s.cli.KeepAliveOnce(clientv3.WithRequireLeader(ctx), lease)
		cancel()
		switch {
		case err == nil:
			failed = 0
			s.renewed.Store(true)
			s.quorum.Store(true)
			s.mu.Lock()
			if s.lease == lease {
				s.leaseExp = sent.Add(time.Duration(resp.TTL) * time.Second)
			}
			s.mu.Unlock()
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			failed = 0
			s.renewed.Store(true)
			s.quorum.Store(true)
			s.log.Warn("store: etcd lease expired; taking a new one", "instance", s.inst)
			s.loseLease(lease)
			t.Reset(0)
		default:
			if s.ctx.Err() != nil {
				return
			}
			// Nothing is refreshed until a renewal lands again. One
			// failure is tried again at once: it may have been held by
			// a member that lost its leader meanwhile (the client's
			// balancer sends the next try to another member). A second
			// one in a row says the cluster has no quorum.
			s.renewed.Store(false)
			if failed++; failed == 1 {
				s.log.Debug("store: etcd lease renewal failed; trying again at once", "instance", s.inst, "err", err)
				t.Reset(0)
				continue
			}
			s.quorum.Store(false)
			s.log.Warn("store: etcd lease not renewed", "instance", s.inst, "err", err)
		}
	}
}

// loseLease forgets lease and every grant held by it.
func (s *Store) loseLease(lease clientv3.LeaseID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lease != lease {
		return
	}
	s.lease, s.leaseExp = 0, time.Time{}
	for g, o := range s.owners {
		if o.lease == lease {
			delete(s.owners, g)
		}
	}
}

// loadOwners reads who holds which grant; it is also the resync of the
// owners/ watch after a compaction.
func (s *Store) loadOwners(ctx context.Context) (int64, error) {
	op := s.key("owners/")
	owners := map[string]owner{}
	rev, err := s.walk(ctx, op, false, func(kv *mvccpb.KeyValue) error {
		owners[string(kv.Key[len(op):])] = owner{inst: string(kv.Value), lease: clientv3.LeaseID(kv.Lease)}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.owners = owners
	s.mu.Unlock()
	s.wantCampaign()
	return rev, nil
}

func (s *Store) applyOwner(ev *clientv3.Event) {
	g := string(ev.Kv.Key[len(s.key("owners/")):])
	s.mu.Lock()
	if ev.Type == clientv3.EventTypeDelete {
		delete(s.owners, g)
		_, mine := s.grants[g]
		s.mu.Unlock()
		if mine {
			s.wantCampaign()
		}
		return
	}
	s.owners[g] = owner{inst: string(ev.Kv.Value), lease: clientv3.LeaseID(ev.Kv.Lease)}
	s.mu.Unlock()
}

// follow keeps a watch on prefix from revision from+1, calling apply for
// each event. A broken watch resumes from the last revision applied; after
// a compaction resync reads the prefix afresh. Retries back off, with
// jitter so that a fleet does not come back all at once. state, when not
// nil, is told whether the watch runs.
func (s *Store) follow(ctx context.Context, prefix string, from int64, apply func(ev *clientv3.Event), resync func(context.Context) (int64, error), state *atomic.Bool) {
	rev := from
	backoff := minWatchBackoff
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		// WithCreatedNotify: the watch counts as running once a member
		// with a leader has created it, not at its first event (a fresh
		// prefix may have none for a long time).
		wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
		compacted, noLeader := false, false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				noLeader = isNoLeader(err)
				break
			}
			if state != nil {
				state.Store(true)
				s.watchDown.Store(0)
			}
			backoff = minWatchBackoff
			for _, ev := range resp.Events {
				apply(ev)
				rev = max(rev, ev.Kv.ModRevision)
			}
			// A progress notification says nothing older is to come; the
			// creation notice comes before the events from rev+1.
			if len(resp.Events) == 0 && !resp.Created && resp.Header.Revision > rev {
				rev = resp.Header.Revision
			}
			if state != nil && len(wch) == 0 {
				s.lagNs.Store(0) // caught up
			}
		}
		cancel()
		if state != nil && state.Swap(false) {
			s.watchDown.Store(s.clock().UnixNano())
		}
		if ctx.Err() != nil {
			return
		}
		if noLeader && !compacted {
			// The member the watch was on lost its leader: another one
			// may have one, and the client's balancer picks another for
			// the next watch. Only a short pause, no backing off.
			backoff = minWatchBackoff
		}
		if !sleep(ctx, backoff/2+rand.N(backoff)) {
			return
		}
		backoff = min(2*backoff, 2*time.Second)
		if compacted {
			// Every instance of the fleet meets the compaction at once:
			// spread their full reads over a second.
			if !sleep(ctx, rand.N(time.Second)) {
				return
			}
			s.log.Warn("store: etcd watch compacted; reading afresh", "prefix", prefix, "from", rev)
			r, err := resync(ctx)
			if err != nil {
				continue // compacted again next time round, after a longer wait
			}
			rev = r
		}
	}
}

// minWatchBackoff is the first wait before a broken watch is set up again.
const minWatchBackoff = 50 * time.Millisecond

// sleep waits d or until ctx ends; false: it ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Watch calls fn with every token record another instance writes, in
// revision order, from the revision of the last EachToken (or from now,
// without one), until ctx ends or the store is closed: it returns then,
// and fn, called on Watch's goroutine, is not called after. A broken watch resumes
// from its last revision; after a compaction every record newer than
// this instance has seen is delivered, after a jittered wait.
func (s *Store) Watch(ctx context.Context, fn func(t store.Token)) {
	if s.check() != nil {
		return
	}
	s.mu.Lock()
	from := s.loadRev
	s.mu.Unlock()
	if from == 0 {
		c, cancel := s.req()
		resp, err := s.cli.Get(c, s.key("meta"))
		cancel()
		if err == nil {
			from = resp.Header.Revision
		}
	}
	tp := s.key("tokens/")
	deliver := func(kv *mvccpb.KeyValue) {
		grant := string(kv.Key[len(tp):])
		s.mu.Lock()
		old := kv.ModRevision <= s.seen[grant]
		s.mu.Unlock()
		if old {
			return
		}
		// A record that does not decode is still seen: the owner's next
		// write is fenced on its revision and replaces it, instead of
		// being refused as if another instance had written a newer chain.
		s.saw(grant, kv.ModRevision)
		t, env, err := s.decodeToken(grant, kv.Value)
		if err != nil {
			s.badRecords.Add(1)
			s.log.Error("store: etcd watch: a token record does not decode; skipped", "grant", grant, "revision", kv.ModRevision, "err", err)
			return
		}
		if env.Writer == s.inst {
			return
		}
		if !env.At.IsZero() {
			s.lagNs.Store(int64(max(0, s.clock().Sub(env.At))))
		}
		fn(t)
	}
	// The watch ends with ctx or with Close, whichever comes first.
	wctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	s.follow(wctx, tp, from, func(ev *clientv3.Event) {
		if ev.Type == clientv3.EventTypePut {
			deliver(ev.Kv)
		}
	}, func(c context.Context) (int64, error) {
		return s.walk(c, tp, false, func(kv *mvccpb.KeyValue) error { deliver(kv); return nil })
	}, &s.watchOK)
}
