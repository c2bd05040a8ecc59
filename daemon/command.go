package daemon

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// childCommand is a command tokend runs for a hook or a sink: argv, no
// shell, in a process group of its own that is killed whole when ctx ends
// (a shell's children too), with the environment childEnv gives and the
// last tail bytes of its stderr kept.
func childCommand(ctx context.Context, argv []string, env []string, tail int, waitDelay time.Duration) (*exec.Cmd, *tailBuffer) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	stderr := &tailBuffer{n: tail}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	return cmd, stderr
}

// childEnv is tokend's environment less what is tokend's alone — systemd's
// notify, activation and watchdog variables, the credentials directory
// (the store key is there), and every TOKEND_* variable — plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "TOKEND_"), strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, "WATCHDOG_"),
			k == "NOTIFY_SOCKET", k == "CREDENTIALS_DIRECTORY":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	n int
	b []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.n {
		t.b = t.b[len(t.b)-t.n:]
	}
	return len(p), nil
}

// Bytes returns what is kept.
func (t *tailBuffer) Bytes() []byte { return t.b }
