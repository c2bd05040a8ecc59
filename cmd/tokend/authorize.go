package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokend/tokend/daemon"
)

// pollInterval is how often `authorize --wait` asks for the grant's state.
const pollInterval = 2 * time.Second

// waitLimit bounds `authorize --wait` when the daemon gives no deadline.
const waitLimit = 10 * time.Minute

// cmdAuthorize starts the authorization of a grant: it prints the URL to
// open (authorization_code) or the code to enter (device_code); grants that
// need no person are obtained at once. With --wait it polls until the
// token arrives, the authorization fails, or it expires.
func (c *cli) cmdAuthorize(ctx context.Context, args []string) int {
	fs := c.flagSet("authorize", "authorize NAME [--open] [--wait] [--socket PATH]")
	cf := c.addClientFlags(fs)
	open := fs.Bool("open", false, "open the URL with xdg-open")
	wait := fs.Bool("wait", false, "wait until the authorization completes")
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	name, code, ok := c.oneName(fs, pos)
	if !ok {
		return code
	}
	cl, rctx, cancel := c.client(ctx, cf)
	defer cancel()

	// The generation before, so --wait recognises a new token even when
	// the grant was valid already (a re-authorization).
	var gen0 uint64
	if *wait {
		st, err := cl.Status(rctx, name)
		if err != nil {
			return c.fail(err)
		}
		gen0 = st.Generation
	}
	started := c.now()
	ar, err := cl.Authorize(rctx, name)
	if err != nil {
		return c.fail(err)
	}
	cancel()

	var openTarget string
	switch ar.Kind {
	case daemon.GrantAuthorizationCode:
		fmt.Fprintf(c.stdout, "Open this URL in a browser to authorize %s:\n\n    %s\n\n", name, ar.URL)
		openTarget = ar.URL
	case daemon.GrantDeviceCode:
		fmt.Fprintf(c.stdout, "To authorize %s, visit\n\n    %s\n\nand enter the code\n\n    %s\n\n", name, ar.VerificationURI, ar.UserCode)
		if ar.VerificationURIComplete != "" {
			fmt.Fprintf(c.stdout, "or open %s\n\n", ar.VerificationURIComplete)
			openTarget = ar.VerificationURIComplete
		} else {
			openTarget = ar.VerificationURI
		}
	default:
		// client_credentials, password: obtained at once.
		if ar.Status == nil {
			fmt.Fprintf(c.stdout, "%s: authorization requested\n", name)
			return exitOK
		}
		fmt.Fprintln(c.stdout, stateLine(ar.Status, c.now()))
		if ar.Status.State != "valid" {
			return exitError
		}
		return exitOK
	}
	if !ar.ExpiresAt.IsZero() {
		fmt.Fprintf(c.stdout, "This expires at %s (in %s).\n", ar.ExpiresAt.Format(time.RFC3339), human(ar.ExpiresAt.Sub(c.now())))
	}
	if *open && openTarget != "" {
		if err := c.openURL(openTarget); err != nil {
			c.printErr(err)
		}
	}
	if !*wait {
		fmt.Fprintf(c.stdout, "Then check with: tokend status %s\n", name)
		return exitOK
	}
	deadline := ar.ExpiresAt
	if deadline.IsZero() {
		deadline = started.Add(waitLimit)
	}
	return c.waitAuthorized(ctx, cf, name, gen0, started, deadline)
}

// waitAuthorized polls the grant's status until a new token arrives (its
// generation grows), the authorization is reported failed, or deadline.
func (c *cli) waitAuthorized(ctx context.Context, cf *clientFlags, name string, gen0 uint64, started, deadline time.Time) int {
	fmt.Fprintln(c.stderr, "Waiting for the authorization to complete (Ctrl-C to stop)...")
	for {
		if err := c.sleep(ctx, pollInterval); err != nil {
			c.printErr(errors.New("tokend: stopped waiting"))
			return exitError
		}
		cl, rctx, cancel := c.client(ctx, cf)
		st, err := cl.Status(rctx, name)
		cancel()
		if err != nil {
			return c.fail(err)
		}
		if st.Generation > gen0 && st.State == "valid" {
			fmt.Fprintln(c.stdout, "Authorized. "+stateLine(st, c.now()))
			return exitOK
		}
		if st.Auth != "" && !st.AuthAt.Before(started) && !strings.HasPrefix(st.Auth, "authorized") && st.Auth != "pending" {
			c.printErr(fmt.Errorf("tokend: authorization of %s failed: %s", name, oneLine(st.Auth, 0)))
			return exitError
		}
		if !c.now().Before(deadline) {
			c.printErr(fmt.Errorf("tokend: the authorization of %s was not completed in time; run tokend authorize %s again", name, name))
			return exitError
		}
	}
}
