package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// container is systemd booted as PID 1 in systemd-nspawn on an overlay of
// the host's / (see the package doc).
type container struct {
	t     *testing.T
	root  string // the overlay's merged directory: the container's /
	pid1  int    // the container's systemd, as the host sees it
	nsp   *exec.Cmd
	log   *bytes.Buffer // nspawn's console
	ended chan struct{}
}

// requireTools fails (never skips: CI must run this) when the test cannot
// boot a container here.
func requireTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test boots a container: it needs root")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/test-deps (it installs systemd-container)", tool)
		}
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Fatalf("no systemd to boot in the container: %v", err)
	}
}

// bootContainer mounts a tmpfs, an overlay (lower /, upper on the tmpfs),
// and boots it; prepare runs on the merged root before the boot.
func bootContainer(t *testing.T, ctx context.Context, prepare func(root string)) *container {
	t.Helper()
	base, err := os.MkdirTemp("", "tokend-nspawn-")
	if err != nil {
		t.Fatal(err)
	}
	c := &container{t: t, log: &bytes.Buffer{}, ended: make(chan struct{})}
	t.Cleanup(func() { c.down(base) })
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "mode=0700,size=2g"); err != nil {
		t.Fatalf("mounting the tmpfs: %v", err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.root = filepath.Join(base, "root")
	opts := fmt.Sprintf("lowerdir=/,upperdir=%s,workdir=%s", filepath.Join(base, "upper"), filepath.Join(base, "work"))
	if err := unix.Mount("overlay", c.root, "overlay", 0, opts); err != nil {
		t.Fatalf("mounting the overlay (%s): %v", opts, err)
	}
	// timers.target masked: no apt-daily and the like at boot.
	if err := os.Symlink("/dev/null", filepath.Join(c.root, "etc/systemd/system/timers.target")); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(c.root)
	}

	name := fmt.Sprintf("tokend-e2e-%d", os.Getpid())
	c.nsp = exec.Command("systemd-nspawn", "--quiet", "-D", c.root, "-M", name, "-b",
		"--register=no", "--keep-unit", "--private-network", "--console=read-only",
		"--", "systemd.unit=basic.target")
	c.nsp.Stdout, c.nsp.Stderr = c.log, c.log
	// Its own process group: a Ctrl-C of go test reaches it through the
	// cleanup, not twice.
	c.nsp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.nsp.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { _ = c.nsp.Wait(); close(c.ended) }()
	t.Cleanup(func() {
		os.RemoveAll(filepath.Join("/run/systemd/nspawn/propagate", name))
	})

	// The container's PID 1 is the systemd process among nspawn's
	// descendants.
	deadline := time.Now().Add(30 * time.Second)
	for c.pid1 == 0 {
		select {
		case <-c.ended:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", c.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no systemd under systemd-nspawn after 30 s:\n%s", c.log)
		}
		c.pid1 = findSystemd(c.nsp.Process.Pid)
		if c.pid1 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	// is-system-running --wait returns once the boot is over ("degraded":
	// some unit of the host's failed in here, fine for this test); until
	// systemd listens on its private socket it fails at once.
	var state string
	for time.Now().Before(deadline.Add(60 * time.Second)) {
		out, _ := c.runCtx(ctx, 60*time.Second, "systemctl", "is-system-running", "--wait")
		if state = strings.TrimSpace(out); state == "running" || state == "degraded" {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the container did not boot: %q\n%s", state, c.log)
	return nil
}

// findSystemd returns the pid of the first process named systemd below
// pid, or 0.
func findSystemd(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			for _, s := range strings.Fields(string(b)) {
				child, err := strconv.Atoi(s)
				if err != nil {
					continue
				}
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
				if strings.TrimSpace(string(comm)) == "systemd" {
					return child
				}
				queue = append(queue, child)
			}
		}
	}
	return 0
}

// down kills the container and unmounts what bootContainer mounted; it
// runs even when the test failed half-way.
func (c *container) down(base string) {
	if c.pid1 != 0 {
		// SIGKILL to a PID namespace's init kills every process in it.
		_ = syscall.Kill(c.pid1, syscall.SIGKILL)
	}
	if c.nsp != nil && c.nsp.Process != nil {
		select {
		case <-c.ended:
		case <-time.After(10 * time.Second):
			_ = c.nsp.Process.Kill()
			<-c.ended
		}
	}
	if c.root != "" {
		if err := unix.Unmount(c.root, 0); err != nil {
			c.t.Logf("unmounting the overlay: %v; detaching it", err)
			_ = unix.Unmount(c.root, unix.MNT_DETACH)
		}
	}
	if err := unix.Unmount(base, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		c.t.Logf("unmounting the tmpfs: %v; detaching it", err)
		_ = unix.Unmount(base, unix.MNT_DETACH)
	}
	os.Remove(base)
}

// runCtx runs a command inside the container and returns its combined
// output.
func (c *container) runCtx(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.pid1), "-a", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run runs a command inside as root, bounded to two minutes.
func (c *container) run(args ...string) (string, error) {
	return c.runCtx(context.Background(), 2*time.Minute, args...)
}

// must runs a command inside and fails the test if it fails.
func (c *container) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// as runs a command inside as user (systemd-run --wait --pipe): its
// stdout, its stderr and its exit status (-1 when it did not run).
func (c *container) as(user string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.pid1), "-a", "--",
		"systemd-run", "--wait", "--pipe", "--quiet", "-p", "User=" + user, "--"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return o.String(), e.String(), 0
	case errors.As(err, &ee):
		return o.String(), e.String(), ee.ExitCode()
	}
	return o.String(), e.String() + err.Error(), -1
}

// show returns the unit's properties, as systemctl show prints them.
func (c *container) show(unit string, props ...string) map[string]string {
	c.t.Helper()
	out := c.must("systemctl", "show", unit, "-p", strings.Join(props, ","))
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m
}

// write writes a file inside the container (through the overlay).
func (c *container) write(path, data string, mode os.FileMode) {
	c.t.Helper()
	full := filepath.Join(c.root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(data), mode); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Chmod(full, mode); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor polls cond every 200 ms until it holds or limit passes. The
// limit only keeps a broken run from hanging; nothing is asserted about
// how fast.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
