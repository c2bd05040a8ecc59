package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LoggedTokend is a tokend serve whose output is appended to a log file,
// so that a test killing and restarting it keeps one log of every run.
type LoggedTokend struct {
	*Proc
	log *os.File
}

// ServeTokendLogged starts `bin serve --config cfgPath`, its stdout and
// stderr appended to logPath after a line "=== start TIME", and waits
// until ready returns nil (polled every 10 ms: another process's
// start-up), 20 s at most. If tokend exits first or is not ready in time
// the test fails with the log's last 40 lines.
func ServeTokendLogged(t testing.TB, bin, cfgPath, logPath string, ready func() error) *LoggedTokend {
	t.Helper()
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(lf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = lf, lf
	t.Cleanup(func() { lf.Close() })
	p := &LoggedTokend{Proc: StartProc(t, cmd), log: lf}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.Done():
			t.Fatalf("tokend exited during start-up: %v\n%s", p.Err(), TailFile(logPath, 40))
		default:
		}
		err := ready()
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend's socket did not answer within 20 s: %v\n%s", err, TailFile(logPath, 40))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill9 sends SIGKILL, waits for the exit and closes the log; it returns
// how the process ended (cmd.Wait's error).
func (p *LoggedTokend) Kill9(t testing.TB) error {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	p.log.Close()
	return p.Err()
}

// TailFile returns the last n lines of the file at path, or why it cannot
// be read: what a failing test shows of a process's log.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
