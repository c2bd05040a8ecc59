package etcdstore

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// SetGrants records this instance's grants and their fingerprints. A
// grant's fleet definition (defs/<grant>) is set by the first instance to
// name it; an instance with another fingerprint is in conflict for that
// grant (GrantInfo says so): it neither campaigns for nor refreshes it.
// The record may be replaced by the instance that wrote it (its
// definition changed on reload) or by anyone once that instance is gone,
// so a definition changed on every instance ends up agreed. It then
// campaigns for its share and returns. When ctx ends it stops early: with
// ctx's error while definitions are left to write (the next call writes
// them), without one once only the campaign was left (the next periodic
// campaign takes what it did not).
func (s *Store) SetGrants(ctx context.Context, fingerprints map[string]string) error {
	if err := s.check(); err != nil {
		return err
	}
	// ctx ends at the daemon's shutdown, Close ends s.ctx: either stops
	// the walk, the writes and the campaign (a first start of 100,000
	// grants writes for tens of seconds on a loaded cluster).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	dp := s.key("defs/")
	defs := map[string]def{}
	rev, err := s.walk(ctx, dp, false, func(kv *mvccpb.KeyValue) error {
		g := string(kv.Key[len(dp):])
		defs[g] = s.decodeDef(g, kv)
		return nil
	})
	if err != nil {
		return err
	}
	live, err := s.liveInstances()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(fingerprints))
	for g := range fingerprints {
		names = append(names, g)
	}
	sort.Strings(names)
	// Definitions to write go in batches, several in flight (a fleet's
	// first start with many grants writes them all).
	var batches [][]string
	var batch []string
	for _, g := range names {
		fp := fingerprints[g]
		d, ok := defs[g]
		if ok && (d.FP == fp || (d.By != s.inst && live[d.By])) {
			continue
		}
		if batch = append(batch, g); len(batch) == campaignBatch {
			batches, batch = append(batches, batch), nil
		}
	}
	if len(batch) > 0 {
		batches = append(batches, batch)
	}
	var wmu sync.Mutex // defs
	var firstErr error
	var wg sync.WaitGroup
	next := make(chan []string)
	for range min(campaignWorkers, len(batches)) {
		wg.Go(func() {
			for gs := range next {
				wmu.Lock()
				revs := make(map[string]def, len(gs))
				for _, g := range gs {
					revs[g] = defs[g]
				}
				wmu.Unlock()
				err := s.writeDefs(gs, fingerprints, revs)
				wmu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				for _, g := range gs {
					defs[g] = revs[g]
				}
				wmu.Unlock()
			}
		})
	}
send:
	for _, gs := range batches {
		select {
		case next <- gs:
		case <-ctx.Done():
			break send
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err // definitions left to write: not following yet
	}
	s.mu.Lock()
	first := !s.following
	s.following = true
	s.grants = make(map[string]string, len(fingerprints))
	for g, fp := range fingerprints {
		s.grants[g] = fp
	}
	for g, d := range defs {
		// The watch may have applied a newer record than this walk read.
		if cur, ok := s.defs[g]; !ok || cur.rev < d.rev {
			s.defs[g] = d
		}
	}
	s.mu.Unlock()
	if first {
		s.startDefsWatch(rev)
	}
	s.runCampaign(ctx)
	return nil
}

// writeDefs sets the fleet definitions of gs to fingerprints, each if its
// record is still the one in defs (absent: rev 0), in one transaction, or
// one by one if any moved; defs is updated with what the records hold.
func (s *Store) writeDefs(gs []string, fingerprints map[string]string, defs map[string]def) error {
	if len(gs) == 0 {
		return nil
	}
	if len(gs) > 1 {
		cmps := make([]clientv3.Cmp, len(gs))
		ops := make([]clientv3.Op, len(gs))
		for i, g := range gs {
			k := s.key("defs/" + g)
			v, err := s.codec.EncodeDef(g, fingerprints[g], s.inst)
			if err != nil {
				return fmt.Errorf("store: encode grant definition: %w", err)
			}
			cmps[i] = clientv3.Compare(clientv3.ModRevision(k), "=", defs[g].rev)
			ops[i] = clientv3.OpPut(k, string(v))
		}
		ctx, cancel := s.req()
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			return unavailable("write grant definitions", err)
		}
		if resp.Succeeded {
			for _, g := range gs {
				defs[g] = def{FP: fingerprints[g], By: s.inst, rev: resp.Header.Revision}
			}
			return nil
		}
	}
	for _, g := range gs {
		nd, err := s.writeDef(g, fingerprints[g], defs[g].rev)
		if err != nil {
			return err
		}
		defs[g] = nd
	}
	return nil
}

// writeDef sets grant's fleet definition, if its record is still at rev
// (0: absent); it returns what the record holds afterwards.
func (s *Store) writeDef(g, fp string, rev int64) (def, error) {
	k := s.key("defs/" + g)
	v, err := s.codec.EncodeDef(g, fp, s.inst)
	if err != nil {
		return def{}, fmt.Errorf("store: encode grant definition: %w", err)
	}
	ctx, cancel := s.req()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, string(v))).Else(clientv3.OpGet(k)).Commit()
	cancel()
	if err != nil {
		s.noteErr(err)
		return def{}, unavailable("write grant definition", err)
	}
	if resp.Succeeded {
		return def{FP: fp, By: s.inst, rev: resp.Header.Revision}, nil
	}
	var d def
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		d = s.decodeDef(g, kvs[0])
	}
	return d, nil
}

// decodeDef decodes the fleet's definition of g from its record. A record
// that does not decode, or is not sealed with the store key, is no
// definition: it conflicts with nobody (bad), and the next SetGrants of
// an instance naming the grant writes over it (its revision is kept for
// that).
func (s *Store) decodeDef(g string, kv *mvccpb.KeyValue) def {
	fp, by, err := s.codec.DecodeDef(g, kv.Value)
	if err != nil {
		s.log.Warn("store: etcd: a grant definition does not decode; ignored", "err", err)
		return def{bad: true, rev: kv.ModRevision}
	}
	return def{FP: fp, By: by, rev: kv.ModRevision}
}

// startDefsWatch follows defs/ so that a definition another instance
// changes shows here as a conflict (or its end) at once.
func (s *Store) startDefsWatch(rev int64) {
	dp := s.key("defs/")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.follow(s.ctx, dp, rev, func(ev *clientv3.Event) {
			g := string(ev.Kv.Key[len(dp):])
			s.mu.Lock()
			if ev.Type == clientv3.EventTypeDelete {
				delete(s.defs, g)
			} else {
				s.defs[g] = s.decodeDef(g, ev.Kv)
			}
			s.mu.Unlock()
			s.wantCampaign()
		}, func(ctx context.Context) (int64, error) {
			defs := map[string]def{}
			rev, err := s.walk(ctx, dp, false, func(kv *mvccpb.KeyValue) error {
				g := string(kv.Key[len(dp):])
				defs[g] = s.decodeDef(g, kv)
				return nil
			})
			if err == nil {
				s.mu.Lock()
				s.defs = defs
				s.mu.Unlock()
			}
			return rev, err
		}, nil)
	}()
}

// conflictLocked says why this instance's definition of g differs from
// the fleet's; "" when it agrees. s.mu is held.
func (s *Store) conflictLocked(g string) string {
	fp, ok := s.grants[g]
	if !ok {
		return ""
	}
	d, ok := s.defs[g]
	if !ok || d.bad || d.FP == fp {
		return ""
	}
	return fmt.Sprintf("this instance's definition of the grant differs from the fleet's (set by instance %q): make the configurations agree", d.By)
}
