package etcdtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokend/tokend/internal/etcdtest"
)

func client(t *testing.T, eps []string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(cli *clientv3.Client, k string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, k, "v")
	return err
}

// TestQuorum: a member down is invisible; two of three down refuse writes
// (in bounded time); both back, writes go through again.
func TestQuorum(t *testing.T) {
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true})
	cli := client(t, c.Endpoints())
	if err := put(cli, "a"); err != nil {
		t.Fatal(err)
	}
	c.Stop(2)
	if err := put(cli, "b"); err != nil {
		t.Fatalf("one member of three down: %v", err)
	}
	c.Stop(1)
	if err := put(cli, "c"); err == nil {
		t.Fatal("a write succeeded without quorum")
	}
	r1, r2 := c.RestartAsync(1), c.RestartAsync(2)
	if err := <-r1; err != nil {
		t.Fatal(err)
	}
	if err := <-r2; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := put(cli, "d")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write after quorum returned: %v", err)
		}
	}
}

func TestSingleMember(t *testing.T) {
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	if err := put(client(t, c.Endpoints()), "a"); err != nil {
		t.Fatal(err)
	}
}

// TestMemberProcesses runs a three-member cluster as three etcdmember
// processes, as the end-to-end tests do.
func TestMemberProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the etcdmember command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "etcdmember")
	if out, err := exec.Command("go", "build", "-o", bin, "./etcdmember").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ms, err := etcdtest.Plan(3, dir)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	ready := make(chan error, len(ms))
	for _, m := range ms {
		m.NoFsync = true
		eps = append(eps, m.ClientURL)
		cmd := exec.Command(bin, m.Args(filepath.Join(dir, m.Name+".log"))...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		go func() {
			line, err := bufio.NewReader(out).ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("etcdmember said %q", line)
			}
			ready <- err
		}()
	}
	for range ms {
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
	}
	if err := put(client(t, eps), "a"); err != nil {
		t.Fatal(err)
	}
}

// TestIsolate: a member cut off from its peers answers its clients "no
// leader" (when they require one) while the others keep a quorum; healed,
// it has the writes made meanwhile.
func TestIsolate(t *testing.T) {
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true, Relayed: true})
	eps := c.Endpoints()
	all, lone := client(t, eps), client(t, eps[:1])
	if err := put(all, "a"); err != nil {
		t.Fatal(err)
	}
	c.Isolate(0)
	leader := func() (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := lone.Status(ctx, eps[0])
		if err != nil {
			return 0, err
		}
		return st.Leader, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := leader()
		if err == nil && l == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("isolated member: leader %x (%v), want none", l, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A request that requires a leader fails at once (the client retries
	// it on this one endpoint until its deadline).
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), time.Second)
	_, err := lone.Put(ctx, "x", "v")
	cancel()
	if !errors.Is(err, rpctypes.ErrNoLeader) {
		t.Fatalf("isolated member, a write requiring a leader: %v, want no leader", err)
	}
	// Its clients still reach it: a serializable read without the leader
	// requirement is answered.
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := lone.Get(ctx, "a", clientv3.WithSerializable()); err != nil {
		t.Fatalf("isolated member does not answer: %v", err)
	}
	others := client(t, eps[1:])
	if err := put(others, "b"); err != nil {
		t.Fatalf("the two others: %v", err)
	}
	c.Heal(0)
	deadline = time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), 2*time.Second)
		r, err := lone.Get(ctx, "b", clientv3.WithSerializable())
		cancel()
		if err == nil && len(r.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healed member: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
