package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"strings"
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

// pageSize is how many keys one range request of a walk reads.
const pageSize = 1000

// walk calls fn with every key under prefix (in key order) as of one
// revision, which it returns, reading it in pages. fn's error stops it
// and is returned as it is.
func (s *Store) walk(ctx context.Context, prefix string, keysOnly bool, fn func(kv *mvccpb.KeyValue) error) (int64, error) {
	return s.walkPages(ctx, prefix, keysOnly, func(kvs []*mvccpb.KeyValue) error {
		for _, kv := range kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
		return nil
	})
}

// walkPages is walk a page at a time.
func (s *Store) walkPages(ctx context.Context, prefix string, keysOnly bool, fn func(kvs []*mvccpb.KeyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			s.noteErr(err)
			return 0, unavailable("read "+strings.TrimPrefix(prefix, s.pfx), err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if err := fn(resp.Kvs); err != nil {
			return rev, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// errStop carries fn's error out of walk unchanged.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

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

// maxHistCache bounds the histories PutToken keeps to append to without
// reading them first.
const maxHistCache = 4096

// readHistory reads grant's history record.
func (s *Store) readHistory(grant string) (histCache, error) {
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key("history/"+grant))
	if err != nil {
		s.noteErr(err)
		return histCache{}, unavailable("read history", err)
	}
	if len(resp.Kvs) == 0 {
		return histCache{}, nil
	}
	v, err := s.codec.DecodeHistory(grant, resp.Kvs[0].Value)
	if err != nil {
		// The revision goes with the error: a writer replaces the record.
		return histCache{rev: resp.Kvs[0].ModRevision}, err
	}
	return histCache{rev: resp.Kvs[0].ModRevision, v: v}, nil
}

// History returns the grant's last attempts, newest first.
func (s *Store) History(grant string) ([]store.Attempt, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	hc, err := s.readHistory(grant)
	if err != nil {
		return nil, err
	}
	return s.decodeHistory(grant, hc.v)
}

func (s *Store) decodeHistory(grant string, v []json.RawMessage) ([]store.Attempt, error) {
	var as []store.Attempt
	for _, r := range v[:min(len(v), store.HistoryLen)] {
		a, err := s.codec.DecodeAttempt(grant, r)
		if err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	return as, nil
}

// Client returns a stored client, or store.ErrNotFound.
func (s *Store) Client(name string) (store.Client, error) {
	if err := s.check(); err != nil {
		return store.Client{}, err
	}
	v, err := s.get("clients/"+name, "read client")
	if err != nil {
		return store.Client{}, err
	}
	if v == nil {
		return store.Client{}, store.NewError(store.ErrNotFound, nil, fmt.Sprintf("store: no client %q", name))
	}
	return s.codec.DecodeClient(name, v)
}

// PutClient stores a client, replacing one of the same name.
func (s *Store) PutClient(c store.Client) error {
	if c.Name == "" {
		return errors.New("store: client has no name")
	}
	if err := s.check(); err != nil {
		return err
	}
	v, err := s.codec.EncodeClient(c)
	if err != nil {
		return fmt.Errorf("store: encode client: %w", err)
	}
	return s.put("clients/"+c.Name, string(v), "write client")
}

// Provider returns cached provider metadata, or store.ErrNotFound.
func (s *Store) Provider(name string) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	v, err := s.get("providers/"+name, "read provider")
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, store.NewError(store.ErrNotFound, nil, fmt.Sprintf("store: no cached metadata for provider %q", name))
	}
	return s.codec.DecodeProvider(name, v)
}

// PutProvider caches provider metadata, replacing what was cached.
func (s *Store) PutProvider(name string, meta []byte) error {
	if name == "" {
		return errors.New("store: provider has no name")
	}
	if err := s.check(); err != nil {
		return err
	}
	return s.put("providers/"+name, string(s.codec.EncodeProvider(name, meta)), "write provider")
}

// get returns the value of key, nil when absent (never nil when present).
func (s *Store) get(key, op string) ([]byte, error) {
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(key))
	if err != nil {
		s.noteErr(err)
		return nil, unavailable(op, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	v := resp.Kvs[0].Value
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (s *Store) put(key, v, op string) error {
	ctx, cancel := s.req()
	defer cancel()
	_, err := s.cli.Put(ctx, s.key(key), v)
	if err != nil {
		s.noteErr(err)
		return unavailable(op, err)
	}
	return nil
}

// PutPending stores a pending authorization under the hash of its state.
func (s *Store) PutPending(p store.Pending) error {
	if p.State == "" {
		return errors.New("store: pending authorization has no state")
	}
	if err := s.check(); err != nil {
		return err
	}
	v, err := s.codec.EncodePending(p)
	if err != nil {
		return fmt.Errorf("store: encode pending authorization: %w", err)
	}
	return s.put("pending/"+store.PendingKey(p.State), string(v), "write pending authorization")
}

// ConsumePending redeems the pending authorization of state once across
// the fleet: it is deleted by a transaction on the revision that was read
// and checked, so of concurrent consumers on any instances exactly one
// wins. See the daemon's Store contract for the rest.
func (s *Store) ConsumePending(state, bindingHash string, now time.Time) (store.Pending, error) {
	return s.redeem("consume pending authorization", state, now,
		"store: no pending authorization for this state (unknown, or already used)",
		func(key string, p *store.Pending) (clientv3.Op, error) {
			if !store.SameHash(p.BindingHash, bindingHash) {
				return clientv3.Op{}, store.NewError(store.ErrMismatch, nil, fmt.Sprintf("store: pending authorization of grant %q: the callback does not carry the binding of the browser that started it", p.Grant))
			}
			return clientv3.OpDelete(key), nil
		})
}

// BindPending uses the one-time start page of the pending authorization
// of state, once across the fleet (a transaction on the revision read).
func (s *Store) BindPending(state, startHash, bindingHash string, now time.Time) (store.Pending, error) {
	if startHash == "" || bindingHash == "" {
		return store.Pending{}, errors.New("store: binding a pending authorization needs a start id and a binding")
	}
	return s.redeem("bind pending authorization", state, now,
		"store: no pending authorization for this start page (unknown, or already used)",
		func(key string, p *store.Pending) (clientv3.Op, error) {
			if !store.SameHash(p.StartHash, startHash) {
				return clientv3.Op{}, store.NewError(store.ErrNotFound, nil, "store: the start page of this pending authorization was already used")
			}
			p.StartHash, p.BindingHash = "", bindingHash
			np := *p
			np.State = state
			v, err := s.codec.EncodePending(np)
			if err != nil {
				return clientv3.Op{}, fmt.Errorf("store: encode pending authorization: %w", err)
			}
			return clientv3.OpPut(key, string(v)), nil
		})
}

// redeem reads the pending authorization of state, decides with act (or
// expires it) and applies the outcome only if the record is still the
// revision read; if it moved, it starts over.
func (s *Store) redeem(op, state string, now time.Time, missing string, act func(key string, p *store.Pending) (clientv3.Op, error)) (store.Pending, error) {
	if err := s.check(); err != nil {
		return store.Pending{}, err
	}
	name := store.PendingKey(state)
	key := s.key("pending/" + name)
	for {
		ctx, cancel := s.req()
		resp, err := s.cli.Get(ctx, key)
		cancel()
		if err != nil {
			s.noteErr(err)
			return store.Pending{}, unavailable(op, err)
		}
		if len(resp.Kvs) == 0 {
			return store.Pending{}, store.NewError(store.ErrNotFound, nil, missing)
		}
		kv := resp.Kvs[0]
		p, err := s.codec.DecodePending(name, kv.Value)
		if err != nil {
			return store.Pending{}, err
		}
		p.State = state
		var do clientv3.Op
		var result error
		if store.PendingExpired(p, now) {
			result = store.NewError(store.ErrExpired, nil, fmt.Sprintf("store: pending authorization of grant %q expired at %s", p.Grant, p.Deadline.Format(time.RFC3339)))
			do = clientv3.OpDelete(key)
		} else if do, err = act(key, &p); err != nil {
			if errors.Is(err, store.ErrMismatch) {
				return store.WithoutSecrets(p), err
			}
			return store.Pending{}, err
		}
		ctx, cancel = s.req()
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(do).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			return store.Pending{}, unavailable(op, err)
		}
		if !tr.Succeeded {
			continue // used or bound meanwhile: look again
		}
		if result != nil {
			return store.WithoutSecrets(p), result
		}
		return p, nil
	}
}

// PutStart stores the start page of a pending authorization under
// starts/<startHash>, State and AuthURL sealed. Its deadline is that of
// the authorization: PrunePending deletes it after.
func (s *Store) PutStart(startHash string, p store.StartPage) error {
	if startHash == "" || strings.Contains(startHash, "/") {
		return errors.New("store: start page needs a start hash without /")
	}
	if err := s.check(); err != nil {
		return err
	}
	v, err := s.codec.EncodeStart(startHash, p)
	if err != nil {
		return fmt.Errorf("store: encode start page: %w", err)
	}
	return s.put("starts/"+startHash, string(v), "write start page")
}

// TakeStart takes the start page stored under startHash, once across the
// fleet: it is deleted by the request that reads it, so of concurrent
// takers on any instances exactly one gets it, and the others
// store.ErrNotFound. One past its deadline is deleted too and
// store.ErrExpired returned (without the page).
func (s *Store) TakeStart(startHash string, now time.Time) (store.StartPage, error) {
	if err := s.check(); err != nil {
		return store.StartPage{}, err
	}
	missing := store.NewError(store.ErrNotFound, nil, "store: no start page under this id (unknown, or already used)")
	if startHash == "" || strings.Contains(startHash, "/") {
		return store.StartPage{}, missing
	}
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Delete(ctx, s.key("starts/"+startHash), clientv3.WithPrevKV())
	if err != nil {
		s.noteErr(err)
		return store.StartPage{}, unavailable("take start page", err)
	}
	if len(resp.PrevKvs) == 0 {
		return store.StartPage{}, missing
	}
	p, err := s.codec.DecodeStart(startHash, resp.PrevKvs[0].Value)
	if err != nil {
		return store.StartPage{}, err
	}
	if !p.Deadline.IsZero() && !now.Before(p.Deadline) {
		return store.StartPage{}, store.NewError(store.ErrExpired, nil, fmt.Sprintf("store: start page expired at %s", p.Deadline.Format(time.RFC3339)))
	}
	return p, nil
}

// PrunePending deletes the pending authorizations and the start pages past
// their deadline, and says how many of both. A record that does not decode
// (not JSON, not sealed with the store key, refused as forged) is deleted
// too and logged: nobody can redeem it, and it must not stop the pruning
// of the others.
func (s *Store) PrunePending(now time.Time) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	var expired []*mvccpb.KeyValue
	for _, kind := range []string{"pending/", "starts/"} {
		pp := s.key(kind)
		_, err := s.walk(s.ctx, pp, false, func(kv *mvccpb.KeyValue) error {
			name := string(kv.Key[len(pp):])
			var deadline time.Time
			var err error
			if kind == "pending/" {
				var p store.Pending
				p, err = s.codec.DecodePending(name, kv.Value)
				deadline = p.Deadline
			} else {
				var p store.StartPage
				p, err = s.codec.DecodeStart(name, kv.Value)
				deadline = p.Deadline
			}
			if err != nil {
				s.log.Warn("store: etcd: deleting a record that does not decode", "record", kind+name, "err", err)
				expired = append(expired, kv)
				return nil
			}
			if !deadline.IsZero() && !now.Before(deadline) {
				expired = append(expired, kv)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	n := 0
	for _, kv := range expired {
		ctx, cancel := s.req()
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).Then(clientv3.OpDelete(string(kv.Key))).Commit()
		cancel()
		if err != nil {
			s.noteErr(err)
			return n, unavailable("prune pending authorizations", err)
		}
		if tr.Succeeded {
			n++
		}
	}
	return n, nil
}
