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
//	4  permission denied (HTTP 403, or a socket the caller may not reach)
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
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

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
	// socketGiven is the --socket of the running client command, kept in
	// the commands it suggests ("Then check with: tokend status NAME
	// --socket PATH").
	socketGiven string
	// onFlagSet, when set, is given every FlagSet a command makes: help,
	// the man page and completion learn a command's flags from it.
	onFlagSet func(*flag.FlagSet)
}

func newCLI() *cli {
	return &cli{
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		getenv:      os.Getenv,
		now:         time.Now,
		sleep:       api.Sleep,
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
	if len(args) == 2 && (args[1] == "-h" || args[1] == "-help" || args[1] == "--help") {
		switch args[0] {
		case "version", "completion", "man":
			return c.cmdHelp(args[:1])
		}
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return c.cmdHelp(args[1:])
	case "version", "--version":
		return c.cmdVersion(ctx, args[1:])
	case "completion":
		return c.cmdCompletion(args[1:])
	case "man":
		return c.cmdMan(args[1:])
	case "__complete":
		return c.cmdComplete(ctx, args[1:])
	}
	code, known := c.dispatch(ctx, args)
	if !known {
		fmt.Fprintf(c.stderr, "tokend: unknown command %q\n", args[0])
		c.suggest(args[0])
		fmt.Fprintln(c.stderr, "Run 'tokend help' for usage.")
		return exitUsage
	}
	return code
}

// dispatch runs the command that args name; known is false when there is
// no such command.
func (c *cli) dispatch(ctx context.Context, args []string) (code int, known bool) {
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return c.daemonExit(c.runServe(ctx, rest)), true
	case "dev":
		return c.daemonExit(c.runDev(ctx, rest)), true
	case "token":
		return c.cmdToken(ctx, rest), true
	case "status":
		return c.cmdStatus(ctx, rest), true
	case "authorize":
		return c.cmdAuthorize(ctx, rest), true
	case "refresh":
		return c.cmdRefresh(ctx, rest), true
	case "revoke":
		return c.cmdRevoke(ctx, rest), true
	case "reload":
		return c.cmdReload(ctx, rest), true
	case "credential":
		return c.cmdCredential(ctx, rest, stdinOf), true
	case "exec":
		return c.cmdExec(ctx, rest), true
	case "mcp":
		return c.cmdMCP(ctx, rest), true
	case "proxy":
		return c.cmdProxy(ctx, rest), true
	case "check-config":
		return c.cmdCheckConfig(ctx, rest), true
	case "rekey":
		return c.cmdRekey(ctx, rest), true
	case "store":
		return c.cmdStore(ctx, rest), true
	}
	return exitUsage, false
}

// daemonExit maps the daemon's result to an exit code: cancellation (a
// signal) is a clean stop.
func (c *cli) daemonExit(err error) int {
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		return exitUsage
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
		line = c.withSocket(oauth.Printable(line))
		if !strings.HasPrefix(line, "tokend") && !strings.HasPrefix(line, "/") {
			line = "tokend: " + line
		}
		fmt.Fprintln(c.stderr, line)
	}
}

// hint is a tokend command line to suggest, with the --socket the user
// gave.
func (c *cli) hint(args ...string) string {
	for i, a := range args {
		args[i] = shellQuote(text(a))
	}
	s := "tokend " + strings.Join(args, " ")
	if c.socketGiven != "" {
		s += " --socket " + shellQuote(c.socketGiven)
	}
	return s
}

// suggestedCommand finds the command lines the daemon's messages suggest
// ("a person must authorize this grant: tokend authorize NAME").
var suggestedCommand = regexp.MustCompile(`\btokend (authorize|status|refresh|token) [^\s;,()]+`)

// withSocket adds the --socket the user gave to the command lines a
// message suggests, so they work when pasted.
func (c *cli) withSocket(line string) string {
	if c.socketGiven == "" || strings.Contains(line, "--socket") {
		return line
	}
	return suggestedCommand.ReplaceAllStringFunc(line, func(m string) string {
		return m + " --socket " + shellQuote(c.socketGiven)
	})
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// fail prints a client error and returns its exit code.
func (c *cli) fail(err error) int {
	c.printErr(err)
	return exitCode(err)
}

// exitCode maps an API error's HTTP status to an exit code; a socket the
// caller may not reach is a permission denied too.
func exitCode(err error) int {
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return exitForbidden
	}
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

// errUsage marks a daemon command's usage problem, already printed.
var errUsage = errors.New("tokend: usage error")

// codeError is a daemon command's error for a parse's exit code
// (daemonExit maps it back): flag.ErrHelp after the help, errUsage after a
// usage problem.
func codeError(code int) error {
	if code == exitOK {
		return flag.ErrHelp
	}
	return errUsage
}

// wroteTo records whether anything was written through it: the flag
// package writes its complaint before calling Usage, and writes nothing
// before calling it for -h/--help.
type wroteTo struct {
	w     io.Writer
	wrote bool
}

func (r *wroteTo) Write(p []byte) (int, error) {
	r.wrote = true
	return r.w.Write(p)
}

// flagSet returns a FlagSet for a subcommand. Asked for (-h, --help), its
// usage is the command's full help on stdout; after a problem, the
// synopsis on stderr. synopsis is used for commands without an entry in
// commandDocs.
func (c *cli) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	out := &wroteTo{w: c.stderr}
	fs.SetOutput(out)
	d := findDoc(name)
	fs.Usage = func() {
		if !out.wrote {
			if d != nil {
				writeCommandHelp(c.stdout, d, fs)
			} else {
				fmt.Fprintf(c.stdout, "usage: tokend %s\n", synopsis)
				fs.SetOutput(c.stdout)
				fs.PrintDefaults()
				fs.SetOutput(out)
			}
			return
		}
		line := synopsis
		if d != nil {
			line = d.usage
			if fs.Lookup("socket") != nil {
				line += " [--socket PATH] [--timeout DURATION]"
			}
		}
		line, _, _ = strings.Cut(line, "\n")
		fmt.Fprintf(c.stderr, "usage: tokend %s\nRun 'tokend help %s' for the flags and examples.\n", line, name)
	}
	if c.onFlagSet != nil {
		c.onFlagSet(fs)
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
	fmt.Fprintf(fs.Output(), "tokend: "+format+"\n", args...)
	fs.Usage()
	return exitUsage
}

// clientFlags are the flags every socket command takes.
type clientFlags struct {
	socket  string
	timeout time.Duration
}

// timeoutHelp is --timeout's help per command: what it bounds.
var timeoutHelp = map[string]string{
	"token":      "give up after `DURATION`; a fetch may wait for a refresh at the provider",
	"status":     "give up after `DURATION`",
	"authorize":  "give up after `DURATION`",
	"refresh":    "give up after `DURATION`; the refresh waits for the provider's answer",
	"revoke":     "give up after `DURATION`; the revocation waits for the provider's answer",
	"reload":     "give up after `DURATION` waiting for the new configuration to be in effect",
	"credential": "give up after `DURATION`; a fetch may wait for a refresh at the provider",
	"exec":       "give up after `DURATION` fetching the tokens; a fetch may wait for a refresh (CMD itself is not bounded)",
	"mcp":        "give up after `DURATION` asking the daemon for the grant's status at start (the bridge itself runs as long as its client)",
	"proxy":      "give up after `DURATION` on each request to the daemon (the proxy runs until stopped)",
}

func (c *cli) addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.socket, "socket", "", "daemon socket `PATH` (default $TOKEND_SOCKET, else "+config.DefaultSocketPath+")")
	fs.DurationVar(&f.timeout, "timeout", time.Minute, timeoutHelp[fs.Name()])
	return f
}

// client returns the socket client and a context bounded by --timeout.
func (c *cli) client(ctx context.Context, f *clientFlags) (*api.Client, context.Context, context.CancelFunc) {
	c.socketGiven = f.socket
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

// loadConfig loads the configuration file at path for an offline
// command, printing its warnings, and its error when it cannot be used.
func (c *cli) loadConfig(path string) (*config.Config, bool) {
	cfg, warns, err := config.Load(path)
	for _, w := range warns {
		fmt.Fprintln(c.stderr, "warning: "+w)
	}
	if err != nil {
		c.printErr(err)
		return nil, false
	}
	return cfg, true
}

// parseFlags parses flags alone: a positional argument is a usage error.
func (c *cli) parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code, false
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "%s: unexpected argument %q", fs.Name(), pos[0]), false
	}
	return exitOK, true
}

// parseName parses the flags and exactly one grant name, as parseArgs and
// oneName do.
func (c *cli) parseName(fs *flag.FlagSet, args []string) (string, int, bool) {
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return "", code, false
	}
	return c.oneName(fs, pos)
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
