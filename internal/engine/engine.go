// Package engine holds what the engine (package daemon) and the servers in
// front of it (package server) exchange: who asks (Caller, as the kernel
// recorded the connection) and how the engine fails a request (Error, of
// one Kind). It is a leaf, so the servers read both without importing the
// engine, its store or its fleet backend; the engine decides what a Caller
// may do, and the servers alone turn a Kind into an HTTP status.
package engine

import (
	"math"
	"time"
)

// Caller is the local user a request came from, as the kernel recorded it
// when the connection was made: not what the caller claims, and not what
// a process with its pid is now.
type Caller struct {
	UID uint32
	// GID and Groups are the primary and supplementary groups recorded by
	// SO_PEERCRED and SO_PEERGROUPS on a unix socket, where HasGroups is
	// set (Groups may still be nil when the kernel could not say: then no
	// supplementary group grants anything). Over TCP the kernel keeps the
	// uid of a socket and nothing else: HasGroups is false and the caller
	// is judged by its uid alone.
	GID       uint32
	Groups    []uint32
	HasGroups bool
}

// Unknown stands for a caller the kernel did not name. (uid_t)-1 and
// (gid_t)-1 are no user and no group on Linux, so no readers list or
// operator names it: every request of Unknown is refused.
var Unknown = Caller{UID: math.MaxUint32, GID: math.MaxUint32, HasGroups: true}

// IsUnknown reports whether c is Unknown's user.
func (c Caller) IsUnknown() bool { return c.UID == math.MaxUint32 }

// Kind is what went wrong with a request, in the terms a caller acts on.
type Kind int

const (
	// BadRequest: the request cannot be served as the grant is
	// configured (an authorization_code grant without a callback
	// listener or redirect URI), or the request itself is malformed.
	BadRequest Kind = iota + 1
	// Forbidden: the caller may not do this (or, for callers who are
	// not operators, the grant does not exist).
	Forbidden
	// NotFound: no grant of that name (told to operators only).
	NotFound
	// Reauthorization: only a person can get a token.
	Reauthorization
	// Unavailable: no usable token now: the provider is failing, the
	// refresh did not finish in time, or a permanent failure waits for a
	// person to fix the configuration or credentials.
	Unavailable
	// Timeout: an operator's refresh is still running.
	Timeout
	// Provider: the provider (or what talking to it took: discovery,
	// registration, saving the result) failed.
	Provider
	// Internal: tokend itself failed (its store).
	Internal
	// InvalidConfiguration: a reload found the configuration invalid.
	InvalidConfiguration
	// NotSupported: this daemon cannot do it (a reload without a
	// configuration file).
	NotSupported
	// TooMany: the caller asked for this too often (a grant's step-ups).
	TooMany
)

// Error is the engine's failure of a request: its Kind, an API error code
// (api.Code*) and a description for the caller. Its message is the
// description; it wraps its cause, if any.
type Error struct {
	Kind        Kind
	Code        string
	Description string
	Err         error
	// RetryAfter, when set, is how long the caller should wait before
	// asking again.
	RetryAfter time.Duration
	// Refusal: the caller was refused before any grant was reached
	// (access). Such a refusal is never counted under the grant's name:
	// metrics would otherwise tell whoever reads them which names exist,
	// which the identical refusal hides from the caller.
	Refusal bool
}

func (e *Error) Error() string { return e.Description }
func (e *Error) Unwrap() error { return e.Err }

// Codes of the callback's answers, which are pages for a person: what
// happened to the authorization the browser brought back.
const (
	CodeAuthorizationFailed  = "authorization_failed"
	CodeAuthorizationRefused = "authorization_refused"
	CodeAuthorizationExpired = "authorization_expired"
)

// StartPage is an authorization's one-time start page, taken: the
// browser that opened it is bound to the authorization by a cookie
// holding Binding (the engine keeps only its hash) and sent to AuthURL.
type StartPage struct {
	Grant   string
	State   string // names the cookie (the callback carries it)
	AuthURL string
	Binding string
	// Lifetime is how long the binding is needed: until the
	// authorization expires.
	Lifetime time.Duration
	// Secure: the redirect URI is https, the cookie is Secure.
	Secure bool
}

// NoGID stands for a group the kernel did not name (a TCP caller's):
// (gid_t)-1 is no group on Linux, so no readers list can name it.
const NoGID = math.MaxUint32
