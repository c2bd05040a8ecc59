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
	st, code := c.grantAction(ctx, args, "refresh", (*api.Client).Refresh)
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
	_, code := c.grantAction(ctx, args, "revoke", (*api.Client).Revoke)
	return code
}

// grantAction runs one operator action on the grant named in args and
// prints the grant's resulting state. It returns the state, or nil and the
// exit code of what went wrong.
func (c *cli) grantAction(ctx context.Context, args []string, cmd string,
	call func(*api.Client, context.Context, string) (*api.GrantStatus, error)) (*api.GrantStatus, int) {
	fs := c.flagSet(cmd, cmd+" NAME [--socket PATH]")
	cf := c.addClientFlags(fs)
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return nil, code
	}
	name, code, ok := c.oneName(fs, pos)
	if !ok {
		return nil, code
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	st, err := call(cl, ctx, name)
	if err != nil {
		return nil, c.failGrant(name, err)
	}
	fmt.Fprintln(c.stdout, stateLine(st, c.now()))
	return st, exitOK
}
