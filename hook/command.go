package hook

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/internal/childproc"
	"github.com/tokend/tokend/oauth"
)

// commandEnv is tokend's environment without what belongs to tokend alone
// (systemd's sockets and credentials, TOKEND_* settings), and the event.
func commandEnv(e *Event) []string {
	env := childproc.Env()
	add := func(k, v string) { env = append(env, "TOKEND_EVENT_"+k+"="+v) }
	add("ID", e.ID)
	add("NAME", e.Event)
	add("GRANT", e.Grant)
	add("STATE", e.State)
	add("ERROR", e.Error)
	add("ERROR_CODE", e.ErrorCode)
	add("TIME", e.Time.Format(time.RFC3339Nano))
	exp := ""
	if !e.ExpiresAt.IsZero() {
		exp = e.ExpiresAt.Format(time.RFC3339)
	}
	add("EXPIRES_AT", exp)
	add("GENERATION", strconv.FormatUint(e.Generation, 10))
	return env
}

func (r *runner) runCommand(e *Event) (string, error) {
	ctx, cancel := context.WithTimeout(r.s.ctx, r.cfg.Timeout)
	defer cancel()
	cmd, stderr := childproc.Command(ctx, r.cfg.Command, commandEnv(e), stderrTail, time.Second)
	err := cmd.Run()
	switch {
	case err == nil:
		return "success", nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout", fmt.Errorf("killed after %s", r.cfg.Timeout)
	}
	if tail := strings.TrimSpace(oauth.Printable(string(stderr.Bytes()))); tail != "" {
		err = fmt.Errorf("%w; stderr: %s", err, tail)
	}
	return "failure", err
}
