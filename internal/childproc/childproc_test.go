package childproc

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEnvDropsWhatIsTokends(t *testing.T) {
	for _, k := range []string{"TOKEND_STORE_KEY", "LISTEN_FDS", "WATCHDOG_USEC", "NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY"} {
		t.Setenv(k, "x")
	}
	t.Setenv("CHILDPROC_KEPT", "yes")
	env := Env("TOKEND_GRANT=g")
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "TOKEND_STORE_KEY" || k == "LISTEN_FDS" || k == "WATCHDOG_USEC" || k == "NOTIFY_SOCKET" || k == "CREDENTIALS_DIRECTORY" {
			t.Errorf("Env kept %s", kv)
		}
	}
	if !slices.Contains(env, "CHILDPROC_KEPT=yes") {
		t.Error("Env dropped an ordinary variable")
	}
	if env[len(env)-1] != "TOKEND_GRANT=g" {
		t.Errorf("Env did not end with the extra variable: %q", env[len(env)-1])
	}
}

func TestTailKeepsLastBytes(t *testing.T) {
	tl := &Tail{n: 4}
	for _, s := range []string{"ab", "cdef", "g"} {
		if n, err := tl.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := string(tl.Bytes()); got != "defg" {
		t.Errorf("Bytes() = %q, want %q", got, "defg")
	}
}

func TestCommandKeepsStderrTail(t *testing.T) {
	cmd, stderr := Command(context.Background(), []string{"/bin/sh", "-c", "echo one >&2; echo two >&2; exit 3"}, Env(), 4, time.Second)
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("Run() = %v, want exit 3", err)
	}
	if got := string(stderr.Bytes()); got != "two\n" {
		t.Errorf("stderr tail = %q, want %q", got, "two\n")
	}
}

// TestCommandKillsGroup shows that when the context ends the command's
// whole process group is killed, a shell's background child too.
func TestCommandKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(context.Background())
	cmd, _ := Command(ctx, []string{"/bin/sh", "-c", "sleep 60 & echo $! > " + pidFile + "; wait"}, Env(), 64, time.Second)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, _ := os.ReadFile(pidFile)
		if s := strings.TrimSpace(string(b)); s != "" {
			var err error
			if pid, err = strconv.Atoi(s); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	_ = cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; {
		// The grandchild is not ours to reap: it is gone, or a zombie of init.
		if err := syscall.Kill(pid, 0); err != nil || isZombie(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell's child %d outlived the cancelled command", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
