// Command tokend keeps OAuth 2.0 tokens fresh for the programs on one host
// and serves them over a unix socket. The same binary is the daemon (serve,
// dev) and its command-line client (token, status, authorize, ...).
//
// Exit codes, for scripts:
//
//	0  success
//	1  error
//	2  usage error (bad command or flags)
//	3  reauthorization required: a person must run `tokend authorize NAME` (HTTP 409)
//	4  permission denied (HTTP 403)
//	5  unknown grant (HTTP 404)
//	6  tokend reload: applied, except changes that need a restart, which it names
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// Exit codes; see the package comment.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitReauth    = 3
	exitForbidden = 4
	exitNotFound  = 5
	// exitRestartNeeded: tokend reload applied the file except keys that
	// need a restart (listen.*, store.*, ...).
	exitRestartNeeded = 6
)

const usageText = `tokend keeps OAuth 2.0 tokens fresh and serves them over a unix socket.

Usage:
  tokend <command> [arguments]

Daemon:
  serve [--config FILE]        run the daemon (default config /etc/tokend/config.yaml)
  dev [--dir DIR]              run a self-contained daemon with a built-in test provider
  check-config [FILE]          check a configuration file and explain it
  rekey --config FILE (--new-key-file PATH | --decrypt) [--old-key-file PATH]
                               re-seal the store the configuration uses (bbolt or etcd) with a
                               new key, offline (stop the daemon, or every instance, first)
  store copy --from bbolt:PATH|etcd --to etcd|bbolt:PATH [--config FILE] [--force | --into-live-fleet]
                               copy every grant, client and provider between the bbolt file
                               and etcd (fleet mode), offline (stop the daemons first); --force
                               overwrites records, rolling refresh tokens back

Client (talks to the daemon's socket):
  token NAME [--json]          print a grant's access token
  status [NAME] [--json]       list grants, or show one grant with its refresh history
  authorize NAME [--open] [--wait]
                               start the authorization of a grant (browser URL or device code)
  refresh NAME                 refresh a grant's token now
  revoke NAME                  revoke a grant's tokens and forget them
  reload                       reload the daemon's configuration file and wait until it is in effect
                               (an invalid file: exit 1, the running configuration stays)

  credential git get|store|erase
                               git credential helper: the token of the grant whose match covers the URL
  credential kubectl NAME      kubectl exec plugin: an ExecCredential with NAME's token
  credential docker get|list|store|erase
                               docker credential helper (store and erase are refused)
  exec NAME[=VAR] ... -- CMD [ARGS...]
                               run CMD (no shell) with each token in VAR (default TOKEND_<NAME>_TOKEN)

  Client commands take --socket PATH (default $TOKEND_SOCKET, else
  /run/tokend/tokend.sock) and --timeout DURATION (default 1m). Flags may
  follow NAME.

Other:
  version                      print the version
  help                         print this help

Exit codes:
  0  success
  1  error
  2  usage error
  3  reauthorization required: run "tokend authorize NAME" (HTTP 409)
  4  permission denied (HTTP 403)
  5  unknown grant (HTTP 404)
  6  reload: applied, except changes that need a restart (named)
`

// cli carries the process's environment so commands are testable without
// building the binary: output streams, environment, clock, waiting and the
// browser opener are all replaceable.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// sleep waits d or until ctx ends (authorize --wait polls with it).
	sleep func(ctx context.Context, d time.Duration) error
	// openURL opens a URL in the user's browser (authorize --open) and
	// returns a function that removes what it left for the browser.
	openURL func(url string) (remove func(), err error)
	// lockTimeout bounds rekey's wait for the store lock.
	lockTimeout time.Duration
}

func newCLI() *cli {
	return &cli{
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		getenv:      os.Getenv,
		now:         time.Now,
		sleep:       sleepCtx,
		openURL:     xdgOpen,
		lockTimeout: 2 * time.Second,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == dockerHelperName {
		// Docker runs its helpers by name: a link
		// docker-credential-tokend -> tokend is `tokend credential docker`.
		args = append([]string{"credential", "docker"}, args...)
	}
	code := newCLI().run(ctx, args)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit code.
func (c *cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, usageText)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return c.daemonExit(runServe(ctx, rest))
	case "dev":
		return c.daemonExit(runDev(ctx, rest))
	case "token":
		return c.cmdToken(ctx, rest)
	case "status":
		return c.cmdStatus(ctx, rest)
	case "authorize":
		return c.cmdAuthorize(ctx, rest)
	case "refresh":
		return c.cmdRefresh(ctx, rest)
	case "revoke":
		return c.cmdRevoke(ctx, rest)
	case "reload":
		return c.cmdReload(ctx, rest)
	case "credential":
		return c.cmdCredential(ctx, rest, stdinOf)
	case "exec":
		return c.cmdExec(ctx, rest)
	case "check-config":
		return c.cmdCheckConfig(ctx, rest)
	case "rekey":
		return c.cmdRekey(ctx, rest)
	case "store":
		return c.cmdStore(ctx, rest)
	case "version", "--version":
		return c.cmdVersion(ctx, rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(c.stderr, "tokend: unknown command %q\nRun 'tokend help' for usage.\n", cmd)
		return exitUsage
	}
}

// daemonExit maps the daemon's result to an exit code: cancellation (a
// signal) is a clean stop.
func (c *cli) daemonExit(err error) int {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	}
	c.printErr(err)
	return exitError
}

// printErr prints err, one problem a line, each starting with "tokend:"
// unless it names its own origin already. An error may carry the daemon's
// error_description, and through it a provider's text: each line goes
// through oauth.Printable, so it cannot drive the terminal.
func (c *cli) printErr(err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		line = oauth.Printable(line)
		if !strings.HasPrefix(line, "tokend") && !strings.HasPrefix(line, "/") {
			line = "tokend: " + line
		}
		fmt.Fprintln(c.stderr, line)
	}
}

// fail prints a client error and returns its exit code.
func (c *cli) fail(err error) int {
	c.printErr(err)
	return exitCode(err)
}

// exitCode maps an API error's HTTP status to an exit code.
func exitCode(err error) int {
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusConflict:
			return exitReauth
		case http.StatusForbidden:
			return exitForbidden
		case http.StatusNotFound:
			return exitNotFound
		}
	}
	return exitError
}

// flagSet returns a FlagSet for a subcommand printing its usage line.
func (c *cli) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "usage: tokend %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags that may come before or after the positional
// arguments ("tokend token demo --socket x"), and returns the positional
// ones. "--" ends the flags. The exit code is meaningful when ok is false.
func (c *cli) parseArgs(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, exitOK, true
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), exitOK, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usageErr prints a usage problem and the subcommand's usage.
func (c *cli) usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "tokend: "+format+"\n", args...)
	fs.Usage()
	return exitUsage
}

// clientFlags are the flags every socket command takes.
type clientFlags struct {
	socket  string
	timeout time.Duration
}

func (c *cli) addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.socket, "socket", "", "daemon socket (default $TOKEND_SOCKET, else "+config.DefaultSocketPath+")")
	fs.DurationVar(&f.timeout, "timeout", time.Minute, "give up after this long (a fetch may wait for a refresh)")
	return f
}

// client returns the socket client and a context bounded by --timeout.
func (c *cli) client(ctx context.Context, f *clientFlags) (*api.Client, context.Context, context.CancelFunc) {
	path := f.socket
	if path == "" {
		path = c.getenv("TOKEND_SOCKET")
	}
	if path == "" {
		path = config.DefaultSocketPath
	}
	if f.timeout > 0 {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		return api.NewClient(path), ctx, cancel
	}
	ctx, cancel := context.WithCancel(ctx)
	return api.NewClient(path), ctx, cancel
}

// oneName checks that exactly one grant name was given.
func (c *cli) oneName(fs *flag.FlagSet, pos []string) (string, int, bool) {
	switch len(pos) {
	case 0:
		return "", c.usageErr(fs, "%s: missing grant NAME", fs.Name()), false
	case 1:
		if pos[0] == "" {
			return "", c.usageErr(fs, "%s: empty grant NAME", fs.Name()), false
		}
		return pos[0], 0, true
	default:
		return "", c.usageErr(fs, "%s: unexpected argument %q", fs.Name(), pos[1]), false
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// xdgOpen opens url with xdg-open, without waiting for the browser. The URL
// goes into a private redirect file, and xdg-open (and the browser) get the
// file's path: a command line is readable by every local user, and the URL
// must not be. It returns a function removing the file.
func xdgOpen(url string) (func(), error) {
	path, err := exec.LookPath("xdg-open")
	if err != nil {
		return nil, errors.New("tokend: xdg-open not found: open the URL yourself")
	}
	file, remove, err := writeRedirectFile(url)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, file)
	if err := cmd.Start(); err != nil {
		remove()
		return nil, fmt.Errorf("tokend: running xdg-open: %w", err)
	}
	go cmd.Wait() // reap it; its outcome does not matter
	return remove, nil
}
