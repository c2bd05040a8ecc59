package etcdstore

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

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
