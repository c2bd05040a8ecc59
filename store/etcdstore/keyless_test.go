package etcdstore_test

// What a writer of the etcd prefix without the store key can do to the
// fleet's bookkeeping, performed through a raw etcd client.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// Junk written over a held grant's record: the owner's next write lands
// on the revision it observed instead of being fenced as if another
// instance had written a newer chain.
func TestUndecodableTokenRecordIsWrittenOver(t *testing.T) {
	o := newCluster(t, 1)
	a := o.open(t, "a")
	hold(t, a, "g")
	if err := a.PutToken(tok("g", "t1", 1), nil); err != nil {
		t.Fatal(err)
	}
	cli := o.client(t)
	if _, err := cli.Put(context.Background(), o.prefix+"tokens/g", "junk"); err != nil {
		t.Fatal(err)
	}
	if err := a.PutToken(tok("g", "t2", 2), nil); err != nil {
		t.Fatalf("PutToken over an undecodable record = %v, want it written", err)
	}
	if got, err := a.Token("g"); err != nil || got.AccessToken != "t2" {
		t.Fatalf("record after the write: %q, %v", got.AccessToken, err)
	}

	// Another instance's real record still wins.
	b := o.open(t, "b")
	if _, err := b.Token("g"); err != nil {
		t.Fatal(err)
	}
	if err := b.PutAuthorized(tok("g", "b3", 3), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.PutToken(tok("g", "t4", 4), nil); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("PutToken over another instance's record = %v, want ErrFenced", err)
	}
}

// Junk delivered by the watch is seen: the owner's next write goes
// through the first time (no write over a record it had not seen).
func TestWatchSeesUndecodableRecord(t *testing.T) {
	o := newCluster(t, 1)
	a := o.open(t, "a")
	hold(t, a, "g")
	if err := a.PutToken(tok("g", "t1", 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.EachToken(func(*store.Token) error { return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Watch(ctx, func(store.Token) {})
	if _, err := o.client(t).Put(context.Background(), o.prefix+"tokens/g", "junk"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the watch reports the bad record", func() bool { return a.BadRecords() == 1 })
	if err := a.PutToken(tok("g", "t2", 2), nil); err != nil {
		t.Fatal(err)
	}
	if n := a.BadRecords(); n != 1 {
		t.Fatalf("BadRecords = %d after the write, want 1: the write met a record the watch had delivered as unseen", n)
	}
}

// One bad record under tokens/ does not keep the others from loading; it
// is reported.
func TestLoadSkipsUndecodableRecord(t *testing.T) {
	o := newCluster(t, 1)
	a := o.open(t, "a")
	hold(t, a, "g1", "g2", "g3")
	for i, g := range []string{"g1", "g2", "g3"} {
		if err := a.PutToken(tok(g, "t-"+g, uint64(i+1)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.client(t).Put(context.Background(), o.prefix+"tokens/g2", "junk"); err != nil {
		t.Fatal(err)
	}
	b := o.open(t, "b")
	var loaded []string
	if err := b.EachToken(func(t *store.Token) error { loaded = append(loaded, t.Grant); return nil }); err != nil {
		t.Fatalf("EachToken with one bad record: %v", err)
	}
	if fmt.Sprint(loaded) != "[g1 g3]" || b.BadRecords() != 1 {
		t.Fatalf("loaded %v, bad records %d; want [g1 g3] and 1", loaded, b.BadRecords())
	}
}

// A record under pending/ or starts/ that is not a record does not stop
// the pruning of the expired ones.
func TestPruneSkipsUndecodableRecords(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	now := time.Now()
	if err := s.PutPending(store.Pending{State: "st", Grant: "g", Verifier: "v", Deadline: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStart("aa", store.StartPage{State: "st", AuthURL: "https://op.example/", Deadline: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	cli := o.client(t)
	for _, k := range []string{"pending/0000", "starts/0000"} {
		if _, err := cli.Put(context.Background(), o.prefix+k, "not json"); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PrunePending(now.Add(2 * time.Minute))
	if err != nil || n != 4 {
		t.Fatalf("PrunePending = %d, %v; want 4 (two expired, two that do not decode), nil", n, err)
	}
}

// Keys under instances/ without a lease are not instances: 30 of them do
// not shrink the real instances' shares, which take every grant between
// them at their first campaigns (none is left for the orphan rule).
func TestFakeInstanceKeysWithoutLease(t *testing.T) {
	o := newCluster(t, 1)
	var logs testutil.SyncBuffer
	logTo := func(opt *etcdstore.Options) { opt.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }
	a, b := o.open(t, "a", logTo), o.open(t, "b", logTo)
	cli := o.client(t)
	for i := range 30 {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("%sinstances/fake-%d", o.prefix, i), "{}"); err != nil {
			t.Fatal(err)
		}
	}
	fps := campaignAll(t, 8, a, b)
	held := func() map[string]int {
		h := map[string]int{}
		for g := range fps {
			switch {
			case a.Holds(g, 0):
				h["a"]++
			case b.Holds(g, 0):
				h["b"]++
			}
		}
		return h
	}
	// Each instance campaigns on its own view of the owners, which its
	// watch updates: on a loaded machine b's first campaign may not see
	// all of a's takes yet, and what they both left is taken at the next
	// periodic campaign (a quarter of the lease life), within the shares.
	// Had the fake keys counted, the shares would be one grant each and
	// the rest would wait for the orphan rule, which the log check below
	// catches.
	testutil.Eventually(t, ttl, 20*time.Millisecond, "the two instances hold every grant", func() error {
		if h := held(); h["a"]+h["b"] != len(fps) {
			return fmt.Errorf("they hold %v of %d grants", h, len(fps))
		}
		return nil
	})
	// Several campaign periods on (each a quarter of the lease life): the
	// grants stay held, spread, and never went ownerless.
	time.Sleep(2 * ttl)
	if h := held(); h["a"]+h["b"] != len(fps) || h["a"] == 0 || h["b"] == 0 {
		t.Fatalf("after %s the instances hold %v of %d grants\n%s", 2*ttl, h, len(fps), logs.String())
	}
	if strings.Contains(logs.String(), "nobody held") {
		t.Fatalf("grants went ownerless:\n%s", logs.String())
	}
}

// Instance keys an attacker keeps alive with leases of its own still
// count, but a grant they leave ownerless is taken by a real instance
// beyond its share.
func TestOwnerlessGrantsTakenBeyondShare(t *testing.T) {
	o := newCluster(t, 1)
	a, b := o.open(t, "a"), o.open(t, "b")
	cli := o.client(t)
	lr, err := cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("%sinstances/fake-%d", o.prefix, i), "{}", clientv3.WithLease(lr.ID)); err != nil {
			t.Fatal(err)
		}
	}
	fps := campaignAll(t, 8, a, b)
	waitFor(t, 10*ttl, "a and b hold every grant", func() bool {
		for g := range fps {
			if !a.Holds(g, 0) && !b.Holds(g, 0) {
				return false
			}
		}
		return true
	})
}

// An owner key or a lock key without a lease holds nothing: a real
// instance takes the grant, and the lock, over it.
func TestOwnerAndLockKeysWithoutLease(t *testing.T) {
	o := newCluster(t, 1)
	a := o.open(t, "a")
	cli := o.client(t)
	for _, k := range []string{"owners/g", "locks/register-app"} {
		if _, err := cli.Put(context.Background(), o.prefix+k, "fake"); err != nil {
			t.Fatal(err)
		}
	}
	hold(t, a, "g")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := a.Lock(ctx, "register-app")
	if err != nil {
		t.Fatalf("Lock over a key without a lease: %v", err)
	}
	unlock()
}

// Junk over a grant's history does not keep its token from being written:
// the history starts again from the attempt.
func TestUndecodableHistoryIsReplaced(t *testing.T) {
	o := newCluster(t, 1)
	a := o.open(t, "a")
	hold(t, a, "g")
	if _, err := o.client(t).Put(context.Background(), o.prefix+"history/g", "junk"); err != nil {
		t.Fatal(err)
	}
	if err := a.PutToken(tok("g", "t1", 1), &store.Attempt{At: time.Now(), Result: "success"}); err != nil {
		t.Fatalf("PutToken with a junk history: %v", err)
	}
	if h, err := a.History("g"); err != nil || len(h) != 1 {
		t.Fatalf("history after the write: %v, %v", h, err)
	}
}
