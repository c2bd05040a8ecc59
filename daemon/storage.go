package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// Store is what the daemon keeps its state in: the part of *store.Store
// (the bbolt file) it uses. Options.OpenStore opens another implementation
// in its place; fleet mode will put one on etcd here. An implementation
// must meet this contract, which the daemon relies on and the bbolt file
// meets:
//
//   - Every method is safe for concurrent use. Records go in and come out
//     by value: the store keeps no reference to what it is given, and what
//     it returns is the caller's.
//   - PutToken writes the token t (keyed by t.Grant, replacing the
//     grant's record) and, when a is not nil, appends a to the grant's
//     history, atomically: both or neither. It returns only once both are
//     durable; the daemon serves a refreshed token only after PutToken
//     returned (a refresh token the provider rotated must not be lost).
//     Concurrent writes may be batched; of two writes of one grant the
//     last to return wins.
//   - History returns the grant's last attempts, newest first, at most
//     store.HistoryLen; none (and no error) for a grant without history.
//   - EachToken calls fn once per stored token, in any order, from one
//     goroutine; fn may keep the *store.Token (it is not reused) and never
//     calls the Store. It stops at fn's first error and returns it. It
//     runs once, at start and after a reload: it need not be a snapshot
//     of a moment, but must see every PutToken that returned before it
//     was called.
//   - PutPending stores a pending authorization under its State. Only a
//     hash of the state need be kept: the state redeems the authorization.
//   - ConsumePending is single-use: it finds the pending authorization of
//     state and deletes it in the same atomic step, only if bindingHash is
//     the BindingHash it holds (compare in constant time; an empty stored
//     hash matches nothing). Of concurrent calls with the same state and
//     binding exactly one succeeds; the others get store.ErrNotFound. A
//     record whose binding differs is left in place and store.ErrMismatch
//     returned; one past its deadline (a zero Deadline never expires) is
//     deleted and store.ErrExpired returned. With ErrMismatch and
//     ErrExpired the record comes back too, without Verifier and
//     DeviceCode, so the daemon can tell which grant it was for. The
//     result carries State as given.
//   - BindPending is single-use too: if startHash is the StartHash of the
//     pending authorization of state, it replaces it with bindingHash in
//     one atomic step; of concurrent calls with the same start hash one
//     succeeds. A used or unknown one gives store.ErrNotFound; one past
//     its deadline is deleted and store.ErrExpired returned with the
//     record, as ConsumePending does.
//   - PrunePending deletes the pending authorizations past their deadline
//     and says how many.
//   - Token, Client and Provider return store.ErrNotFound, matched with
//     errors.Is, for a missing record; PutClient and PutProvider replace
//     the record of that name.
//   - Errors may be of the implementation's own making, but must not carry
//     secrets (tokens, verifiers): the daemon logs them and puts them in a
//     grant's last_error.
//   - Close is called once, after every other call has returned.
type Store interface {
	Token(grant string) (store.Token, error)
	EachToken(fn func(t *store.Token) error) error
	PutToken(t store.Token, a *store.Attempt) error
	History(grant string) ([]store.Attempt, error)
	Client(name string) (store.Client, error)
	PutClient(c store.Client) error
	PutPending(p store.Pending) error
	ConsumePending(state, bindingHash string, now time.Time) (store.Pending, error)
	BindPending(state, startHash, bindingHash string, now time.Time) (store.Pending, error)
	PrunePending(now time.Time) (int, error)
	Provider(name string) ([]byte, error)
	PutProvider(name string, meta []byte) error
	Close() error
}

var _ Store = (*store.Store)(nil)

// Fleet is what a Store shared by several tokend instances adds (fleet
// mode, store.backend: etcd). The daemon finds it with a type assertion on
// the Store; the bbolt file is not one.
//
// The contract: the daemon codes against this; the etcd store implements
// it.
//
//   - SetGrants tells the fleet this instance's grants and their
//     fingerprints (config.Grant's provider-relevant definition, hashed);
//     the instance campaigns for the refresh lease of each. Called at
//     start and after every reload. It stops soon after ctx ends (the
//     daemon's shutdown, which waits for it), with an error if the
//     grants are not all announced.
//   - Holds reports whether this instance holds grant's lease with at
//     least margin of it left, its fingerprint agrees with the fleet's, and
//     etcd has quorum: only then may it send a refresh. False is cheap.
//   - PutToken (of Store) is fenced in fleet mode: it succeeds only while
//     this instance holds the grant's lease and the grant's record is
//     still the revision this instance last saw (wrote or was told of by
//     Watch); otherwise it returns an error matching store.ErrFenced and
//     writes nothing. PutAuthorized writes a new chain from an
//     authorization (callback, device flow) on whichever instance received
//     it, fenced only on the record revision.
//   - Watch calls fn, from one goroutine, with every token record written
//     by another instance (newest state, in revision order), until ctx
//     ends. It resumes after a broken watch and resyncs after compaction.
//   - Lock takes a fleet-wide lock of name (a dynamic registration) until
//     unlock is called or the instance dies.
//   - GrantInfo and Health feed status and metrics.
//   - PutStart keeps the start page of an authorization (store.StartPage:
//     its state and provider URL are secrets, kept sealed) under startHash,
//     the hex SHA-256 of its id, so that whichever instance the load
//     balancer sends the start URL to can serve it. TakeStart returns it
//     and deletes it in one atomic step: of concurrent takers on any
//     instances exactly one gets it, the others store.ErrNotFound (as for
//     an unknown hash); one past its Deadline is deleted and
//     store.ErrExpired returned. PrunePending deletes those past their
//     deadline too.
type Fleet interface {
	Instance() string
	SetGrants(ctx context.Context, fingerprints map[string]string) error
	Holds(grant string, margin time.Duration) bool
	PutAuthorized(t store.Token, a *store.Attempt) error
	Watch(ctx context.Context, fn func(t store.Token))
	Lock(ctx context.Context, name string) (unlock func(), err error)
	GrantInfo(grant string) store.FleetGrant
	Health() store.FleetHealth
	PutStart(startHash string, p store.StartPage) error
	TakeStart(startHash string, now time.Time) (store.StartPage, error)
}

// openStore opens the bbolt file of package store: what runs when
// Options.OpenStore is nil.
func openStore(c config.Store, log *slog.Logger) (Store, error) {
	return store.Open(store.Options{Path: c.Path, Key: c.Key, Logger: log})
}
