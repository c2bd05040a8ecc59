package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

// pollInterval is how often `authorize --wait` asks for the grant's state.
const pollInterval = 2 * time.Second

// waitLimit bounds `authorize --wait` when the daemon gives no deadline.
const waitLimit = 10 * time.Minute

// cmdAuthorize starts the authorization of a grant: it prints the URL to
// open (authorization_code) or the code to enter (device_code); grants that
// need no person are obtained at once. With --wait it polls until the
// token arrives, the authorization fails, it expires, or --timeout (when
// given) has passed since the command started.
func (c *cli) cmdAuthorize(ctx context.Context, args []string) int {
	fs := c.flagSet("authorize", "authorize NAME [--open] [--wait [--timeout D]] [--paste] [--socket PATH]")
	cf := c.addClientFlags(fs)
	fs.Lookup("timeout").Usage = "give up after `DURATION`; with --wait, on the whole wait (default: each request 1m, the wait until the authorization expires)"
	open := fs.Bool("open", false, "open the URL with xdg-open")
	wait := fs.Bool("wait", false, "wait until the authorization completes")
	paste := fs.Bool("paste", false, "authorize in a browser anywhere: print the authorization server's URL alone on the first line of stdout, then read the address the browser ended on from stdin")
	name, code, ok := c.parseName(fs, args)
	if !ok {
		return code
	}
	if *paste {
		if *open || *wait {
			return c.usageErr(fs, "--paste cannot be combined with --open or --wait")
		}
		return c.authorizePaste(ctx, cf, name, stdinOf)
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

	// What the daemon relays from the provider (device code strings) is
	// printed through oauth.Printable: it must not drive the terminal.
	var openTarget string
	switch ar.Kind {
	case config.GrantAuthorizationCode:
		// A one-time start page on tokend's callback listener: it binds the
		// authorization to the browser that opens it, then redirects to
		// the provider.
		fmt.Fprintf(c.stdout, "Open this URL in a browser to authorize %s:\n\n    %s\n\n", name, oauth.Printable(ar.URL))
		openTarget = ar.URL
	case config.GrantDeviceCode:
		fmt.Fprintf(c.stdout, "To authorize %s, visit\n\n    %s\n\nand enter the code\n\n    %s\n\n", name, oauth.Printable(ar.VerificationURI), oauth.Printable(ar.UserCode))
		if ar.VerificationURIComplete != "" {
			fmt.Fprintf(c.stdout, "or open %s\n\n", oauth.Printable(ar.VerificationURIComplete))
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
		if ar.Status.State != api.StateValid {
			return exitError
		}
		return exitOK
	}
	if !ar.ExpiresAt.IsZero() {
		fmt.Fprintf(c.stdout, "This expires at %s (in %s).\n", ar.ExpiresAt.Format(time.RFC3339), human(ar.ExpiresAt.Sub(c.now())))
	}
	if *open && openTarget != "" {
		if !openable(openTarget) {
			// A provider's verification_uri of file:///etc/passwd (or any
			// scheme a desktop hands to some program) is not opened.
			c.printErr(fmt.Errorf("tokend: not opening %q: only http and https URLs are opened", oauth.Printable(openTarget)))
		} else if remove, err := c.openURL(openTarget); err != nil {
			c.printErr(err)
		} else if *wait {
			// The browser has read the redirect file long before this;
			// without --wait it is swept by a later --open.
			t := time.AfterFunc(openFileLifetime, remove)
			defer func() { t.Stop(); remove() }()
		}
	}
	if !*wait {
		fmt.Fprintf(c.stdout, "Then check with: %s\n", c.hint("status", name))
		return exitOK
	}
	w := waitBound{deadline: ar.ExpiresAt}
	if w.deadline.IsZero() {
		w.deadline = started.Add(waitLimit)
	}
	// An explicit --timeout bounds the whole wait, not only each request:
	// a script that says 8s must get its answer after 8s. Without it the
	// wait lasts as long as the authorization can complete.
	if flagGiven(fs, "timeout") && cf.timeout > 0 {
		if limit := started.Add(cf.timeout); limit.Before(w.deadline) {
			w = waitBound{deadline: limit, timeout: cf.timeout, expires: ar.ExpiresAt}
		}
	}
	return c.waitAuthorized(ctx, cf, name, gen0, started, w)
}

// waitBound is when `authorize --wait` gives up: deadline, which is the
// authorization's expiry unless --timeout (timeout, non-zero) comes first;
// expires is then the authorization's own expiry, for the message.
type waitBound struct {
	deadline time.Time
	timeout  time.Duration
	expires  time.Time
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// openable reports whether --open may hand u to the desktop: an absolute
// http or https URL.
func openable(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (strings.EqualFold(p.Scheme, "http") || strings.EqualFold(p.Scheme, "https")) && p.Host != ""
}

// openFileLifetime is how long the redirect file --open writes is kept.
const openFileLifetime = 2 * time.Minute

// redirectPage is the file --open gives the browser: the URL to open is in
// the file, not on any command line. A URL in argv is readable by every
// local user (ps, /proc/PID/cmdline) for as long as the browser runs.
var redirectPage = template.Must(template.New("open").Parse(`<!doctype html>
<html><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0; url={{.}}">
<title>tokend authorize</title></head>
<body><p><a href="{{.}}">Continue to the authorization</a></p></body></html>
`))

// openDirPrefix names the directories holding redirect files.
const openDirPrefix = "tokend-open-"

// writeRedirectFile writes a redirect page to target into a fresh 0700
// directory (under $XDG_RUNTIME_DIR when it is a private directory of ours,
// else the temporary directory), mode 0600, and returns the file and a
// function removing the directory. Directories an earlier --open left, older
// than openFileLifetime, are removed first.
func writeRedirectFile(target string) (string, func(), error) {
	base := os.TempDir()
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" && privateDir(xdg) {
		base = xdg
	}
	sweepRedirectDirs(base, time.Now().Add(-openFileLifetime))
	dir, err := os.MkdirTemp(base, openDirPrefix) // 0700
	if err != nil {
		return "", nil, fmt.Errorf("tokend: --open: %w", err)
	}
	var once sync.Once
	remove := func() { once.Do(func() { _ = os.RemoveAll(dir) }) }
	file := filepath.Join(dir, "authorize.html")
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = redirectPage.Execute(f, target)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("tokend: --open: writing the redirect file: %w", err)
	}
	return file, remove, nil
}

// privateDir reports whether dir is a directory owned by this user that
// nobody else may enter, as $XDG_RUNTIME_DIR must be. (It may be inherited
// from another user, say through sudo.)
func privateDir(dir string) bool {
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// sweepRedirectDirs removes this user's redirect directories in base last
// changed before cutoff. Symlinks and others' entries are left alone.
func sweepRedirectDirs(base string, cutoff time.Time) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), openDirPrefix) || !e.IsDir() {
			continue
		}
		p := filepath.Join(base, e.Name())
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() || !fi.ModTime().Before(cutoff) {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Geteuid() {
			_ = os.RemoveAll(p)
		}
	}
}

// waitAuthorized polls the grant's status until a new token arrives (its
// generation grows), the authorization is reported failed, or deadline.
func (c *cli) waitAuthorized(ctx context.Context, cf *clientFlags, name string, gen0 uint64, started time.Time, w waitBound) int {
	fmt.Fprintln(c.stderr, "Waiting for the authorization to complete (Ctrl-C to stop)...")
	warned := false
	for {
		// The last poll lands on the deadline, not a poll interval past it.
		d := min(pollInterval, w.deadline.Sub(c.now()))
		if d <= 0 {
			return c.waitTimedOut(name, w)
		}
		if err := c.sleep(ctx, d); err != nil {
			c.printErr(errors.New("tokend: stopped waiting"))
			return exitError
		}
		cl, rctx, cancel := c.client(ctx, cf)
		st, err := cl.Status(rctx, name)
		cancel()
		if err != nil {
			return c.fail(err)
		}
		if st.Generation > gen0 && st.State == api.StateValid {
			fmt.Fprintln(c.stdout, "Authorized. "+stateLine(st, c.now()))
			return exitOK
		}
		if strings.HasPrefix(st.Auth, api.AuthCallbackUnbound) && !st.AuthAt.Before(started) {
			// Someone else's callback was refused; the authorization is
			// still pending for the operator's browser. Say so once.
			if !warned {
				c.printErr(fmt.Errorf("tokend: warning: a callback for %s that did not come from the browser that opened the start page was refused; another local program may be trying to inject its own authorization. Still waiting", name))
				warned = true
			}
			continue
		}
		if st.Auth != "" && !st.AuthAt.Before(started) && !strings.HasPrefix(st.Auth, "authorized") && st.Auth != "pending" {
			c.printErr(fmt.Errorf("tokend: authorization of %s failed: %s", name, oneLine(st.Auth, 0)))
			return exitError
		}
		if !c.now().Before(w.deadline) {
			return c.waitTimedOut(name, w)
		}
	}
}

// waitTimedOut reports that --wait gave up, at --timeout or at the
// authorization's expiry.
func (c *cli) waitTimedOut(name string, w waitBound) int {
	if w.timeout > 0 {
		msg := fmt.Sprintf("tokend: the authorization of %s was not completed within --timeout %s", name, w.timeout)
		if !w.expires.IsZero() {
			msg += fmt.Sprintf("; it can still complete until %s (%s)", w.expires.Format(time.RFC3339), c.hint("status", name))
		}
		c.printErr(errors.New(msg))
		return exitError
	}
	c.printErr(fmt.Errorf("tokend: the authorization of %s was not completed in time; run %s again", name, c.hint("authorize", name)))
	return exitError
}

// maxPastedLine bounds the line authorize --paste reads.
const maxPastedLine = 8 << 10

// authorizePaste is authorize --paste: the authorization server's URL alone
// on stdout's first line (scripts read it; instructions go to stderr),
// then one line from stdin, the address the browser ended on, which the
// daemon checks and completes.
func (c *cli) authorizePaste(ctx context.Context, cf *clientFlags, name string, stdin io.Reader) int {
	cl, rctx, cancel := c.client(ctx, cf)
	ar, err := cl.AuthorizePaste(rctx, name)
	cancel()
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, oauth.Printable(ar.URL))
	fmt.Fprintf(c.stderr, "\nOpen the URL above in a browser on any machine and approve. The browser then ends on an address\n"+
		"that may not load (%s on this host); copy that whole address from the address bar and paste it here.\n", name)
	if !ar.ExpiresAt.IsZero() {
		fmt.Fprintf(c.stderr, "This expires at %s (in %s).\n", ar.ExpiresAt.Format(time.RFC3339), human(ar.ExpiresAt.Sub(c.now())))
	}
	fmt.Fprint(c.stderr, "Address: ")
	line, err := bufio.NewReaderSize(io.LimitReader(stdin, maxPastedLine+1), maxPastedLine+1).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return c.fail(errors.New("tokend: no address was pasted (one line on stdin)"))
	}
	if len(line) > maxPastedLine {
		return c.fail(fmt.Errorf("tokend: the pasted line is longer than %d bytes", maxPastedLine))
	}
	cl, rctx, cancel = c.client(ctx, cf)
	defer cancel()
	st, err := cl.CompletePaste(rctx, name, ar.PasteID, strings.TrimSpace(line))
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, stateLine(st, c.now()))
	if st.State != api.StateValid {
		return exitError
	}
	return exitOK
}
