package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
)

// cmdExec is `tokend exec NAME[=VAR] ... -- CMD ARGS...`: it fetches each
// grant's token and then replaces itself with CMD (execve, no shell), each
// token in an environment variable. Being CMD rather than its parent, it
// has no signals to forward and no exit status to relay: CMD receives
// every signal sent to the process, and its exit status is the process's.
func (c *cli) cmdExec(ctx context.Context, args []string) int {
	fs := c.flagSet("exec", "exec NAME[=VAR] ... [--socket PATH] [--timeout DURATION] -- CMD [ARGS...]")
	cf := c.addClientFlags(fs)
	i := slices.Index(args, "--")
	if i < 0 {
		if _, code, ok := c.parseArgs(fs, args); !ok {
			return code
		}
		return c.usageErr(fs, "exec: give the command after --")
	}
	pos, code, ok := c.parseArgs(fs, args[:i])
	if !ok {
		return code
	}
	command := args[i+1:]
	if len(pos) == 0 {
		return c.usageErr(fs, "exec: name at least one grant")
	}
	if len(command) == 0 {
		return c.usageErr(fs, "exec: give the command after --")
	}
	type binding struct{ grant, variable string }
	var binds []binding
	for _, p := range pos {
		name, variable, explicit := strings.Cut(p, "=")
		if name == "" {
			return c.usageErr(fs, "exec: empty grant name in %q", p)
		}
		if !explicit {
			variable = execVarName(name)
		}
		if !validEnvName(variable) {
			return c.usageErr(fs, "exec: %q is not an environment variable name (letters, digits and _, not starting with a digit)", variable)
		}
		binds = append(binds, binding{name, variable})
	}
	path, err := exec.LookPath(command[0])
	if err != nil {
		c.printErr(lookPathError(command[0], err))
		return 127
	}

	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	env := os.Environ()
	for _, b := range binds {
		tok, err := cl.RawToken(ctx, b.grant)
		if err != nil {
			return c.failGrant(b.grant, err)
		}
		if !isBearerToken(tok) {
			c.printErr(fmt.Errorf("tokend: the token of %s has characters outside RFC 6750's token syntax (a malformed provider answer); not passing it on", text(b.grant)))
			return exitError
		}
		env = setEnv(env, b.variable, tok)
	}
	cancel()
	err = syscall.Exec(path, command, env)
	c.printErr(fmt.Errorf("tokend: exec %s: %w", text(command[0]), err))
	return 126
}

// lookPathError words exec.LookPath's failure once: its *exec.Error
// starts with "exec:" itself, and its stat error repeats the path.
func lookPathError(name string, err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("tokend: exec: cannot run %s: %w", text(name), err)
}

// execVarName is the default variable of a grant: TOKEND_<NAME>_TOKEN,
// upper-cased, every character that is not a letter or digit as _.
func execVarName(grant string) string {
	var b strings.Builder
	b.WriteString("TOKEND_")
	for _, r := range strings.ToUpper(grant) {
		if ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString("_TOKEN")
	return b.String()
}

func validEnvName(s string) bool {
	if s == "" || ('0' <= s[0] && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9')) {
			return false
		}
	}
	return true
}

// setEnv returns env with k set to v, replacing every earlier k.
func setEnv(env []string, k, v string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, k+"=") {
			out = append(out, kv)
		}
	}
	return append(out, k+"="+v)
}
