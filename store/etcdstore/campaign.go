package etcdstore

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// wantCampaign asks the campaigner to run soon (requests coalesce).
func (s *Store) wantCampaign() {
	select {
	case s.campaign <- struct{}{}:
	default:
	}
}

// campaigner runs a campaign when asked (an owner key gone, a new lease,
// new grants) and at every keepalive period (instances joined: hand
// grants over; a campaign that found its share full earlier).
func (s *Store) campaigner() {
	defer s.wg.Done()
	t := time.NewTicker(s.keepAliveEvery())
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.campaign:
		case <-t.C:
		}
		s.runCampaign(s.ctx)
	}
}

// campaignWorkers is how many create transactions a campaign has in flight.
const campaignWorkers = 16

// runCampaign takes unheld grants of this instance up to its share, and
// releases the ones beyond it that no refresh is using.
//
// The share is ceil(grants / live instances) + Slack, live instances
// being the keys under instances/ bound to a lease (liveInstances). A
// grant ownerless for two campaign periods is taken beyond the share
// (takeOrphans). The
// first instance of a fleet takes everything; as others register, it
// hands grants back at its next campaign (a quarter of the lease life),
// never one it promised a refresh (Holds) until that promise ran out.
// When ctx ends it sends no more transactions and returns once those in
// flight have; the next campaign takes what this one left.
func (s *Store) runCampaign(ctx context.Context) {
	s.campMu.Lock()
	defer s.campMu.Unlock()
	if ctx.Err() != nil || s.paused.Load() {
		return
	}
	live, err := s.liveInstances()
	if err != nil {
		return
	}
	grace := 2 * s.keepAliveEvery()
	now := s.clock()
	s.mu.Lock()
	lease := s.lease
	if lease == 0 {
		s.mu.Unlock()
		return
	}
	instances := max(len(live), 1)
	share := (len(s.grants)+instances-1)/instances + s.slack
	held := 0
	var want, release, orphans []string
	orphanSince := map[string]time.Time{}
	for g := range s.grants {
		o, owned := s.owners[g]
		owned = owned && o.lease != 0 // a key without a lease is no instance's
		conflict := s.conflictLocked(g) != ""
		switch {
		case owned && o.lease == lease:
			held++
			if conflict && !s.busyUntil[g].After(now) {
				release = append(release, g)
			}
		case !owned && !conflict:
			want = append(want, g)
			since, ok := s.orphanSince[g]
			if !ok {
				since = now
			}
			orphanSince[g] = since
			if now.Sub(since) >= grace {
				orphans = append(orphans, g)
			}
		}
	}
	s.orphanSince = orphanSince
	// Grants held but no longer this instance's (a reload dropped them).
	for g, o := range s.owners {
		if _, ok := s.grants[g]; !ok && o.lease == lease && o.inst == s.inst {
			release = append(release, g)
		}
	}
	// The lightest other live instance: an instance holding two or more
	// grants beyond it hands grants over (down to the fair share, at
	// least one), and one holding more than it takes none, so that an
	// instance that joins, or returns after losing its lease, gets its
	// part within a few campaigns while the slack above does not keep
	// the others at their share plus one.
	fair := (len(s.grants) + instances - 1) / instances
	counts := map[string]int{}
	for g := range s.grants {
		if o, ok := s.owners[g]; ok && o.lease != 0 && o.lease != lease {
			counts[o.inst]++
		}
	}
	lightest := -1
	for inst := range live {
		if inst != s.inst && (lightest < 0 || counts[inst] < lightest) {
			lightest = counts[inst]
		}
	}
	excess := held - len(release) - share
	if lightest >= 0 && held-len(release)-lightest >= 2 {
		excess = max(excess, held-len(release)-fair, 1)
	}
	if excess > 0 && !now.Before(s.keepExcessUntil) {
		var spare []string
		for g, o := range s.owners {
			if _, ok := s.grants[g]; ok && o.lease == lease && !s.busyUntil[g].After(now) && s.conflictLocked(g) == "" {
				spare = append(spare, g)
			}
		}
		rand.Shuffle(len(spare), func(i, j int) { spare[i], spare[j] = spare[j], spare[i] })
		release = append(release, spare[:min(excess, len(spare))]...)
	}
	// From here Holds refuses them: a refresh promised between this choice
	// and the deletes would be sent for a grant another instance takes.
	for _, g := range release {
		s.releasing[g] = true
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, g := range release {
			delete(s.releasing, g)
		}
		s.mu.Unlock()
	}()

	for _, g := range release {
		k := s.key("owners/" + g)
		ctx, cancel := s.req()
		_, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(k), "=", s.inst), clientv3.Compare(clientv3.LeaseValue(k), "=", int64(lease))).
			Then(clientv3.OpDelete(k)).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			return
		}
		s.mu.Lock()
		if o, ok := s.owners[g]; ok && o.lease == lease {
			delete(s.owners, g)
		}
		s.mu.Unlock()
		held--
	}
	defer s.takeOrphans(ctx, orphans, lease, grace)
	room := share - max(held, 0)
	if lightest >= 0 && lightest < held {
		room = 0 // a lighter instance takes them
	}
	if room <= 0 || len(want) == 0 {
		return
	}
	// Each instance tries the grants in its own order, so that instances
	// starting together do not all race for the same ones.
	rand.Shuffle(len(want), func(i, j int) { want[i], want[j] = want[j], want[i] })
	// Grants in flight count against the room too: an instance takes at
	// most its share, not its share plus what its workers were sent.
	var taken, inflight atomic.Int64
	var wg sync.WaitGroup
	next := make(chan []string)
	done := make(chan struct{}, campaignWorkers)
	for range min(campaignWorkers, len(want)) {
		wg.Go(func() {
			for gs := range next {
				taken.Add(int64(s.takeGrants(gs, lease)))
				inflight.Add(-int64(len(gs)))
				select {
				case done <- struct{}{}:
				default: // a wake-up is pending already
				}
			}
		})
	}
	for len(want) > 0 && ctx.Err() == nil {
		left := room - int(taken.Load()) - int(inflight.Load())
		if left <= 0 {
			if inflight.Load() == 0 {
				break
			}
			<-done // the outcome of a batch in flight
			continue
		}
		// Batches while there is room for them (a fleet's first start
		// with many grants), one at a time near the share.
		n := min(len(want), campaignBatch, max(1, left/(2*campaignWorkers)))
		inflight.Add(int64(n))
		next <- want[:n]
		want = want[n:]
	}
	close(next)
	wg.Wait()
}

// orphanKeep is how many grace periods an instance that took grants
// beyond its share (orphans) keeps them before handing the excess back.
const orphanKeep = 8

// takeOrphans takes the grants that stayed ownerless for grace or longer,
// beyond this instance's share: the instances counted in the share did not
// take them (one whose definition differs, or instance keys that are not
// tokend instances), and a grant with no owner is refreshed by nobody.
// The excess is then kept a while rather than handed back at once to
// instances that may not take it again.
func (s *Store) takeOrphans(ctx context.Context, orphans []string, lease clientv3.LeaseID, grace time.Duration) {
	taken := 0
	for _, g := range orphans {
		s.mu.Lock()
		o, owned := s.owners[g]
		s.mu.Unlock()
		if (owned && o.lease != 0) || ctx.Err() != nil {
			continue
		}
		if s.takeGrant(g, lease) {
			taken++
		}
	}
	if taken == 0 {
		return
	}
	s.mu.Lock()
	s.keepExcessUntil = s.clock().Add(orphanKeep * grace)
	s.mu.Unlock()
	s.log.Warn("store: etcd: took grants nobody held beyond this instance's share", "instance", s.inst, "grants", taken)
}

// liveInstances returns the names of the instances registered under
// instances/ with a lease. etcd deletes a key when its lease ends and
// refuses a put with a lease that does not exist, so a key with a lease
// is a live one; a key without (not written by a tokend instance) does
// not count.
func (s *Store) liveInstances() (map[string]bool, error) {
	ip := s.key("instances/")
	ctx, cancel := s.req()
	// Not WithKeysOnly: it answers without the keys' leases.
	ir, err := s.cli.Get(ctx, ip, clientv3.WithPrefix())
	cancel()
	if err != nil {
		s.noteErr(err)
		return nil, unavailable("read instances", err)
	}
	live := make(map[string]bool, len(ir.Kvs))
	for _, kv := range ir.Kvs {
		if kv.Lease != 0 {
			live[string(kv.Key[len(ip):])] = true
		}
	}
	return live, nil
}

// campaignBatch is how many grants one transaction may take at once.
const campaignBatch = 64

// takeGrants takes the grants gs for this instance under lease: all in one
// transaction if none is held, else one by one. It says how many it took.
func (s *Store) takeGrants(gs []string, lease clientv3.LeaseID) int {
	if len(gs) > 1 {
		cmps := make([]clientv3.Cmp, len(gs))
		ops := make([]clientv3.Op, len(gs))
		for i, g := range gs {
			k := s.key("owners/" + g)
			cmps[i] = clientv3.Compare(clientv3.LeaseValue(k), "=", 0)
			ops[i] = clientv3.OpPut(k, s.inst, clientv3.WithLease(lease))
		}
		ctx, cancel := s.req()
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			return 0
		}
		if resp.Succeeded {
			s.mu.Lock()
			for _, g := range gs {
				s.owners[g] = owner{inst: s.inst, lease: lease}
			}
			s.mu.Unlock()
			return len(gs)
		}
	}
	n := 0
	for _, g := range gs {
		if s.takeGrant(g, lease) {
			n++
		}
	}
	return n
}

// takeGrant puts owners/<grant> for this instance under lease, if nobody
// holds it: the key is absent or bound to no lease (etcd compares an
// absent key's lease as 0). Every instance writes its owner keys with its
// lease, so a key without one was written by something else and holds
// nothing.
func (s *Store) takeGrant(g string, lease clientv3.LeaseID) bool {
	k := s.key("owners/" + g)
	ctx, cancel := s.req()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(k), "=", 0)).
		Then(clientv3.OpPut(k, s.inst, clientv3.WithLease(lease))).Commit()
	cancel()
	if err != nil {
		s.noteErr(err)
		return false
	}
	if !resp.Succeeded {
		return false
	}
	s.mu.Lock()
	s.owners[g] = owner{inst: s.inst, lease: lease}
	s.mu.Unlock()
	return true
}

// Holds reports whether this instance may refresh grant now: it holds the
// grant's lease with at least margin of it left (by the last keepalive
// answer), the last renewal landed (through a member with a leader) and
// no request has failed for want of a quorum since, and the definitions
// agree. A true answer is a promise too: the grant is not handed to
// another instance by this one's balancing until margin has passed.
func (s *Store) Holds(grant string, margin time.Duration) bool {
	if s.closed.Load() || !s.quorum.Load() || !s.renewed.Load() {
		return false
	}
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owners[grant]
	if !ok || s.lease == 0 || o.lease != s.lease || s.leaseExp.Sub(now) < margin || s.conflictLocked(grant) != "" || s.releasing[grant] {
		return false
	}
	if _, mine := s.grants[grant]; !mine {
		return false
	}
	if u := now.Add(margin); u.After(s.busyUntil[grant]) {
		s.busyUntil[grant] = u
	}
	return true
}

// GrantInfo is the fleet's view of grant, for status and metrics.
func (s *Store) GrantInfo(grant string) store.FleetGrant {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owners[grant]
	var fg store.FleetGrant
	if ok {
		fg.Owner = o.inst
		fg.Held = s.lease != 0 && o.lease == s.lease && s.leaseExp.After(s.clock())
	}
	fg.Conflict = s.conflictLocked(grant)
	return fg
}
