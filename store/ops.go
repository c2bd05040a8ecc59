package store

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Token returns the stored token of a grant, or ErrNotFound. It is a read
// transaction: it never waits for writers. Safe for concurrent use.
func (s *Store) Token(grant string) (Token, error) {
	if err := s.rlock(); err != nil {
		return Token{}, err
	}
	defer s.mu.RUnlock()
	var t Token
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketTokens)).Get([]byte(grant))
		if v == nil {
			return tokenNotFound(grant)
		}
		// decodeToken copies: v is only valid inside this transaction.
		var err error
		t, err = decodeToken(s.seal, []byte(grant), v)
		return err
	})
	return t, s.wrap("read token", err)
}

func tokenNotFound(grant string) error {
	return newError(ErrNotFound, nil, fmt.Sprintf("store: no token for grant %q", grant))
}

// Tokens returns every stored token, ordered by grant name. Safe for
// concurrent use.
func (s *Store) Tokens() ([]Token, error) {
	var ts []Token
	err := s.EachToken(func(t *Token) error {
		ts = append(ts, *t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ts, nil
}

// EachToken calls fn with every stored token, in grant order, inside one
// read transaction; fn may keep t (it is not reused) but must not call the
// Store. It stops at fn's first error and returns it. A record that does
// not decode (not sealed with the store key, altered) is skipped and
// logged, naming it: one bad record does not keep the others from
// loading. Unlike Tokens it builds no slice of every record, which
// matters with 100,000 grants.
func (s *Store) EachToken(fn func(t *Token) error) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	var fnErr error
	err := s.db.View(func(tx *bolt.Tx) error {
		rel := walkRelease{tx: tx}
		dec := newTokenDecoder(s.seal)
		return tx.Bucket([]byte(bucketTokens)).ForEach(func(k, v []byte) error {
			rel.saw(k, v)
			t, _, err := dec.decode(k, v)
			if err != nil {
				s.log.Error("store: a token record does not decode; skipped", "err", err)
				return nil
			}
			if err := fn(&t); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return s.wrap("read tokens", err)
	}
	return nil
}

// PutToken writes t and, when a is non-nil, appends a to the grant's
// history, in one transaction. Concurrent calls are coalesced into one
// transaction (bbolt Batch): it returns only once the write is durable.
//
// The record is encoded and sealed before joining the batch, so the
// function bbolt may run more than once only puts prepared bytes. Safe for
// concurrent use; the last writer of a grant wins.
func (s *Store) PutToken(t Token, a *Attempt) error {
	if t.Grant == "" {
		return errors.New("store: token has no grant name")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	key := []byte(t.Grant)
	v, err := encodeToken(s.seal, t)
	if err != nil {
		return fmt.Errorf("store: encode token: %w", err)
	}
	var av []byte
	if a != nil {
		if av, err = encodeAttempt(s.seal, key, *a); err != nil {
			return fmt.Errorf("store: encode attempt: %w", err)
		}
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketTokens)).Put(key, v); err != nil {
			return err
		}
		if av != nil {
			return appendHistory(tx, key, av)
		}
		return nil
	})
	return s.wrap("write token", err)
}

// appendHistory adds an encoded attempt to a grant's history bucket (keyed
// by a big-endian sequence number, so cursor order is age order) and drops
// the oldest beyond HistoryLen.
func appendHistory(tx *bolt.Tx, grant, av []byte) error {
	hb, err := tx.Bucket([]byte(bucketHistory)).CreateBucketIfNotExists(grant)
	if err != nil {
		return err
	}
	seq, err := hb.NextSequence()
	if err != nil {
		return err
	}
	if err := hb.Put(binary.BigEndian.AppendUint64(nil, seq), av); err != nil {
		return err
	}
	// Deleting while a cursor walks the bucket is unsafe in bbolt: collect
	// the keys first.
	var keys [][]byte
	c := hb.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys[min(len(keys), HistoryLen):] {
		if err := hb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// UpdateToken reads, modifies and writes one grant's token in one
// transaction; fn receives ErrNotFound's zero Token with found=false.
//
// When fn returns an error nothing is written and UpdateToken returns that
// error unchanged. fn runs inside a bbolt write transaction: it must not
// call the Store (that deadlocks) and should be quick, as it holds up
// every other writer. fn may not rename the grant: t.Grant is reset.
// Safe for concurrent use.
func (s *Store) UpdateToken(grant string, fn func(t *Token, found bool) error) error {
	if grant == "" {
		return errors.New("store: token has no grant name")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	key := []byte(grant)
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketTokens))
		t := Token{Grant: grant}
		found := false
		if v := b.Get(key); v != nil {
			var err error
			if t, err = decodeToken(s.seal, key, v); err != nil {
				return err
			}
			found = true
		}
		if fnErr = fn(&t, found); fnErr != nil {
			return fnErr
		}
		t.Grant = grant
		v, err := encodeToken(s.seal, t)
		if err != nil {
			return fmt.Errorf("store: encode token: %w", err)
		}
		return b.Put(key, v)
	})
	if fnErr != nil {
		return fnErr
	}
	return s.wrap("update token", err)
}

// DeleteToken forgets a grant's token (and its history). Deleting a grant
// that has no token is not an error. Safe for concurrent use.
func (s *Store) DeleteToken(grant string) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	key := []byte(grant)
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket([]byte(bucketTokens)).Delete(key); err != nil {
			return err
		}
		err := tx.Bucket([]byte(bucketHistory)).DeleteBucket(key)
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
	return s.wrap("delete token", err)
}

// History returns up to the last 20 attempts of a grant, newest first. A
// grant without history has none (no error). Safe for concurrent use.
func (s *Store) History(grant string) ([]Attempt, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var as []Attempt
	err := s.db.View(func(tx *bolt.Tx) error {
		hb := tx.Bucket([]byte(bucketHistory)).Bucket([]byte(grant))
		if hb == nil {
			return nil
		}
		c := hb.Cursor()
		for k, v := c.Last(); k != nil && len(as) < HistoryLen; k, v = c.Prev() {
			a, err := decodeAttempt(s.seal, []byte(grant), v)
			if err != nil {
				return err
			}
			as = append(as, a)
		}
		return nil
	})
	if err != nil {
		return nil, s.wrap("read history", err)
	}
	return as, nil
}

// Client returns a stored client, or ErrNotFound. Safe for concurrent use.
func (s *Store) Client(name string) (Client, error) {
	if err := s.rlock(); err != nil {
		return Client{}, err
	}
	defer s.mu.RUnlock()
	var c Client
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketClients)).Get([]byte(name))
		if v == nil {
			return newError(ErrNotFound, nil, fmt.Sprintf("store: no client %q", name))
		}
		var err error
		c, err = decodeClient(s.seal, []byte(name), v)
		return err
	})
	return c, s.wrap("read client", err)
}

// PutClient stores a client, replacing one of the same name. Safe for
// concurrent use.
func (s *Store) PutClient(c Client) error {
	if c.Name == "" {
		return errors.New("store: client has no name")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	v, err := encodeClient(s.seal, c)
	if err != nil {
		return fmt.Errorf("store: encode client: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketClients)).Put([]byte(c.Name), v)
	})
	return s.wrap("write client", err)
}

// pendingKey is the record key of a pending authorization: the hex SHA-256
// of its state, so the state (what redeems it) is not on disk.
func pendingKey(state string) []byte {
	h := sha256.Sum256([]byte(state))
	return hex.AppendEncode(nil, h[:])
}

// PutPending stores a pending authorization, keyed by a hash of p.State
// (which must be set). Safe for concurrent use.
func (s *Store) PutPending(p Pending) error {
	if p.State == "" {
		return errors.New("store: pending authorization has no state")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	key := pendingKey(p.State)
	v, err := encodePending(s.seal, key, p)
	if err != nil {
		return fmt.Errorf("store: encode pending authorization: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketPending)).Put(key, v)
	})
	return s.wrap("write pending authorization", err)
}

// ConsumePending finds the pending authorization for state and deletes it in
// the same transaction, if bindingHash is the BindingHash it holds (the
// hash of the cookie its start page set): a second call returns
// ErrNotFound. A record with another binding, or none yet, is left in place
// and ErrMismatch returned, so a callback from a client other than the
// browser that started the flow cannot use up the authorization. One past
// its deadline is deleted and ErrExpired returned, whatever the binding.
//
// With ErrExpired and ErrMismatch the record is returned too, without its
// secrets (Verifier, DeviceCode), so the caller can tell which grant the
// attempt was for. A pending authorization with a zero Deadline never
// expires. The result carries State as given. Safe for concurrent use: of
// two concurrent calls with the same state and binding, exactly one
// succeeds.
func (s *Store) ConsumePending(state, bindingHash string, now time.Time) (Pending, error) {
	return s.redeemPending("consume pending authorization", state, now,
		"store: no pending authorization for this state (unknown, or already used)",
		func(b *bolt.Bucket, key []byte, p *Pending) error {
			if !sameHash(p.BindingHash, bindingHash) {
				// Checked inside the transaction that would delete the
				// record, so a matching callback racing a refused one
				// still wins.
				return newError(ErrMismatch, nil, fmt.Sprintf("store: pending authorization of grant %q: the callback does not carry the binding of the browser that started it", p.Grant))
			}
			return b.Delete(key)
		})
}

// BindPending uses the one-time start page of the pending authorization for
// state: if startHash is the StartHash it holds, it replaces it with
// bindingHash (the hash of the cookie the page sets) in one transaction, so
// the page works once and the callback then requires that cookie. A used
// or unknown start id gives ErrNotFound; one past its deadline is deleted
// and ErrExpired returned (with the record, as ConsumePending does). Safe
// for concurrent use: of two calls with the same start id, one succeeds.
func (s *Store) BindPending(state, startHash, bindingHash string, now time.Time) (Pending, error) {
	if startHash == "" || bindingHash == "" {
		return Pending{}, errors.New("store: binding a pending authorization needs a start id and a binding")
	}
	return s.redeemPending("bind pending authorization", state, now,
		"store: no pending authorization for this start page (unknown, or already used)",
		func(b *bolt.Bucket, key []byte, p *Pending) error {
			if !sameHash(p.StartHash, startHash) {
				return newError(ErrNotFound, nil, "store: the start page of this pending authorization was already used")
			}
			p.StartHash, p.BindingHash = "", bindingHash
			nv, err := encodePending(s.seal, key, *p)
			if err != nil {
				return fmt.Errorf("store: encode pending authorization: %w", err)
			}
			return b.Put(key, nv)
		})
}

// redeemPending runs act on the pending authorization for state in one write
// transaction. A missing record is ErrNotFound (with message missing); one
// past its deadline is deleted and returned with ErrExpired. act's
// ErrMismatch, like ErrExpired, comes back with the record without its
// secrets, so the caller can say which grant the attempt was for.
func (s *Store) redeemPending(op, state string, now time.Time, missing string, act func(b *bolt.Bucket, key []byte, p *Pending) error) (Pending, error) {
	if err := s.rlock(); err != nil {
		return Pending{}, err
	}
	defer s.mu.RUnlock()
	key := pendingKey(state)
	var p Pending
	var expired error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketPending))
		v := b.Get(key)
		if v == nil {
			return newError(ErrNotFound, nil, missing)
		}
		var err error
		if p, err = decodePending(s.seal, key, v); err != nil {
			return err
		}
		if pendingExpired(p, now) {
			expired = newError(ErrExpired, nil, fmt.Sprintf("store: pending authorization of grant %q expired at %s", p.Grant, p.Deadline.Format(time.RFC3339)))
			return b.Delete(key)
		}
		return act(b, key, &p)
	})
	p.State = state
	if err == nil {
		err = expired
	}
	if err != nil {
		if errors.Is(err, ErrExpired) || errors.Is(err, ErrMismatch) {
			return withoutSecrets(p), err
		}
		return Pending{}, s.wrap(op, err)
	}
	return p, nil
}

func pendingExpired(p Pending, now time.Time) bool {
	return !p.Deadline.IsZero() && !now.Before(p.Deadline)
}

// sameHash compares two hex hashes in constant time; an empty stored hash
// matches nothing.
func sameHash(stored, given string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

// withoutSecrets is what a refused redemption returns: enough to say which
// grant it was for, nothing that redeems anything.
func withoutSecrets(p Pending) Pending {
	p.Verifier, p.DeviceCode = "", ""
	return p
}

// PendingFor lists the pending authorizations of a grant. Their State is
// empty: only its hash is stored. A record that does not decode is
// skipped (PrunePending deletes it). Safe for concurrent use.
func (s *Store) PendingFor(grant string) ([]Pending, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var ps []Pending
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketPending)).ForEach(func(k, v []byte) error {
			p, err := decodePending(s.seal, k, v)
			if err == nil && p.Grant == grant {
				ps = append(ps, p)
			}
			return nil
		})
	})
	if err != nil {
		return nil, s.wrap("read pending authorizations", err)
	}
	return ps, nil
}

// PrunePending deletes pending authorizations past their deadline and
// returns how many. A record that does not decode (not JSON, not sealed
// with the store key, or refused as forged) is deleted too, and logged:
// nobody can redeem it, and it must not stop the pruning of the others.
// Safe for concurrent use.
func (s *Store) PrunePending(now time.Time) (int, error) {
	if err := s.rlock(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0 // the function may be retried by nobody, but stay exact anyway
		b := tx.Bucket([]byte(bucketPending))
		var expired [][]byte
		err := b.ForEach(func(k, v []byte) error {
			p, err := decodePending(s.seal, k, v)
			if err != nil {
				s.log.Warn("store: deleting a pending authorization that does not decode", "err", err)
				expired = append(expired, bytes.Clone(k))
				return nil
			}
			if pendingExpired(p, now) {
				expired = append(expired, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	if err != nil {
		return 0, s.wrap("prune pending authorizations", err)
	}
	return n, nil
}

// DeletePending deletes every pending authorization of a grant (for
// example when its authorization is cancelled or superseded) and returns
// how many. Safe for concurrent use.
func (s *Store) DeletePending(grant string) (int, error) {
	if err := s.rlock(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketPending))
		var keys [][]byte
		err := b.ForEach(func(k, v []byte) error {
			// A record that does not decode names no grant it can be
			// trusted for; PrunePending deletes it.
			r, err := decodePending(s.seal, k, v)
			if err == nil && r.Grant == grant {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, s.wrap("delete pending authorizations", err)
	}
	return n, nil
}

// Provider returns cached provider metadata (raw JSON), or ErrNotFound.
// The slice is the caller's. Safe for concurrent use.
func (s *Store) Provider(name string) ([]byte, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var meta []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bucketProviders)).Get([]byte(name))
		if v == nil {
			return newError(ErrNotFound, nil, fmt.Sprintf("store: no cached metadata for provider %q", name))
		}
		var err error
		meta, err = decodeProvider(s.seal, []byte(name), v)
		return err
	})
	if err != nil {
		return nil, s.wrap("read provider", err)
	}
	return meta, nil
}

// PutProvider caches provider metadata (raw JSON), replacing what was
// cached. It is not secret, but it says where secrets are sent: with a key
// it is sealed like every record, so nobody without the key can change
// it. Safe for concurrent use.
func (s *Store) PutProvider(name string, meta []byte) error {
	if name == "" {
		return errors.New("store: provider has no name")
	}
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	v := encodeProvider(s.seal, []byte(name), meta)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketProviders)).Put([]byte(name), v)
	})
	return s.wrap("write provider", err)
}
