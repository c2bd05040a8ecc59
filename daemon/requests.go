package daemon

// What the servers in front of the engine (package server) ask of it, on
// behalf of a caller the kernel named: each request is judged by the
// caller's rights here (access), and fails with an *engine.Error only.

import (
	"context"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/store"
)

// peerOf is c as the access rules judge callers. A TCP caller has a uid
// and nothing else: its gid is (gid_t)-1, no group, which no readers list
// can name.
func peerOf(c engine.Caller) peer {
	if c.IsUnknown() {
		return peer{}
	}
	p := peer{ok: true, uid: c.UID, gid: noGID}
	if c.HasGroups {
		p.gid, p.groups = c.GID, c.Groups
	}
	return p
}

// noGID stands for a group the kernel did not name. (gid_t)-1 is no group
// on Linux (chown(2) takes it for "leave unchanged").
const noGID = engine.NoGID

// List is the status of every grant c may read, sorted by name.
func (d *Daemon) List(c engine.Caller) api.TokenList {
	p := peerOf(c)
	list := api.TokenList{Grants: []api.GrantStatus{}}
	for _, g := range d.grantList() {
		if d.mayRead(p, g) {
			list.Grants = append(list.Grants, d.status(g))
		}
	}
	return list
}

// Token is the named grant's token for c, who must be able to read it.
// This is the hot path: a valid token is answered without a lock or I/O.
func (d *Daemon) Token(ctx context.Context, c engine.Caller, name string) (api.TokenResponse, error) {
	g, err := d.access(peerOf(c), name, false)
	if err != nil {
		return api.TokenResponse{}, err
	}
	t, err := d.fetch(ctx, g)
	if err != nil {
		return api.TokenResponse{}, err
	}
	return d.tokenResponse(t), nil
}

// tokenResponse is t as the API answers it.
func (d *Daemon) tokenResponse(t *store.Token) api.TokenResponse {
	_, p := d.config()
	exp := expiryOf(t, p)
	return api.TokenResponse{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		ExpiresIn:   int64(exp.Sub(d.clock.Now()) / time.Second),
		ExpiresAt:   exp.UTC(),
		Scope:       t.Scope,
	}
}

// Status is the named grant's status with its history, for c, who must be
// able to read it.
func (d *Daemon) Status(c engine.Caller, name string) (api.GrantStatus, error) {
	g, err := d.access(peerOf(c), name, false)
	if err != nil {
		return api.GrantStatus{}, err
	}
	return d.statusWithHistory(g), nil
}

// Refresh refreshes the named grant now, for an operator, and answers its
// status: a failed refresh is reported there (state, last_error).
func (d *Daemon) Refresh(ctx context.Context, c engine.Caller, name string) (api.GrantStatus, error) {
	g, err := d.access(peerOf(c), name, true)
	if err != nil {
		return api.GrantStatus{}, err
	}
	if err := d.refreshNow(ctx, g); err != nil {
		return api.GrantStatus{}, err
	}
	return d.status(g), nil
}

// Authorize starts a person's authorization of the named grant, for an
// operator: by the callback listener, or pasted back (req.Paste) and bound
// to c's uid.
func (d *Daemon) Authorize(ctx context.Context, c engine.Caller, name string, req api.AuthorizeRequest) (*api.AuthorizeResponse, error) {
	p := peerOf(c)
	g, err := d.access(p, name, true)
	if err != nil {
		return nil, err
	}
	if req.Paste {
		return d.authorizePaste(ctx, g, p)
	}
	return d.authorize(ctx, g)
}

// CompletePaste completes a paste-back authorization (paste.go), for the
// operator who started it, and answers the grant's status.
func (d *Daemon) CompletePaste(ctx context.Context, c engine.Caller, name string, req api.CompleteRequest) (api.GrantStatus, error) {
	p := peerOf(c)
	g, err := d.access(p, name, true)
	if err != nil {
		return api.GrantStatus{}, err
	}
	if err := d.completePaste(ctx, g, p, req); err != nil {
		return api.GrantStatus{}, err
	}
	return d.status(g), nil
}

// Rejected is a reader's report that a resource refused req.AccessToken:
// it answers a token other than the refused one (stepup.go).
func (d *Daemon) Rejected(ctx context.Context, c engine.Caller, name string, req api.RejectedRequest) (api.TokenResponse, error) {
	g, err := d.access(peerOf(c), name, false)
	if err != nil {
		return api.TokenResponse{}, err
	}
	t, err := d.rejected(ctx, g, req)
	if err != nil {
		return api.TokenResponse{}, err
	}
	return d.tokenResponse(t), nil
}

// StepUp records the scopes a resource asked a reader for (stepup.go)
// and answers the grant's status.
func (d *Daemon) StepUp(c engine.Caller, name string, req api.StepUpRequest) (api.GrantStatus, error) {
	g, err := d.access(peerOf(c), name, false)
	if err != nil {
		return api.GrantStatus{}, err
	}
	if err := d.recordStepUp(g, req); err != nil {
		return api.GrantStatus{}, err
	}
	return d.status(g), nil
}

// Revoke revokes the named grant's tokens, for an operator, and answers
// its status.
func (d *Daemon) Revoke(ctx context.Context, c engine.Caller, name string) (api.GrantStatus, error) {
	g, err := d.access(peerOf(c), name, true)
	if err != nil {
		return api.GrantStatus{}, err
	}
	if err := d.revoke(ctx, g); err != nil {
		return api.GrantStatus{}, err
	}
	return d.status(g), nil
}

// ReloadFor reloads the configuration file for an operator (ReloadConfig).
func (d *Daemon) ReloadFor(c engine.Caller) (*api.ReloadResponse, error) {
	if err := d.operatorOnly(peerOf(c)); err != nil {
		return nil, err
	}
	return d.ReloadConfig()
}

// Proof is the named dpop grant's token and a DPoP proof for req, for a
// reader (dpop.go).
func (d *Daemon) Proof(ctx context.Context, c engine.Caller, name string, req api.DPoPRequest) (*api.DPoPResponse, error) {
	g, err := d.access(peerOf(c), name, false)
	if err != nil {
		return nil, err
	}
	return d.proof(ctx, g, req)
}

// FetchWait is how long a fetch of an expired token may wait for its
// refresh (Options.FetchWait): a server's answers may take that long.
func (d *Daemon) FetchWait() time.Duration { return d.opts.FetchWait }

// Access refuses c unless c may read the named grant, or act on it when
// write is set (operators).
func (d *Daemon) Access(c engine.Caller, name string, write bool) error {
	_, err := d.access(peerOf(c), name, write)
	return err
}
