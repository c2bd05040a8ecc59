package store

import "errors"

// Errors returned by Open and the record methods. Test with errors.Is;
// the returned errors have messages of their own that name the file.
var (
	// ErrLocked: another process holds the file (a second daemon).
	ErrLocked = errors.New("store: database is in use by another process")
	// ErrCorrupt: the file is not a bbolt file, not a tokend store, or fails its checks.
	ErrCorrupt = errors.New("store: file is corrupt or not a tokend store")
	// ErrWrongKey: the key does not open the sealed check value.
	ErrWrongKey = errors.New("store: wrong encryption key")
	// ErrKeyRequired: the file is sealed and no key was given.
	ErrKeyRequired = errors.New("store: file is encrypted and no key was given")
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("store: not found")
	// ErrExpired: a pending authorization past its deadline. It is deleted;
	// ConsumePending returns it with this error (without its verifier), so
	// the caller can record the outcome on its grant.
	ErrExpired = errors.New("store: pending authorization expired")
	// ErrUnsafePermissions: the file or its directory is not safe to keep
	// tokens in: owned by another user, writable by group or others (sticky
	// or not), a symlink, or a file with more than one link.
	ErrUnsafePermissions = errors.New("store: unsafe permissions")
	// ErrNotEncrypted: a key was given for a file that holds unsealed
	// records. The file is left as it is; `tokend rekey` seals it.
	ErrNotEncrypted = errors.New("store: file is not encrypted")
	// ErrNewerSchema: the file was written by a newer tokend whose schema
	// this one does not know. The file is left as it is.
	ErrNewerSchema = errors.New("store: file has a newer schema version")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrMismatch: a pending authorization exists for the state, but the
	// browser binding presented is not the one it holds (or its start page
	// was never used). The record is left in place, so the browser that
	// holds the binding can still complete it.
	ErrMismatch = errors.New("store: pending authorization is bound to another browser")
	// ErrFenced: fleet mode refused a write: this instance no longer holds
	// the grant's lease, or another instance wrote the grant since this
	// one last saw it. Nothing was written.
	ErrFenced = errors.New("store: write fenced: another instance holds or has written this grant")
	// ErrUnavailable: fleet mode cannot reach an etcd quorum.
	ErrUnavailable = errors.New("store: etcd quorum unavailable")
)

// storeError is an error with a full message of its own (naming the file
// and, where useful, what to do) that still matches a sentinel error with
// errors.Is, and optionally wraps the underlying cause. It exists so a
// message reads "store: /x is in use by another process ..." instead of
// repeating the sentinel's text after it.
type storeError struct {
	msg      string
	sentinel error
	cause    error
}

func (e *storeError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *storeError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.sentinel, e.cause}
	}
	return []error{e.sentinel}
}

// newError returns an error with message msg that matches sentinel and
// wraps cause (which may be nil). cause must never carry secret material.
func newError(sentinel error, cause error, msg string) error {
	return &storeError{msg: msg, sentinel: sentinel, cause: cause}
}
