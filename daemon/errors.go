package daemon

import (
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/store"
)

// errorKind is what went wrong with a request to the engine, in the terms
// a caller acts on. The engine (fetch, authorize, revoke, ReloadConfig, the
// access check) returns an *engineError of one kind; only the HTTP layer
// turns the kind into a status code (statusOf, socketapi.go).
type errorKind int

const (
	// kindBadRequest: the request cannot be served as the grant is
	// configured (an authorization_code grant without a callback
	// listener or redirect URI).
	kindBadRequest errorKind = iota + 1
	// kindForbidden: the caller may not do this (or, for callers who are
	// not operators, the grant does not exist).
	kindForbidden
	// kindNotFound: no grant of that name (told to operators only).
	kindNotFound
	// kindReauthorization: only a person can get a token.
	kindReauthorization
	// kindUnavailable: no usable token now: the provider is failing, the
	// refresh did not finish in time, or a permanent failure waits for a
	// person to fix the configuration or credentials.
	kindUnavailable
	// kindTimeout: an operator's refresh is still running.
	kindTimeout
	// kindProvider: the provider (or what talking to it took: discovery,
	// registration, saving the result) failed.
	kindProvider
	// kindInternal: tokend itself failed (its store).
	kindInternal
	// kindInvalidConfiguration: a reload found the configuration invalid.
	kindInvalidConfiguration
	// kindNotSupported: this daemon cannot do it (a reload without a
	// configuration file).
	kindNotSupported
	// kindTooMany: the caller asked for this too often (a grant's
	// step-ups).
	kindTooMany
)

// engineError is an error of the engine with what the API answers for it:
// its kind, an API error code (api.Code*) and a description for the
// caller. Its message is the description; it wraps its cause, if any.
type engineError struct {
	kind errorKind
	code string // api.Code*
	desc string
	err  error
	// retryAfter, when set, is sent as Retry-After with the answer.
	retryAfter time.Duration
}

func (e *engineError) Error() string { return e.desc }
func (e *engineError) Unwrap() error { return e.err }

// newError returns an *engineError without a cause.
func newError(kind errorKind, code, desc string) error {
	return &engineError{kind: kind, code: code, desc: desc}
}

// wrapError returns an *engineError that wraps err and describes it with its
// message.
func wrapError(kind errorKind, code string, err error) error {
	return &engineError{kind: kind, code: code, desc: err.Error(), err: err}
}

// errReauthorize is the answer to a fetch of a grant whose token only a
// person can renew.
func errReauthorize(grant string) error {
	return newError(kindReauthorization, api.CodeReauthorizationRequired, "a person must authorize this grant: tokend authorize "+grant)
}

// errNeedsPerson is the answer for a grant only a person can unblock, in
// the words status uses for it: pending_authorization for one never
// authorized, else reauthorization_required.
func errNeedsPerson(g *grant, t *store.Token) error {
	if t == nil || g.stateOf(t) == api.StatePendingAuthorization {
		return newError(kindReauthorization, api.CodePendingAuthorization, "this grant has never been authorized: a person must run tokend authorize "+g.name)
	}
	return errReauthorize(g.name)
}

// errShuttingDown: a refresh asked for after shutdown began; it does not
// start, since the store is about to close.
var errShuttingDown = newError(kindUnavailable, api.CodeTemporarilyUnavailable, "tokend is shutting down")
