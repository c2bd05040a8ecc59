package etcdtest_test

import (
	"context"
	"testing"
	"time"

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
