package server

import (
	"context"
	"net/url"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
)

// Engine is what the servers ask of tokend's engine (package daemon's
// *Daemon), each request on behalf of the Caller the kernel named: the
// engine decides what the caller may do. Every failure is an
// *engine.Error; statusOf turns its kind into an HTTP status.
// Implementations must be safe for concurrent use.
type Engine interface {
	// Access refuses caller unless it may read the grant, or act on it
	// when write is set (operators): handlers check it before reading a
	// request's body, so a caller who may not touch the grant learns
	// nothing from how its body is judged.
	Access(caller Caller, grant string, write bool) error
	// List is the status of every grant caller may read.
	List(caller Caller) api.TokenList
	// Token is the grant's current token (the fetch hot path).
	Token(ctx context.Context, caller Caller, grant string) (api.TokenResponse, error)
	// Status is the grant's status with its history.
	Status(caller Caller, grant string) (api.GrantStatus, error)
	// Refresh refreshes the grant now (operators) and answers its status.
	Refresh(ctx context.Context, caller Caller, grant string) (api.GrantStatus, error)
	// Authorize starts a person's authorization (operators).
	Authorize(ctx context.Context, caller Caller, grant string, req api.AuthorizeRequest) (*api.AuthorizeResponse, error)
	// CompletePaste completes a pasted-back authorization for the
	// operator who started it.
	CompletePaste(ctx context.Context, caller Caller, grant string, req api.CompleteRequest) (api.GrantStatus, error)
	// Rejected reports that a resource refused req.AccessToken and
	// answers a token other than it.
	Rejected(ctx context.Context, caller Caller, grant string, req api.RejectedRequest) (api.TokenResponse, error)
	// StepUp records the scopes a resource asked for.
	StepUp(caller Caller, grant string, req api.StepUpRequest) (api.GrantStatus, error)
	// Revoke revokes the grant's tokens (operators).
	Revoke(ctx context.Context, caller Caller, grant string) (api.GrantStatus, error)
	// ReloadFor reloads the configuration file (operators).
	ReloadFor(caller Caller) (*api.ReloadResponse, error)
	// Proof is a dpop grant's token and a DPoP proof for req.
	Proof(ctx context.Context, caller Caller, grant string, req api.DPoPRequest) (*api.DPoPResponse, error)
	// OpenStartPage takes an authorization's one-time start page and binds
	// the authorization to the browser that opened it.
	OpenStartPage(id string) (engine.StartPage, error)
	// CompleteAuthorization completes the authorization a browser brings
	// back to the redirect URI (query: code, state), bound by the value of
	// its binding cookie, and names the grant authorized.
	CompleteAuthorization(ctx context.Context, query url.Values, binding string) (string, error)
	// RedirectURIs are the clients' configured redirect URIs: the callback
	// listener serves their paths and answers their hosts.
	RedirectURIs() []string
	// Ready is nil when the engine serves (store open, scheduler
	// running), for /readyz.
	Ready() error
	// FetchWait bounds how long a fetch waits for a refresh: the socket's
	// answers may take that long.
	FetchWait() time.Duration
}
