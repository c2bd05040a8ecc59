package daemon

import (
	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/store"
)

// The engine's failures that reach a caller are *engine.Error values of
// one kind (package internal/engine); only the servers turn the kind into
// a status code.
type (
	errorKind   = engine.Kind
	engineError = engine.Error
)

const (
	kindBadRequest           = engine.BadRequest
	kindForbidden            = engine.Forbidden
	kindNotFound             = engine.NotFound
	kindReauthorization      = engine.Reauthorization
	kindUnavailable          = engine.Unavailable
	kindTimeout              = engine.Timeout
	kindProvider             = engine.Provider
	kindInternal             = engine.Internal
	kindInvalidConfiguration = engine.InvalidConfiguration
	kindNotSupported         = engine.NotSupported
	kindTooMany              = engine.TooMany
)

// newError returns an *engineError without a cause.
func newError(kind errorKind, code, desc string) error {
	return &engineError{Kind: kind, Code: code, Description: desc}
}

// wrapError returns an *engineError that wraps err and describes it with its
// message.
func wrapError(kind errorKind, code string, err error) error {
	return &engineError{Kind: kind, Code: code, Description: err.Error(), Err: err}
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
