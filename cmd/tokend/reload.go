package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// cmdReload asks the running daemon to read its configuration file again
// (POST /v1/reload) and waits until the new configuration is in effect, so
// that `tokend reload && tokend token NEW` does not race. An invalid file
// is printed and exits 1; the daemon keeps its running configuration.
// tokend.service's ExecReload= runs it, which makes `systemctl reload
// tokend` synchronous and its exit status truthful.
func (c *cli) cmdReload(ctx context.Context, args []string) int {
	fs := c.flagSet("reload", "reload [--socket PATH] [--timeout DURATION]")
	cf := c.addClientFlags(fs)
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "reload: unexpected argument %q", pos[0])
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	resp, err := cl.Reload(ctx)
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
			c.printErr(fmt.Errorf("tokend: reload refused, the running configuration stays:\n%s", ae.Description))
			return exitError
		}
		return c.fail(err)
	}
	for _, w := range resp.Warnings {
		fmt.Fprintln(c.stderr, "tokend: warning: "+oauth.Printable(w))
	}
	fmt.Fprintf(c.stdout, "configuration reloaded: %d grants\n", resp.Grants)
	return exitOK
}
