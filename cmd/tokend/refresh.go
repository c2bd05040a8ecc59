package main

import (
	"context"
	"fmt"
)

// cmdRefresh asks the daemon to refresh a grant now and prints the result.
// The exit code says whether the grant is usable: 0 valid, 3 a person must
// authorize again, 1 anything else.
func (c *cli) cmdRefresh(ctx context.Context, args []string) int {
	fs := c.flagSet("refresh", "refresh NAME [--socket PATH]")
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
	st, err := cl.Refresh(ctx, name)
	if err != nil {
		return c.failGrant(name, err)
	}
	fmt.Fprintln(c.stdout, stateLine(st, c.now()))
	switch st.State {
	case "valid":
		return exitOK
	case "reauthorization_required":
		return exitReauth
	}
	return exitError
}
