package main

import (
	"context"
	"fmt"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/mcpbridge"
	"github.com/tokend/tokend/oauth"
)

// cmdMCP is `tokend mcp NAME [--url URL]`: the MCP bridge between the
// stdio transport of the client that launched it and the Streamable HTTP
// server of grant NAME's protected resource, with the grant's token from
// the daemon on each request.
func (c *cli) cmdMCP(ctx context.Context, args []string) int {
	fs := c.flagSet("mcp", "mcp NAME [--url URL] [--socket PATH]")
	cf := c.addClientFlags(fs)
	serverURL := fs.String("url", "", "the MCP server's `URL` (default: the grant's protected_resource)")
	name, code, ok := c.parseName(fs, args)
	if !ok {
		return code
	}
	if *serverURL != "" {
		if err := oauth.CheckEndpointURL(*serverURL); err != nil {
			return c.usageErr(fs, "mcp: --url %v", err)
		}
	}
	// --timeout bounds the first question to the daemon only: the bridge
	// runs as long as its client.
	cl, sctx, cancel := c.client(ctx, cf)
	st, err := cl.Status(sctx, name)
	cancel()
	if err != nil {
		return c.failGrant(name, err)
	}

	target := *serverURL
	if target == "" {
		target = st.ProtectedResource
	}
	if target == "" {
		c.printErr(fmt.Errorf("tokend: grant %s has no protected_resource: name the MCP server with --url URL", text(name)))
		return exitUsage
	}
	err = mcpbridge.Run(ctx, mcpbridge.Config{
		Grant: name,
		URL:   target,
		DPoP:  st.DPoP,
		// From here on a restart of the daemon is a wait for the client's
		// requests, as for tokend proxy's, not an error answer (the status
		// check above fails at once). The bridge bounds each try itself.
		Daemon: &api.WaitingClient{Client: cl, Wait: daemonWait, Sleep: c.sleep},
		Log:    c.stderr,
		Now:    c.now,
		Sleep:  c.sleep,
	}, stdinOf, c.stdout)
	if err != nil {
		c.printErr(err)
		return exitError
	}
	return exitOK
}
