package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
)

// The completion scripts hand the words typed so far to the hidden
// `tokend __complete` and offer what it prints, one candidate a line; an
// empty answer falls back to the shell's file completion. The knowledge
// stays in Go, with the commands' own FlagSets, as cobra does it.
const bashCompletion = `# bash completion for tokend; load with: source <(tokend completion bash)
_tokend() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local IFS=$'\n'
    local cands
    cands=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
    COMPREPLY=($(compgen -W "$cands" -- "$cur"))
}
complete -o default -F _tokend tokend
`

const zshCompletion = `#compdef tokend
# zsh completion for tokend; install with:
#   tokend completion zsh > "${fpath[1]}/_tokend"
_tokend() {
    local -a cands
    cands=("${(@f)$(${words[1]} __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    cands=(${cands:#})
    if (( ${#cands} )); then
        compadd -- "${cands[@]}"
    else
        _files
    fi
}
if [ "$funcstack[1]" = "_tokend" ]; then
    _tokend "$@"
else
    compdef _tokend tokend
fi
`

const fishCompletion = `# fish completion for tokend; install with:
#   tokend completion fish > ~/.config/fish/completions/tokend.fish
function __tokend_complete
    set -l words (commandline -opc) (commandline -ct)
    $words[1] __complete $words[2..-1] 2>/dev/null
end
complete -c tokend -a '(__tokend_complete)'
`

// cmdCompletion is `tokend completion bash|zsh|fish`.
func (c *cli) cmdCompletion(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(c.stderr, "tokend: completion: name the shell: bash, zsh or fish")
		return exitUsage
	}
	switch args[0] {
	case "bash":
		fmt.Fprint(c.stdout, bashCompletion)
	case "zsh":
		fmt.Fprint(c.stdout, zshCompletion)
	case "fish":
		fmt.Fprint(c.stdout, fishCompletion)
	default:
		fmt.Fprintf(c.stderr, "tokend: completion: unknown shell %q: bash, zsh or fish\n", args[0])
		return exitUsage
	}
	return exitOK
}

// completeTimeout bounds the grant listing a completion makes: a shell
// must not hang on a daemon that does not answer.
const completeTimeout = 2 * time.Second

// cmdComplete is the hidden `tokend __complete WORD...`: the words after
// "tokend", the last being the one under the cursor (maybe empty). It
// prints the candidates that start with it: commands, a command's flags,
// fixed words, or grant names listed on the socket (--socket as typed,
// else $TOKEND_SOCKET, else the default) when the caller may list them.
func (c *cli) cmdComplete(ctx context.Context, words []string) int {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	typed := words[:len(words)-1]
	for _, cand := range c.completions(ctx, typed, cur) {
		if strings.HasPrefix(cand, cur) {
			fmt.Fprintln(c.stdout, cand)
		}
	}
	return exitOK
}

func (c *cli) completions(ctx context.Context, typed []string, cur string) []string {
	if len(typed) == 0 {
		return visibleCommandNames()
	}
	name := typed[0]
	args := typed[1:]
	if name == "store" {
		if len(args) == 0 {
			return []string{"copy"}
		}
		name, args = "store copy", args[1:]
	}
	d := findDoc(name)
	if d == nil {
		return nil
	}
	fs := c.commandFlags(d)
	if strings.HasPrefix(cur, "-") {
		return flagNames(fs)
	}
	// The value of a flag: left to the shell (files), except none.
	pos, socket, afterDashes := positionals(fs, args)
	if pos == nil {
		return nil
	}
	if afterDashes {
		return nil // exec's command: the shell completes it
	}
	if len(d.words) > 0 {
		if len(pos) == 0 {
			return d.words
		}
		if d.name == "credential" {
			switch {
			case len(pos) == 1 && pos[0] == "git":
				return []string{"get", "store", "erase"}
			case len(pos) == 1 && pos[0] == "docker":
				return []string{"get", "list", "store", "erase"}
			case len(pos) == 1 && (pos[0] == "kubectl" || pos[0] == "headers"):
				return c.grantNames(ctx, socket)
			}
		}
		return nil
	}
	switch d.args {
	case argGrant:
		if len(pos) == 0 || d.name == "exec" {
			return c.grantNames(ctx, socket)
		}
	case argFile:
		return nil
	}
	return []string{}
}

// positionals walks the typed arguments of a command: the positional
// ones, the --socket given, and whether "--" was passed. pos is nil when
// the word under the cursor is a flag's value.
func positionals(fs *flag.FlagSet, args []string) (pos []string, socket string, afterDashes bool) {
	pos = []string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return pos, socket, true
		}
		if !strings.HasPrefix(a, "-") || a == "-" || fs == nil {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil || hasValue || isBoolFlag(f) {
			if name == "socket" {
				socket = value
			}
			continue
		}
		if i+1 == len(args) {
			return nil, socket, false // the cursor is on this flag's value
		}
		i++
		if name == "socket" {
			socket = args[i]
		}
	}
	return pos, socket, false
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func flagNames(fs *flag.FlagSet) []string {
	var names []string
	if fs != nil {
		fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	}
	return append(names, "--help")
}

// grantNames lists the grants the caller may read on the socket; nothing
// when the daemon cannot be reached or refuses.
func (c *cli) grantNames(ctx context.Context, socket string) []string {
	if socket == "" {
		socket = c.getenv("TOKEND_SOCKET")
	}
	if socket == "" {
		socket = config.DefaultSocketPath
	}
	ctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	list, err := api.NewClient(socket).List(ctx)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(list.Grants))
	for _, g := range list.Grants {
		names = append(names, g.Name)
	}
	sort.Strings(names)
	return names
}
