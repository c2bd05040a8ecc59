package store

// STUBS: replaced by the implementation. Signatures are the contract.

import "time"

// Store is an open tokend database. Safe for concurrent use.
type Store struct{}

// Open opens or creates the store (mode 0600). It fails with ErrLocked after
// LockTimeout when another process has it open, ErrCorrupt for a file that is
// not a tokend store (never overwriting it), ErrKeyRequired/ErrWrongKey for
// key problems. It runs schema migrations.
func Open(o Options) (*Store, error) { panic("unimplemented") }

// Close closes the file; pending Batch writes are flushed first.
func (s *Store) Close() error { panic("unimplemented") }

// Path returns the file path.
func (s *Store) Path() string { panic("unimplemented") }

// Encrypted reports whether secrets are sealed.
func (s *Store) Encrypted() bool { panic("unimplemented") }

// ParseKey accepts a key file's contents: 32 raw bytes, 64 hex characters or
// base64 of 32 bytes (surrounding whitespace ignored).
func ParseKey(b []byte) ([]byte, error) { panic("unimplemented") }

// Token returns the stored token of a grant, or ErrNotFound.
func (s *Store) Token(grant string) (Token, error) { panic("unimplemented") }

// Tokens returns every stored token.
func (s *Store) Tokens() ([]Token, error) { panic("unimplemented") }

// PutToken writes t and, when a is non-nil, appends a to the grant's
// history, in one transaction. Concurrent calls are coalesced into one
// transaction (bbolt Batch): it returns only once the write is durable.
func (s *Store) PutToken(t Token, a *Attempt) error { panic("unimplemented") }

// UpdateToken reads, modifies and writes one grant's token in one
// transaction; fn receives ErrNotFound's zero Token with found=false.
func (s *Store) UpdateToken(grant string, fn func(t *Token, found bool) error) error {
	panic("unimplemented")
}

// DeleteToken forgets a grant's token (and its history).
func (s *Store) DeleteToken(grant string) error { panic("unimplemented") }

// History returns up to the last 20 attempts of a grant, newest first.
func (s *Store) History(grant string) ([]Attempt, error) { panic("unimplemented") }

// Client returns a stored client, or ErrNotFound.
func (s *Store) Client(name string) (Client, error) { panic("unimplemented") }

// PutClient stores a client.
func (s *Store) PutClient(c Client) error { panic("unimplemented") }

// PutPending stores a pending authorization.
func (s *Store) PutPending(p Pending) error { panic("unimplemented") }

// ConsumePending finds the pending authorization for state and deletes it in
// the same transaction: a second call returns ErrNotFound. One past its
// deadline is deleted and ErrExpired returned.
func (s *Store) ConsumePending(state string, now time.Time) (Pending, error) {
	panic("unimplemented")
}

// PendingFor lists the pending authorizations of a grant.
func (s *Store) PendingFor(grant string) ([]Pending, error) { panic("unimplemented") }

// PrunePending deletes pending authorizations past their deadline.
func (s *Store) PrunePending(now time.Time) (int, error) { panic("unimplemented") }

// Provider returns cached provider metadata (raw JSON), or ErrNotFound.
func (s *Store) Provider(name string) ([]byte, error) { panic("unimplemented") }

// PutProvider caches provider metadata (raw JSON, not secret).
func (s *Store) PutProvider(name string, meta []byte) error { panic("unimplemented") }

// Rekey re-seals every secret with newKey (nil: unsealed) in one
// transaction and replaces the check value.
func (s *Store) Rekey(newKey []byte) error { panic("unimplemented") }
