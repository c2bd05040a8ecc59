package testutil

import (
	"errors"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Proc is a process a test started: it dies with the test binary and is
// killed, if still running, when the test ends.
type Proc struct {
	// Cmd is the started command.
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartProc starts cmd (its output set by the caller), failing the test
// if it cannot start.
func StartProc(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.Kill)
	return p
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (cmd.Wait's error); nil while it runs.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Running says whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends sig (after SIGCONT: a stopped process cannot exit) and waits
// up to 15 s for the exit, then kills the process.
func (p *Proc) Stop(sig syscall.Signal) {
	if !p.Running() {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGCONT)
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.Kill()
	}
}

// Kill is kill -9; it waits for the exit.
func (p *Proc) Kill() {
	if p.Running() {
		p.Cmd.Process.Kill()
	}
	<-p.done
}

// WaitTokend waits up to 30 s until the tokend serve that p runs answers
// GET /v1/tokens with 200 through c (a UnixHTTPClient of its socket),
// failing the test if p exits first; what names it in the failure.
func WaitTokend(t testing.TB, p *Proc, c *http.Client, what string) {
	t.Helper()
	Eventually(t, 30*time.Second, 50*time.Millisecond, what+" serving its socket", func() error {
		if !p.Running() {
			t.Fatalf("%s exited while starting (%v)", what, p.Err())
		}
		resp, err := c.Get("http://tokend/v1/tokens")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}
