package main

import (
	"context"
	"fmt"
)

// cmdRevoke asks the daemon to revoke a grant's tokens at the provider and
// forget them, and prints the resulting state.
func (c *cli) cmdRevoke(ctx context.Context, args []string) int {
	fs := c.flagSet("revoke", "revoke NAME [--socket PATH]")
	cf := c.addClientFlags(fs)
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	name, code, ok := c.oneName(fs, pos)
	if !ok {
		return code
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	st, err := cl.Revoke(ctx, name)
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, stateLine(st, c.now()))
	return exitOK
}
