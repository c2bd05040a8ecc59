package store

import "errors"

// More errors returned by Open and the record methods, besides those in api.go.
var (
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
