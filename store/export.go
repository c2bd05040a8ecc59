package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Enumeration and import of whole records, for `tokend store copy` (moving
// a store between the bbolt file and etcd). The daemon never calls these:
// they read every record of a kind, and Import replaces a grant's history,
// which no refresh would do.

// EachClient calls fn with every stored client, in name order, inside one
// read transaction; fn may keep c but must not call the Store. It stops at
// fn's first error and returns it.
func (s *Store) EachClient(fn func(c *Client) error) error {
	return s.each(bucketClients, "read clients", func(k, v []byte) error {
		c, err := decodeClient(s.seal, k, v)
		if err != nil {
			return err
		}
		return fn(&c)
	})
}

// EachProvider calls fn with the name and cached metadata (raw JSON; the
// slice is fn's) of every provider, in name order, as EachClient does.
func (s *Store) EachProvider(fn func(name string, meta []byte) error) error {
	return s.each(bucketProviders, "read providers", func(k, v []byte) error {
		meta, err := decodeProvider(s.seal, k, v)
		if err != nil {
			return err
		}
		return fn(string(k), meta)
	})
}

// EachHistory calls fn with every grant that has a history and its
// attempts, newest first (as History returns them), in grant order, as
// EachClient does. A grant may have a history and no token (the token was
// deleted): it is still listed.
func (s *Store) EachHistory(fn func(grant string, as []Attempt) error) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketHistory)).ForEachBucket(func(grant []byte) error {
			hb := tx.Bucket([]byte(bucketHistory)).Bucket(grant)
			var as []Attempt
			c := hb.Cursor()
			for k, v := c.Last(); k != nil && len(as) < HistoryLen; k, v = c.Prev() {
				a, err := decodeAttempt(s.seal, grant, v)
				if err != nil {
					return err
				}
				as = append(as, a)
			}
			if len(as) == 0 {
				return nil
			}
			if err := fn(string(grant), as); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return s.wrap("read histories", err)
}

// each walks one bucket of plain records in one read transaction; an error
// of fn is returned as it is.
func (s *Store) each(bucket, op string, fn func(k, v []byte) error) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).ForEach(func(k, v []byte) error {
			if v == nil { // a nested bucket, not a record
				return nil
			}
			if err := fn(k, v); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return s.wrap(op, err)
}

// Counts are the records of a store, by kind.
type Counts struct {
	Tokens, Histories, Attempts, Clients, Providers, Pending int
}

// Empty reports whether the store holds no token, history, client,
// provider or pending authorization: what a copy may write into without
// losing anything.
func (s *Store) Empty() (bool, error) {
	c, err := s.Count()
	if err != nil {
		return false, err
	}
	return c == Counts{}, nil
}

// Count counts the records of every kind in one read transaction.
func (s *Store) Count() (Counts, error) {
	if err := s.rlock(); err != nil {
		return Counts{}, err
	}
	defer s.mu.RUnlock()
	var c Counts
	err := s.db.View(func(tx *bolt.Tx) error {
		c.Tokens = tx.Bucket([]byte(bucketTokens)).Stats().KeyN
		c.Clients = tx.Bucket([]byte(bucketClients)).Stats().KeyN
		c.Providers = tx.Bucket([]byte(bucketProviders)).Stats().KeyN
		c.Pending = tx.Bucket([]byte(bucketPending)).Stats().KeyN
		hist := tx.Bucket([]byte(bucketHistory))
		return hist.ForEachBucket(func(grant []byte) error {
			n := hist.Bucket(grant).Stats().KeyN
			if n > 0 {
				c.Histories++
				c.Attempts += min(n, HistoryLen)
			}
			return nil
		})
	})
	return c, s.wrap("count records", err)
}

// ImportGrant writes a grant's token (when t is not nil) and replaces its
// history with as (newest first, as History returns it; at most HistoryLen
// are kept), in one transaction: a copy of the grant from another store.
// grant names the grant; t.Grant, when t is given, must be the same.
func (s *Store) ImportGrant(grant string, t *Token, as []Attempt) error {
	if grant == "" {
		return errors.New("store: import: no grant name")
	}
	if t != nil && t.Grant != grant {
		return fmt.Errorf("store: import: token of grant %q given for grant %q", t.Grant, grant)
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var tv []byte
	if t != nil {
		var err error
		if tv, err = encodeToken(s.seal, *t); err != nil {
			return fmt.Errorf("store: encode token: %w", err)
		}
	}
	as = as[:min(len(as), HistoryLen)]
	avs := make([][]byte, len(as))
	for i, a := range as {
		av, err := encodeAttempt(s.seal, []byte(grant), a)
		if err != nil {
			return fmt.Errorf("store: encode attempt: %w", err)
		}
		avs[len(as)-1-i] = av // oldest first: sequence order is age order
	}
	key := []byte(grant)
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tv != nil {
			if err := tx.Bucket([]byte(bucketTokens)).Put(key, tv); err != nil {
				return err
			}
		}
		hist := tx.Bucket([]byte(bucketHistory))
		if hist.Bucket(key) != nil {
			if err := hist.DeleteBucket(key); err != nil {
				return err
			}
		}
		if len(avs) == 0 {
			return nil
		}
		hb, err := hist.CreateBucket(key)
		if err != nil {
			return err
		}
		for _, av := range avs {
			seq, err := hb.NextSequence()
			if err != nil {
				return err
			}
			if err := hb.Put(binary.BigEndian.AppendUint64(nil, seq), av); err != nil {
				return err
			}
		}
		return nil
	})
	return s.wrap("import grant", err)
}
