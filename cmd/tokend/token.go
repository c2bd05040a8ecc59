package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// cmdToken prints a grant's access token: bare (for $(...) in shell), or
// the whole JSON answer with --json.
func (c *cli) cmdToken(ctx context.Context, args []string) int {
	fs := c.flagSet("token", "token NAME [--socket PATH] [--json] [--timeout DURATION]")
	cf := c.addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the JSON answer (access_token, token_type, expires_in, expires_at, scope)")
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
	if *asJSON {
		t, err := cl.Token(ctx, name)
		if err != nil {
			return c.failGrant(name, err)
		}
		return c.printJSON(t)
	}
	tok, err := cl.RawToken(ctx, name)
	if err != nil {
		return c.failGrant(name, err)
	}
	fmt.Fprintln(c.stdout, tok)
	return exitOK
}

// failGrant is fail with a hint for a grant that needs a person.
func (c *cli) failGrant(name string, err error) int {
	code := exitCode(err)
	if code == exitReauth && !strings.Contains(err.Error(), "authorize") {
		fmt.Fprintf(c.stderr, "%s; an operator must run: tokend authorize %s\n", err, name)
		return code
	}
	c.printErr(err)
	return code
}

func (c *cli) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		c.printErr(fmt.Errorf("tokend: %w", err))
		return exitError
	}
	fmt.Fprintf(c.stdout, "%s\n", b)
	return exitOK
}
