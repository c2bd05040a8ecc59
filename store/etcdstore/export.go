package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// Enumeration and import of whole records for `tokend store copy`, with
// the names and meaning of the bbolt store's (store/export.go). The
// daemon never calls these.

// EachClient calls fn with every stored client, in name order; fn may keep
// c. It stops at fn's first error and returns it.
func (s *Store) EachClient(fn func(c *store.Client) error) error {
	return s.each("clients/", func(name string, v []byte) error {
		c, err := s.codec.DecodeClient(name, v)
		if err != nil {
			return err
		}
		return fn(&c)
	})
}

// EachProvider calls fn with the name and cached metadata of every
// provider, in name order.
func (s *Store) EachProvider(fn func(name string, meta []byte) error) error {
	return s.each("providers/", func(name string, v []byte) error {
		meta, err := s.codec.DecodeProvider(name, v)
		if err != nil {
			return err
		}
		return fn(name, meta)
	})
}

// EachHistory calls fn with every grant that has a history and its
// attempts, newest first, in grant order.
func (s *Store) EachHistory(fn func(grant string, as []store.Attempt) error) error {
	return s.each("history/", func(grant string, v []byte) error {
		raw, err := s.codec.DecodeHistory(grant, v)
		if err != nil {
			return err
		}
		if len(raw) == 0 {
			return nil
		}
		as, err := s.decodeHistory(grant, raw)
		if err != nil {
			return err
		}
		return fn(grant, as)
	})
}

// each walks the records under kind, passing fn's errors through as they
// are.
func (s *Store) each(kind string, fn func(name string, v []byte) error) error {
	if err := s.check(); err != nil {
		return err
	}
	p := s.key(kind)
	_, err := s.walk(s.ctx, p, false, func(kv *mvccpb.KeyValue) error {
		v := kv.Value
		if v == nil {
			v = []byte{}
		}
		if err := fn(string(kv.Key[len(p):]), v); err != nil {
			return errStop{err}
		}
		return nil
	})
	if es, ok := err.(errStop); ok {
		return es.err
	}
	return err
}

// Count counts the records of every kind.
func (s *Store) Count() (store.Counts, error) {
	if err := s.check(); err != nil {
		return store.Counts{}, err
	}
	var c store.Counts
	for kind, n := range map[string]*int{"tokens/": &c.Tokens, "clients/": &c.Clients, "providers/": &c.Providers, "pending/": &c.Pending} {
		ctx, cancel := s.req()
		resp, err := s.cli.Get(ctx, s.key(kind), clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			s.noteErr(err)
			return store.Counts{}, unavailable("count records", err)
		}
		*n = int(resp.Count)
	}
	err := s.EachHistory(func(_ string, as []store.Attempt) error {
		c.Histories++
		c.Attempts += len(as)
		return nil
	})
	return c, err
}

// Empty reports whether the store holds no token, history, client,
// provider or pending authorization.
func (s *Store) Empty() (bool, error) {
	c, err := s.Count()
	if err != nil {
		return false, err
	}
	return c == store.Counts{}, nil
}

// ImportGrant writes a grant's token (when t is not nil) and replaces its
// history with as (newest first; at most HistoryLen kept) in one
// transaction, unfenced: a copy is the only writer.
func (s *Store) ImportGrant(grant string, t *store.Token, as []store.Attempt) error {
	if grant == "" {
		return errors.New("store: import: no grant name")
	}
	if t != nil && t.Grant != grant {
		return fmt.Errorf("store: import: token of grant %q given for grant %q", t.Grant, grant)
	}
	if err := s.check(); err != nil {
		return err
	}
	var ops []clientv3.Op
	if t != nil {
		tv, err := s.encodeToken(*t)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(s.key("tokens/"+grant), tv))
	}
	hk := s.key("history/" + grant)
	if len(as) == 0 {
		ops = append(ops, clientv3.OpDelete(hk))
	} else {
		raw := make([]json.RawMessage, 0, min(len(as), store.HistoryLen))
		for _, a := range as[:min(len(as), store.HistoryLen)] {
			av, err := s.codec.EncodeAttempt(a)
			if err != nil {
				return fmt.Errorf("store: encode attempt: %w", err)
			}
			raw = append(raw, av)
		}
		hv, err := s.codec.EncodeHistory(grant, raw)
		if err != nil {
			return fmt.Errorf("store: encode history: %w", err)
		}
		ops = append(ops, clientv3.OpPut(hk, string(hv)))
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.reqTO)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		s.noteErr(err)
		return unavailable("import grant", err)
	}
	s.mu.Lock()
	delete(s.hist, grant)
	if t != nil && resp.Header.Revision > s.seen[grant] {
		s.seen[grant] = resp.Header.Revision
	}
	s.mu.Unlock()
	return nil
}

// LiveFleet names the instances of a running fleet, other than this one:
// those registered under instances/ or holding a grant under owners/ with
// a lease (etcd deletes such keys when their lease ends). A copy into the
// store must not write over what they refresh unfenced.
func (s *Store) LiveFleet() ([]string, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	own := s.lease
	s.mu.Unlock()
	names := map[string]bool{}
	for _, kind := range []string{"instances/", "owners/"} {
		p := s.key(kind)
		_, err := s.walk(s.ctx, p, false, func(kv *mvccpb.KeyValue) error {
			if kv.Lease == 0 || clientv3.LeaseID(kv.Lease) == own {
				return nil
			}
			name := string(kv.Key[len(p):])
			if kind == "owners/" {
				name = string(kv.Value)
			}
			names[name] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// ImportGrantLive writes a grant's token into a store a running fleet
// uses, through the fencing of a write from an authorization: only if the
// record is still the revision read, and only if it is older (a lower
// generation) than t or does not decode. The grant's history is the
// fleet's and is left alone. It reports whether it wrote; false means the
// fleet's record is as new or newer (or changed meanwhile) and was kept.
func (s *Store) ImportGrantLive(t store.Token) (bool, error) {
	if t.Grant == "" {
		return false, errors.New("store: import: no grant name")
	}
	if err := s.check(); err != nil {
		return false, err
	}
	tk := s.key("tokens/" + t.Grant)
	ctx, cancel := s.req()
	resp, err := s.cli.Get(ctx, tk)
	cancel()
	if err != nil {
		s.noteErr(err)
		return false, unavailable("read token", err)
	}
	var rev int64
	if len(resp.Kvs) > 0 {
		rev = resp.Kvs[0].ModRevision
		if cur, _, derr := s.decodeToken(t.Grant, resp.Kvs[0].Value); derr == nil && cur.Generation >= t.Generation {
			return false, nil
		}
	}
	tv, err := s.encodeToken(t)
	if err != nil {
		return false, err
	}
	ctx, cancel = s.req()
	tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(tk), "=", rev)).Then(clientv3.OpPut(tk, tv)).Commit()
	cancel()
	if err != nil {
		s.noteErr(err)
		return false, unavailable("import token", err)
	}
	if tr.Succeeded {
		s.saw(t.Grant, tr.Header.Revision)
	}
	return tr.Succeeded, nil
}

// PutClientIfAbsent stores a client unless one of that name is stored
// (a running fleet's record, perhaps a newer registration, wins).
func (s *Store) PutClientIfAbsent(c store.Client) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	v, err := s.codec.EncodeClient(c)
	if err != nil {
		return false, fmt.Errorf("store: encode client: %w", err)
	}
	return s.putIfAbsent("clients/"+c.Name, string(v), "write client")
}

func (s *Store) putIfAbsent(key, v, op string) (bool, error) {
	k := s.key(key)
	ctx, cancel := s.req()
	defer cancel()
	tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, v)).Commit()
	if err != nil {
		s.noteErr(err)
		return false, unavailable(op, err)
	}
	return tr.Succeeded, nil
}
