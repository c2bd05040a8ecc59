package main

import (
	"context"
	"fmt"

	"github.com/tokend/tokend/api"
)

// cmdRefresh asks the daemon to refresh a grant now and prints the result.
// The exit code says whether the grant is usable: 0 valid, 3 a person must
// authorize again, 1 anything else.
func (c *cli) cmdRefresh(ctx context.Context, args []string) int {
	st, code := c.grantAction(ctx, args, "refresh", (*api.Client).Refresh, func(st *api.GrantStatus) string { return stateLine(st, c.now()) })
	if st == nil {
		return code
	}
	switch st.State {
	case api.StateValid:
		return exitOK
	case api.StateReauthorizationRequired:
		return exitReauth
	}
	return exitError
}

// cmdRevoke asks the daemon to revoke a grant's tokens at the provider and
// forget them, and prints the resulting state.
func (c *cli) cmdRevoke(ctx context.Context, args []string) int {
	_, code := c.grantAction(ctx, args, "revoke", (*api.Client).Revoke, c.revokeLine)
	return code
}

// revokeLine says what a revocation did and what the grant needs next:
// the state alone ("demo: expired") reads as a failure.
func (c *cli) revokeLine(st *api.GrantStatus) string {
	name := text(st.Name)
	if st.Auth != "revoked" {
		return name + ": held no tokens; nothing to revoke (" + orDash(text(st.State)) + ")"
	}
	s := name + ": revoked: its tokens were revoked at the provider (where it offers revocation) and forgotten"
	if st.State == api.StateExpired {
		return s + "; the next fetch obtains a new one"
	}
	return s + "; to use it again: " + c.hint("authorize", st.Name)
}

// grantAction runs one operator action on the grant named in args and
// prints the grant's resulting state. It returns the state, or nil and the
// exit code of what went wrong.
func (c *cli) grantAction(ctx context.Context, args []string, cmd string,
	call func(*api.Client, context.Context, string) (*api.GrantStatus, error), line func(*api.GrantStatus) string) (*api.GrantStatus, int) {
	fs := c.flagSet(cmd, cmd+" NAME")
	cf := c.addClientFlags(fs)
	name, code, ok := c.parseName(fs, args)
	if !ok {
		return nil, code
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	st, err := call(cl, ctx, name)
	if err != nil {
		return nil, c.failGrant(name, err)
	}
	fmt.Fprintln(c.stdout, line(st))
	return st, exitOK
}
