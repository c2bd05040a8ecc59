package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// The value of tokens/<grant> is the token record of store.Codec, with
// the instance that wrote it and when inside the sealed record (so the
// watch can skip this instance's own writes and tell how far behind it
// is, and nobody without the key can change either).
type tokenEnvelope struct {
	Writer string
	At     time.Time
}

func (s *Store) encodeToken(t store.Token) (string, error) {
	rec, err := s.codec.EncodeTokenFrom(t, store.Origin{Writer: s.inst, At: s.clock()})
	if err != nil {
		return "", fmt.Errorf("store: encode token: %w", err)
	}
	return string(rec), nil
}

func (s *Store) decodeToken(grant string, v []byte) (store.Token, tokenEnvelope, error) {
	t, o, err := s.codec.DecodeTokenFrom(grant, v)
	if err != nil {
		return store.Token{}, tokenEnvelope{}, err
	}
	return t, tokenEnvelope{Writer: o.Writer, At: o.At}, nil
}

// saw records that this instance has seen revision rev of grant's token.
func (s *Store) saw(grant string, rev int64) {
	s.mu.Lock()
	if rev > s.seen[grant] {
		s.seen[grant] = rev
	}
	s.mu.Unlock()
}

// Token returns the stored token of a grant, or store.ErrNotFound.
func (s *Store) Token(grant string) (store.Token, error) {
	if err := s.check(); err != nil {
		return store.Token{}, err
	}
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key("tokens/"+grant))
	if err != nil {
		s.noteErr(err)
		return store.Token{}, unavailable("read token", err)
	}
	if len(resp.Kvs) == 0 {
		return store.Token{}, store.NewError(store.ErrNotFound, nil, fmt.Sprintf("store: no token for grant %q", grant))
	}
	// Seen even when it does not decode: this instance's next write of
	// the grant replaces it (see PutToken).
	s.saw(grant, resp.Kvs[0].ModRevision)
	t, _, err := s.decodeToken(grant, resp.Kvs[0].Value)
	if err != nil {
		return store.Token{}, err
	}
	return t, nil
}

// BadRecords is how many token records this instance found that did not
// decode (at load or delivered by the watch) and skipped.
func (s *Store) BadRecords() int64 { return s.badRecords.Load() }

// EachToken calls fn once with every stored token, read as of one
// revision in pages (100,000 grants need not fit one answer). The next
// page is read while one is decoded, and a page's records are decoded
// (and their secrets opened) in parallel; fn is called on the caller's
// goroutine, in key order. A record that does not decode is skipped and
// reported (logged, counted in BadRecords), not fatal. It records the
// revision read: Watch starts after it.
func (s *Store) EachToken(fn func(t *store.Token) error) error {
	if err := s.check(); err != nil {
		return err
	}
	tp := s.key("tokens/")
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	type page struct {
		kvs []*mvccpb.KeyValue
		rev int64
		err error
		end bool
	}
	pages := make(chan page, 1)
	go func() {
		rev, err := s.walkPages(ctx, tp, false, func(kvs []*mvccpb.KeyValue) error {
			select {
			case pages <- page{kvs: kvs}:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		select {
		case pages <- page{rev: rev, err: err, end: true}:
		case <-ctx.Done():
		}
	}()
	workers := max(1, runtime.GOMAXPROCS(0))
	bad := 0
	for p := range pages {
		if p.end {
			if bad > 0 {
				s.log.Error("store: etcd: token records that do not decode were skipped; their grants load nothing until their owner writes them again", "count", bad)
			}
			if p.err != nil {
				return p.err
			}
			s.mu.Lock()
			s.loadRev = p.rev
			s.mu.Unlock()
			return nil
		}
		ts := make([]store.Token, len(p.kvs))
		errs := make([]error, len(p.kvs))
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(p.kvs); i += workers {
					ts[i], _, errs[i] = s.decodeToken(string(p.kvs[i].Key[len(tp):]), p.kvs[i].Value)
				}
			})
		}
		wg.Wait()
		for i, kv := range p.kvs {
			if errs[i] != nil {
				// One bad record must not keep every other grant from
				// loading. It is seen, so its owner's next write
				// replaces it.
				grant := string(kv.Key[len(tp):])
				s.saw(grant, kv.ModRevision)
				bad++
				s.badRecords.Add(1)
				s.log.Error("store: etcd: a token record does not decode; skipped", "grant", grant, "revision", kv.ModRevision, "err", errs[i])
				continue
			}
			s.saw(ts[i].Grant, kv.ModRevision)
			if err := fn(&ts[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockGrant serialises this instance's writes of one grant, so that two of
// its own do not fence each other.
func (s *Store) lockGrant(grant string) func() {
	h := fnv.New32a()
	h.Write([]byte(grant))
	m := &s.writeMu[h.Sum32()%uint32(len(s.writeMu))]
	m.Lock()
	return m.Unlock
}

// PutToken writes t and appends a to its history in one transaction,
// fenced: only while this instance's lease holds the grant and the
// grant's record is the revision this instance last saw. Otherwise it
// writes nothing and returns an error matching store.ErrFenced.
func (s *Store) PutToken(t store.Token, a *store.Attempt) error {
	return s.putToken(t, a, true)
}

// PutAuthorized writes a new chain from an authorization, fenced only on
// the record's revision (any instance may receive a callback).
func (s *Store) PutAuthorized(t store.Token, a *store.Attempt) error {
	return s.putToken(t, a, false)
}

func (s *Store) putToken(t store.Token, a *store.Attempt, owned bool) error {
	if t.Grant == "" {
		return errors.New("store: token has no grant name")
	}
	if err := s.check(); err != nil {
		return err
	}
	g := t.Grant
	tv, err := s.encodeToken(t)
	if err != nil {
		return err
	}
	var av json.RawMessage
	if a != nil {
		if av, err = s.codec.EncodeAttempt(*a); err != nil {
			return fmt.Errorf("store: encode attempt: %w", err)
		}
	}
	defer s.lockGrant(g)()
	tk, hk, ok := s.key("tokens/"+g), s.key("history/"+g), s.key("owners/"+g)
	// A write that gets no answer is tried again while the lease could
	// still hold (a refresh's token must not be dropped for one member
	// that lost its leader, or a leader election); a try that was applied
	// after all is recognised by its value, which no other write has (the
	// record is sealed with a fresh nonce).
	deadline := time.Now().Add(s.writeBudget(owned))
	unsure := false
	for fences := 0; fences < 3; fences++ {
		s.mu.Lock()
		seen := s.seen[g]
		lease := s.lease
		hc, cached := s.hist[g]
		s.mu.Unlock()
		if av != nil && !cached {
			hc, err = s.readHistory(g)
			if errors.Is(err, store.ErrCorrupt) {
				// A history that does not decode must not keep the token
				// from being written: it starts again from this attempt.
				s.log.Error("store: etcd: a history record does not decode; replacing it", "grant", g, "err", err)
				hc.v = nil
			} else if err != nil {
				return err
			}
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(tk), "=", seen)}
		if owned {
			if lease == 0 {
				return store.NewError(store.ErrFenced, nil, fmt.Sprintf("store: write of grant %q fenced: this instance has no lease", g))
			}
			cmps = append(cmps, clientv3.Compare(clientv3.Value(ok), "=", s.inst), clientv3.Compare(clientv3.LeaseValue(ok), "=", int64(lease)))
		}
		ops := []clientv3.Op{clientv3.OpPut(tk, tv)}
		var nh []json.RawMessage
		if av != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(hk), "=", hc.rev))
			nh = append([]json.RawMessage{av}, hc.v[:min(len(hc.v), store.HistoryLen-1)]...)
			hv, err := s.codec.EncodeHistory(g, nh)
			if err != nil {
				return fmt.Errorf("store: encode history: %w", err)
			}
			ops = append(ops, clientv3.OpPut(hk, string(hv)))
		}
		ctx, cancel := s.try()
		resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(tk), clientv3.OpGet(ok)).Commit()
		cancel()
		if err != nil && isUnavailable(err) && s.ctx.Err() == nil && time.Now().Before(deadline) {
			unsure = true
			fences--
			sleep(s.ctx, writeRetryPause)
			continue
		}
		if err != nil {
			s.noteErr(err)
			return unavailable("write token", err)
		}
		if !resp.Succeeded && unsure {
			if tkv := resp.Responses[0].GetResponseRange().Kvs; len(tkv) > 0 && string(tkv[0].Value) == tv {
				// An earlier try was applied.
				s.saw(g, tkv[0].ModRevision)
				s.mu.Lock()
				delete(s.hist, g)
				s.mu.Unlock()
				return nil
			}
		}
		if resp.Succeeded {
			s.mu.Lock()
			if resp.Header.Revision > s.seen[g] {
				s.seen[g] = resp.Header.Revision
			}
			if av != nil {
				if len(s.hist) >= maxHistCache {
					// Bounded: 100,000 grants' histories would cost
					// hundreds of megabytes; a miss costs one read.
					for k := range s.hist {
						delete(s.hist, k)
						break
					}
				}
				s.hist[g] = histCache{rev: resp.Header.Revision, v: nh}
			}
			s.mu.Unlock()
			return nil
		}
		tkv := resp.Responses[0].GetResponseRange().Kvs
		okv := resp.Responses[1].GetResponseRange().Kvs
		var cur int64
		if len(tkv) > 0 {
			cur = tkv[0].ModRevision
		}
		holder := !owned || (len(okv) > 0 && string(okv[0].Value) == s.inst && clientv3.LeaseID(okv[0].Lease) == lease)
		if cur != seen && holder && len(tkv) > 0 {
			if _, _, derr := s.decodeToken(g, tkv[0].Value); derr != nil {
				// Written since, but not a record anyone can read (a
				// torn or forged value): no chain to yield to. Dropping
				// this write would discard a token the provider has
				// already issued (and maybe a rotated refresh token):
				// write it over the record, fenced on its revision.
				s.badRecords.Add(1)
				s.log.Error("store: etcd: the token record written since this instance last saw it does not decode; writing over it", "grant", g, "revision", cur, "err", derr)
				s.saw(g, cur)
				continue
			}
		}
		if cur != seen {
			return store.NewError(store.ErrFenced, nil, fmt.Sprintf("store: write of grant %q fenced: written elsewhere at revision %d since this instance last saw it (revision %d)", g, cur, seen))
		}
		if !holder {
			holder := "nobody"
			if len(okv) > 0 {
				holder = fmt.Sprintf("%q", okv[0].Value)
			}
			return store.NewError(store.ErrFenced, nil, fmt.Sprintf("store: write of grant %q fenced: this instance does not hold its lease (held by %s)", g, holder))
		}
		// Only the history moved (a copy imported it): read it again and
		// retry.
		s.mu.Lock()
		delete(s.hist, g)
		s.mu.Unlock()
	}
	return store.NewError(store.ErrFenced, nil, fmt.Sprintf("store: write of grant %q fenced: its record or history keeps changing", g))
}

// writeRetryPause spaces the tries of a token write that got no answer.
const writeRetryPause = 50 * time.Millisecond

// writeBudget is how long a token write may be tried again: while this
// instance's lease could still hold, for a refresh's write (owned); one
// request timeout otherwise.
func (s *Store) writeBudget(owned bool) time.Duration {
	if !owned {
		return s.reqTO
	}
	s.mu.Lock()
	left := s.leaseExp.Sub(s.clock())
	s.mu.Unlock()
	return max(s.reqTO, left)
}
