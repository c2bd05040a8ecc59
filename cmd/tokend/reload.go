package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/oauth"
)

// cmdReload asks the running daemon to read its configuration file again
// (POST /v1/reload) and waits until the new configuration is in effect, so
// that `tokend reload && tokend token NEW` does not race. An invalid file
// is printed and exits 1; the daemon keeps its running configuration. A
// file that changes keys only a restart applies (listen.*, store.*, ...)
// is applied except for those, which are named, and exits
// exitRestartNeeded. tokend.service's ExecReload= runs it, which makes
// `systemctl reload tokend` synchronous and its exit status truthful.
func (c *cli) cmdReload(ctx context.Context, args []string) int {
	fs := c.flagSet("reload", "reload [--socket PATH] [--timeout DURATION]\n\n"+reloadHelp)
	cf := c.addClientFlags(fs)
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
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
	if len(resp.RestartNeeded) > 0 {
		keys := make([]string, len(resp.RestartNeeded))
		for i, k := range resp.RestartNeeded {
			keys[i] = oauth.Printable(k)
		}
		fmt.Fprintf(c.stdout, "configuration reloaded: %d grants, except %s\n", resp.Grants, strings.Join(keys, ", "))
		c.printErr(fmt.Errorf("tokend: warning: not in effect until tokend restarts (systemctl restart tokend): %s; the running values stay", strings.Join(keys, ", ")))
		return exitRestartNeeded
	}
	fmt.Fprintf(c.stdout, "configuration reloaded: %d grants\n", resp.Grants)
	return exitOK
}

// reloadHelp is the part of `tokend reload --help` that says what a reload
// applies and how it answers.
var reloadHelp = `Reads the configuration file again and returns once it is in effect.
A reload applies grants, clients, providers, hooks, operators and the
refresh schedule and policy. It does not apply these keys, which need a
restart:
` + wrap(strings.Join(daemon.RestartKeys(), ", "), "  ", 72) + `
When the file changes one of those, the rest is applied, those keep their
running values, the output names them, and the exit status is 6 (restart
tokend to apply them). An invalid file changes nothing and exits 1.
`

// wrap breaks s at spaces into lines of at most width, each after indent.
func wrap(s, indent string, width int) string {
	var b strings.Builder
	line := indent
	for _, w := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	return b.String()
}
