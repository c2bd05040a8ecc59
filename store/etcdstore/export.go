package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
