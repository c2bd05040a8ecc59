package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Rekey re-seals every record with newKey (nil: unsealed) in one
// transaction and replaces the check value.
//
// It waits for operations in flight and holds off new ones until it is
// done. On error nothing changes: the file and the Store keep the old key.
// After a successful Rekey, Open needs newKey.
func (s *Store) Rekey(newKey []byte) error {
	ns, err := newSealer(newKey)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	old := s.seal
	var n int
	err = s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		type kv struct{ k, v []byte }
		// bbolt does not allow writes while ForEach walks a bucket:
		// collect, then write.
		reseal := func(bucket string, conv func(k, v []byte) ([]byte, error)) error {
			b := tx.Bucket([]byte(bucket))
			if g, ok := strings.CutPrefix(bucket, bucketHistory+"/"); ok {
				b = tx.Bucket([]byte(bucketHistory)).Bucket([]byte(g))
			}
			var out []kv
			err := b.ForEach(func(k, v []byte) error {
				nv, err := conv(k, v)
				if err != nil {
					return err
				}
				out = append(out, kv{bytes.Clone(k), nv})
				return nil
			})
			if err != nil {
				return err
			}
			for _, r := range out {
				if err := b.Put(r.k, r.v); err != nil {
					return err
				}
			}
			n += len(out)
			return nil
		}
		if err := reseal(bucketTokens, func(k, v []byte) ([]byte, error) {
			t, err := decodeToken(old, k, v)
			if err != nil {
				return nil, err
			}
			return encodeToken(ns, t)
		}); err != nil {
			return err
		}
		if err := reseal(bucketClients, func(k, v []byte) ([]byte, error) {
			c, err := decodeClient(old, k, v)
			if err != nil {
				return nil, err
			}
			return encodeClient(ns, c)
		}); err != nil {
			return err
		}
		if err := reseal(bucketPending, func(k, v []byte) ([]byte, error) {
			p, err := decodePending(old, k, v)
			if err != nil {
				return nil, err
			}
			return encodePending(ns, k, p)
		}); err != nil {
			return err
		}
		if err := reseal(bucketProviders, func(k, v []byte) ([]byte, error) {
			meta, err := decodeProvider(old, k, v)
			if err != nil {
				return nil, err
			}
			return encodeProvider(ns, k, meta), nil
		}); err != nil {
			return err
		}
		hist := tx.Bucket([]byte(bucketHistory))
		var grants [][]byte
		if err := hist.ForEachBucket(func(g []byte) error {
			grants = append(grants, bytes.Clone(g))
			return nil
		}); err != nil {
			return err
		}
		for _, g := range grants {
			if err := reseal(bucketHistory+"/"+string(g), func(_, v []byte) ([]byte, error) {
				a, err := decodeAttempt(old, g, v)
				if err != nil {
					return nil, err
				}
				return encodeAttempt(ns, g, a)
			}); err != nil {
				return err
			}
		}
		mb := tx.Bucket([]byte(bucketMeta))
		if ns == nil {
			return mb.Delete(keyCheck)
		}
		schema := int(binary.BigEndian.Uint64(mb.Get(keySchema)))
		return mb.Put(keyCheck, []byte(ns.checkValue(schema)))
	})
	if err != nil {
		return s.wrap(fmt.Sprintf("rekey %s", s.path), err)
	}
	s.seal = ns
	s.log.Info("store: rekeyed", "path", s.path, "records", n, "encrypted", ns != nil)
	return nil
}
