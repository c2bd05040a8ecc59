// Package childproc starts the commands tokend runs for hooks and sinks:
// argv with no shell, in a process group of its own that is killed whole
// when its context ends, with tokend's environment less what is tokend's
// alone, and the last bytes of its stderr kept.
package childproc

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Command returns the command argv to run with env: no shell, in a process
// group of its own that is killed whole (a shell's children too) when ctx
// ends, waiting at most waitDelay for its output after that, and with the
// last tail bytes of its stderr kept in the returned [Tail].
func Command(ctx context.Context, argv []string, env []string, tail int, waitDelay time.Duration) (*exec.Cmd, *Tail) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	stderr := &Tail{n: tail}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	return cmd, stderr
}

// Env is tokend's environment less what is tokend's alone — systemd's
// notify, activation and watchdog variables, the credentials directory
// (the store key is there), and every TOKEND_* variable — plus extra.
func Env(extra ...string) []string {
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

// Tail keeps the last n bytes written to it.
type Tail struct {
	n int
	b []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.n {
		t.b = t.b[len(t.b)-t.n:]
	}
	return len(p), nil
}

// Bytes returns what is kept.
func (t *Tail) Bytes() []byte { return t.b }
