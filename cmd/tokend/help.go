package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// cmdDoc documents one command. The table below is the single source of
// the global usage, each command's --help (`tokend help NAME`), the man
// page (`tokend man`) and shell completion (`tokend completion`); the
// flags come from the command's own FlagSet, so they cannot drift from
// what the command parses. The standard flag package stays (rather than
// cobra's pflag, which reads -socket as the shorthands -s -o -c ...):
// scripts and units spell flags with one dash or two.
type cmdDoc struct {
	name     string   // as typed: "token", "store copy"
	usage    string   // the synopsis after "tokend "
	short    string   // one line, lower case, no period
	long     string   // paragraphs, each line at most 72 columns
	examples []string // lines; a "#" starts a comment
	group    string   // "Daemon", "Client", "Other"; "" for hidden commands
	// args says what the positional arguments complete to.
	args argKind
	// words are the fixed first positional arguments (credential's
	// helpers, completion's shells).
	words []string
}

type argKind int

const (
	argNone argKind = iota
	argGrant
	argFile
)

const clientFlagsNote = `Client commands reach the daemon on --socket PATH (default
$TOKEND_SOCKET, else /run/tokend/tokend.sock). Flags may follow NAME.`

// commandDocs lists the commands in the order the help shows them.
var commandDocs = []*cmdDoc{
	{
		name: "serve", group: "Daemon", args: argNone,
		usage: "serve [--config FILE]",
		short: "run the daemon (default config /etc/tokend/config.yaml)",
		long: `Runs the daemon from a configuration file until SIGTERM or SIGINT.
SIGHUP, like "tokend reload", reads the file again; an invalid file
keeps the running configuration. Under systemd it notifies readiness,
feeds the watchdog and takes a socket passed by socket activation.`,
		examples: []string{
			"tokend serve --config /etc/tokend/config.yaml",
			"tokend check-config /etc/tokend/config.yaml && systemctl reload tokend",
		},
	},
	{
		name: "dev", group: "Daemon", args: argNone,
		usage: "dev [--config FILE] [--dir DIR] [--ttl DURATION] [--metrics ADDR]",
		short: "run a self-contained daemon with a built-in test provider",
		long: `Runs the daemon against an in-process development provider on
loopback that issues short-lived tokens and approves authorizations at
once. The store and the socket live under --dir.

Without --config it serves two grants: "demo" (client_credentials) and
"demo-user" (authorization code with PKCE). With --config FILE it runs
that configuration instead, with a provider named "dev" predefined
(issuer: the development provider) and two clients it knows:
"dev-app" (client_credentials and authorization code, client id
` + devClientID + `, secret ` + devClientSecret + `) and "dev-public" (a public
client, client id ` + devPublicClientID + `). The file may use them, or name
provider "dev" in its own clients with those ids; a client of provider
"dev" without client_id registers itself dynamically. listen.socket and
store.path default to --dir when the file leaves them out.

At start it prints the provider's address, the client ids and secrets,
and how to point "tokend serve" at the provider.`,
		examples: []string{
			"tokend dev",
			"tokend dev --config dev.yaml --dir /tmp/tokend-dev",
			"tokend token demo --socket ./tokend-dev/tokend.sock",
		},
	},
	{
		name: "check-config", group: "Daemon", args: argFile,
		usage: "check-config [FILE] [--skip-secrets]",
		short: "check a configuration file and explain it",
		long: `Loads a configuration file as the daemon would and prints every
problem with its file, line and key, or a summary of what it configures.
--skip-secrets checks everything but secret files, credentials and the
store key (for a machine that does not have them, such as CI).`,
		examples: []string{
			"tokend check-config /etc/tokend/config.yaml",
			"tokend check-config --skip-secrets deploy/config.yaml",
		},
	},
	{
		name: "rekey", group: "Daemon", args: argNone,
		usage: "rekey --config FILE (--new-key-file PATH | --decrypt) [--old-key-file PATH]",
		short: "re-seal the store the configuration uses (bbolt or etcd) with a new key, offline (stop the daemon, or every instance, first)",
		long: `Re-seals every record of the store the configuration uses with a new
key, or stores them unsealed from now on (--decrypt). The bbolt file's
daemon must be stopped: rekey takes the store's lock. With
store.backend: etcd, rekey refuses while instances are live (it names
them); instances cannot start while it runs, and a rekey killed midway
is finished by running it again with the same new key.`,
		examples: []string{
			"systemctl stop tokend",
			"tokend rekey --config /etc/tokend/config.yaml --new-key-file /etc/tokend/store.key.new",
		},
	},
	{
		name: "store copy", group: "Daemon", args: argNone,
		usage: "store copy --from bbolt:PATH|etcd --to etcd|bbolt:PATH [--config FILE] [--force | --into-live-fleet]",
		short: "copy every grant, client and provider between the bbolt file and etcd (fleet mode), offline (stop the daemons first)",
		long: `Copies every grant's token and history, every client and every cached
provider document from one store to another. SPEC is bbolt:PATH (a store
file) or etcd (the store.etcd section of the configuration). Secrets are
sealed with the configuration's store key on both sides. The destination
must be empty unless --force, which overwrites its records and so rolls
refreshed tokens back. Stop the daemon (every instance, for etcd) first:
a copy into an etcd store with live instances is refused, unless
--into-live-fleet, which imports only the grants whose record there is
older, fenced on the revision it read.`,
		examples: []string{
			"tokend store copy --from bbolt:/var/lib/tokend/tokend.db --to etcd --config /etc/tokend/config.yaml",
		},
	},
	{
		name: "token", group: "Client", args: argGrant,
		usage: "token NAME [--json] [--dpop METHOD URL [--nonce NONCE]]",
		short: "print a grant's access token",
		long: `Prints the access token of grant NAME. A valid token is printed at once;
an expired one is refreshed first (the fetch waits for it). --json prints the whole answer (token type, expires_in,
expires_at, scope). For a DPoP grant, --dpop METHOD URL prints the two
headers of a request to URL.

` + clientFlagsNote,
		examples: []string{
			`curl -H "Authorization: Bearer $(tokend token github)" https://api.github.com/user`,
			"tokend token demo --json --socket ./tokend-dev/tokend.sock",
		},
	},
	{
		name: "status", group: "Client", args: argGrant,
		usage: "status [NAME] [--json]",
		short: "list grants, or show one grant with its refresh history",
		long: `Without NAME, lists the grants the caller may read with their state and
expiry. With NAME, shows that grant and its recent refreshes.

` + clientFlagsNote,
		examples: []string{
			"tokend status",
			"tokend status demo --json",
		},
	},
	{
		name: "authorize", group: "Client", args: argGrant,
		usage: "authorize NAME [--open] [--wait [--timeout DURATION]]",
		short: "start the authorization of a grant (browser URL or device code)",
		long: `Starts the authorization of grant NAME: prints the URL to open
(authorization code) or the code to enter (device code). Grants that
need no person are obtained at once. --wait polls until the token
arrives, the authorization fails or expires.

` + clientFlagsNote,
		examples: []string{
			"tokend authorize github --open --wait",
		},
	},
	{
		name: "refresh", group: "Client", args: argGrant,
		usage: "refresh NAME",
		short: "refresh a grant's token now",
		long: `Asks the daemon to refresh grant NAME now and prints its state. The exit
status says whether the grant is usable: 0 valid, 3 a person must
authorize it again, 1 anything else.

` + clientFlagsNote,
		examples: []string{"tokend refresh demo"},
	},
	{
		name: "revoke", group: "Client", args: argGrant,
		usage: "revoke NAME",
		short: "revoke a grant's tokens and forget them",
		long: `Revokes grant NAME's tokens at the provider (where it offers revocation)
and forgets them; the grant then needs "tokend authorize" (or, for a
grant that needs no person, its next fetch obtains a new token).

` + clientFlagsNote,
		examples: []string{"tokend revoke demo"},
	},
	{
		name: "reload", group: "Client", args: argNone,
		usage: "reload",
		short: "reload the daemon's configuration file and wait until it is in effect (an invalid file: exit 1, the running configuration stays)",
		// long is set in init from reloadHelp.
		examples: []string{"tokend reload && tokend token new-grant"},
	},
	{
		name: "credential", group: "Client", args: argNone,
		words: []string{"git", "kubectl", "docker", "headers"},
		usage: "credential git (get|store|erase) | kubectl NAME | docker (get|list|store|erase) | headers NAME",
		short: "credential helper for git, kubectl, docker and MCP clients' headers",
		long: `git: the token of the grant whose match covers the URL git asks for.
kubectl: an ExecCredential with grant NAME's token (an exec plugin).
docker: a docker credential helper (store and erase are refused); a link
docker-credential-tokend -> tokend works as one.
headers: {"Authorization": "Bearer <token>"} for grant NAME, what MCP
clients' headersHelper runs; a dpop grant needs the proxy instead.

` + clientFlagsNote,
		examples: []string{
			`git config --global credential.https://github.com.helper "!tokend credential git"`,
			"tokend credential kubectl cluster-admin",
		},
	},
	{
		name: "exec", group: "Client", args: argGrant,
		usage: "exec NAME[=VAR] ... -- CMD [ARGS...]",
		short: "run CMD (no shell) with each token in VAR (default TOKEND_<NAME>_TOKEN)",
		long: `Fetches each grant's token and replaces itself with CMD (no shell), each
token in its environment variable: VAR when given, else
TOKEND_<NAME>_TOKEN (NAME upper-cased, other characters as _).

` + clientFlagsNote,
		examples: []string{
			`tokend exec github=GH_TOKEN -- gh repo list`,
		},
	},
	{
		name: "mcp", group: "Client", args: argGrant,
		usage: "mcp NAME [--url URL]",
		short: "bridge an MCP client's stdio to the grant's Streamable HTTP MCP server",
		long: `Speaks the MCP stdio transport on stdin and stdout and Streamable HTTP
to the MCP server at URL (default: the grant's protected_resource),
with the grant's token, fresh from the daemon, on every request: what a
stdio-only MCP client launches instead of mcp-remote. A 401 makes the
daemon refresh once; a 403 insufficient_scope waits (up to 5 minutes)
for a person to run "tokend authorize NAME" for the wider scopes.
Messages for people go to stderr. The session ends when stdin does.

` + clientFlagsNote,
		examples: []string{
			"tokend mcp notes",
			`claude mcp add notes -- tokend mcp notes`,
		},
	},
	{
		name: "proxy", group: "Client", args: argGrant,
		usage: "proxy NAME --listen ADDR [--upstream URL]",
		short: "serve a local reverse proxy to a grant's resource that adds its token",
		long: `Listens on ADDR (a loopback IP address with a port, or an absolute
unix socket path) and forwards every request to grant NAME's
protected_resource, or to --upstream URL, with the grant's token,
replacing any Authorization or DPoP header the caller sent (and a fresh
DPoP proof per request for a dpop grant). A request for / goes to the
resource's URL itself, /x to that URL followed by /x. When the resource
refuses the token, the daemon is asked for a new one and the request
sent once more (bodies up to 1 MiB); a 403 insufficient_scope is
reported as a step-up and passed on. While the daemon cannot be reached
(a restart), a request waits for it, up to 30 s, then gets a 503.

The daemon judges the user running the proxy. The proxy admits that
user alone, by the uid the kernel names for each connection (on loopback
TCP too): other local users are refused, root included.

` + clientFlagsNote,
		examples: []string{
			"tokend proxy notes --listen 127.0.0.1:8790",
			"tokend proxy notes --listen /run/user/1000/notes.sock --upstream https://mcp.example.com/v2/mcp",
		},
	},
	{
		name: "completion", group: "Other", args: argNone,
		words: []string{"bash", "zsh", "fish"},
		usage: "completion bash|zsh|fish",
		short: "print a shell completion script",
		long: `Prints a completion script for the shell: commands, flags, and the
names of the grants the caller may list on the socket.`,
		examples: []string{
			"source <(tokend completion bash)",
			"tokend completion zsh > \"${fpath[1]}/_tokend\"",
			"tokend completion fish > ~/.config/fish/completions/tokend.fish",
		},
	},
	{
		name: "version", group: "Other", args: argNone,
		usage: "version",
		short: "print the version",
		long: `Prints the version, the VCS revision the binary was built from (with
+dirty when the tree had changes) and the Go version.`,
	},
	{
		name: "help", group: "Other", args: argNone,
		usage:    "help [COMMAND]",
		short:    "print this help, or a command's",
		examples: []string{"tokend help token"},
	},
	{
		name:  "man",
		usage: "man",
		short: "write the man page tokend(1) to stdout",
	},
	{
		name:  "__complete",
		usage: "__complete WORDS...",
		short: "print completion candidates for the shell scripts",
	},
}

func init() {
	for _, d := range commandDocs {
		if d.name == "reload" {
			d.long = strings.TrimSpace(reloadHelp) + "\n\n" + clientFlagsNote
		}
		if d.name == "help" {
			d.words = visibleCommandNames()
		}
	}
}

// findDoc returns the documentation of a command, nil if there is none.
func findDoc(name string) *cmdDoc {
	for _, d := range commandDocs {
		if d.name == name {
			return d
		}
	}
	return nil
}

// visibleCommandNames are the first words of the commands the help lists.
func visibleCommandNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, d := range commandDocs {
		first, _, _ := strings.Cut(d.name, " ")
		if d.group == "" || seen[first] {
			continue
		}
		seen[first] = true
		names = append(names, first)
	}
	return names
}

// usageText is the global help: the commands by group, then the exit codes.
var usageText = func() string {
	var b strings.Builder
	b.WriteString("tokend keeps OAuth 2.0 tokens fresh and serves them over a unix socket.\n\nUsage:\n  tokend <command> [arguments]\n")
	for _, g := range []string{"Daemon", "Client", "Other"} {
		title := g + ":"
		if g == "Client" {
			title = "Client (talks to the daemon's socket):"
		}
		fmt.Fprintf(&b, "\n%s\n", title)
		for _, d := range commandDocs {
			if d.group != g {
				continue
			}
			short := wrap(d.short, strings.Repeat(" ", 31), 100)
			if len(d.usage) <= 28 {
				fmt.Fprintf(&b, "  %-28s %s\n", d.usage, strings.TrimLeft(short, " "))
			} else {
				fmt.Fprintf(&b, "  %s\n%s\n", d.usage, short)
			}
		}
		if g == "Client" {
			b.WriteString("\n  Client commands take --socket PATH (default $TOKEND_SOCKET, else\n  /run/tokend/tokend.sock) and --timeout DURATION. Flags may follow NAME.\n")
		}
	}
	b.WriteString("\nRun 'tokend help COMMAND' (or 'tokend COMMAND --help') for a command's\nflags and examples.\n")
	b.WriteString("\nExit codes:\n" + exitCodesText)
	return b.String()
}()

const exitCodesText = `  0  success
  1  error
  2  usage error
  3  reauthorization required: run "tokend authorize NAME" (HTTP 409)
  4  permission denied (HTTP 403, or the socket is not reachable for the caller)
  5  unknown grant (HTTP 404)
  6  reload: applied, except changes that need a restart (named)
`

// flagArg is the argument name a flag's help shows: the back-quoted word
// of its usage, else one derived from its type.
func flagArg(f *flag.Flag) (arg, usage string) {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		_, usage = flag.UnquoteUsage(f)
		return "", usage
	}
	arg, usage = flag.UnquoteUsage(f)
	switch {
	case strings.Contains(f.Usage, "`"):
		return arg, usage
	case arg == "duration":
		return "DURATION", usage
	case f.Name == "config" || strings.HasSuffix(f.Name, "-file"):
		return "FILE", usage
	case f.Name == "dir":
		return "DIR", usage
	}
	if arg == "string" {
		return strings.ToUpper(f.Name), usage
	}
	return strings.ToUpper(arg), usage
}

// flagDefault is the "(default ...)" a flag's help shows, "" for none.
func flagDefault(f *flag.Flag) string {
	switch f.DefValue {
	case "", "false", "0":
		return ""
	}
	if strings.Contains(f.Usage, "(default") {
		return ""
	}
	if f.Name == "timeout" || strings.HasSuffix(f.DefValue, "m0s") {
		return "(default " + strings.TrimSuffix(f.DefValue, "0s") + ")"
	}
	return "(default " + f.DefValue + ")"
}

// writeFlags lists fs's flags, each as --name ARG.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flagArg(f)
		left := "--" + f.Name
		if arg != "" {
			left += " " + arg
		}
		if d := flagDefault(f); d != "" {
			usage += " " + d
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.right)
	}
}

// writeCommandHelp writes a command's help: usage, description, flags and
// examples.
func writeCommandHelp(w io.Writer, d *cmdDoc, fs *flag.FlagSet) {
	fmt.Fprintf(w, "tokend %s: %s\n\nUsage:\n  tokend %s", d.name, d.short, d.usage)
	if fs != nil && fs.Lookup("socket") != nil {
		fmt.Fprint(w, " [--socket PATH] [--timeout DURATION]")
	}
	fmt.Fprintln(w)
	if d.long != "" {
		fmt.Fprintf(w, "\n%s\n", d.long)
	}
	if fs != nil {
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "\nFlags (-name and --name are the same):\n")
			writeFlags(w, fs)
		}
	}
	if len(d.examples) > 0 {
		fmt.Fprint(w, "\nExamples:\n")
		for _, e := range d.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	fmt.Fprint(w, "\nExit codes: see 'tokend help'.\n")
}

// commandFlags returns the FlagSet a command parses, by running it with
// --help and catching the FlagSet it made; nil for a command without
// flags.
func (c *cli) commandFlags(d *cmdDoc) *flag.FlagSet {
	switch d.name {
	case "help", "version", "man", "__complete", "completion":
		return nil
	}
	var got *flag.FlagSet
	probe := *c
	probe.stdout, probe.stderr = io.Discard, io.Discard
	probe.onFlagSet = func(fs *flag.FlagSet) { got = fs }
	args := append(strings.Fields(d.name), "--help")
	probe.dispatch(context.Background(), args)
	return got
}

// cmdHelp is `tokend help [COMMAND]`.
func (c *cli) cmdHelp(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stdout, usageText)
		return exitOK
	}
	name := strings.Join(args, " ")
	if name == "store" {
		name = "store copy"
	}
	d := findDoc(name)
	if d == nil {
		fmt.Fprintf(c.stderr, "tokend: help: unknown command %q\n", name)
		c.suggest(args[0])
		return exitUsage
	}
	writeCommandHelp(c.stdout, d, c.commandFlags(d))
	return exitOK
}

// suggest prints the commands closest to a mistyped one.
func (c *cli) suggest(typed string) {
	var close []string
	for _, name := range visibleCommandNames() {
		if editDistance(typed, name) <= max(1, len(name)/3) || (len(typed) >= 3 && strings.HasPrefix(name, typed)) {
			close = append(close, name)
		}
	}
	sort.Strings(close)
	if len(close) > 0 {
		fmt.Fprintf(c.stderr, "\nDid you mean this?\n")
		for _, n := range close {
			fmt.Fprintf(c.stderr, "\t%s\n", n)
		}
		fmt.Fprintln(c.stderr)
	}
}

// editDistance is the Damerau-Levenshtein (optimal string alignment)
// distance: a swap of two neighbours counts once, so "stauts" is one edit
// from "status".
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
