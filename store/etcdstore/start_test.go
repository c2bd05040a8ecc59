package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// A start page put by one instance is taken once across two: of racers on
// both exactly one gets it, intact; the others are told it is unknown.
func TestStartPageOnceAcrossInstances(t *testing.T) {
	o := newCluster(t, 1)
	a, b := o.open(t, "a"), o.open(t, "b")
	now := time.Now()
	for round := range 5 {
		hash := fmt.Sprintf("%064x", round+1)
		want := store.StartPage{State: fmt.Sprint("secret-state-", round), AuthURL: "https://op.example/auth?state=secret-url", Secure: true, Deadline: now.Add(10 * time.Minute).UTC()}
		if err := a.PutStart(hash, want); err != nil {
			t.Fatal(err)
		}
		won := racersWon(a, b, func(st *etcdstore.Store) bool {
			got, err := st.TakeStart(hash, now)
			switch {
			case err == nil:
				if got != want {
					t.Errorf("took %+v, want %+v", got, want)
				}
				return true
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("TakeStart: %v", err)
			}
			return false
		})
		if won != 1 {
			t.Fatalf("round %d: %d takers across two instances won, want 1", round, won)
		}
	}
	if _, err := b.TakeStart(fmt.Sprintf("%064x", 99), now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TakeStart of an unknown page = %v, want ErrNotFound", err)
	}
}

// The state and the provider's URL are sealed in etcd; a page past its
// deadline is refused (and gone), and PrunePending deletes those that
// expired without being taken.
func TestStartPageSealedExpiredPruned(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	now := time.Now()
	p := store.StartPage{State: "secret-state", AuthURL: "https://op.example/auth?code_challenge=secret-challenge", Deadline: now.Add(time.Minute)}
	for i, h := range []string{"aa", "bb", "cc"} {
		q := p
		if i == 2 {
			q.Deadline = now.Add(time.Hour)
		}
		if err := s.PutStart(h, q); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := o.client(t).Get(context.Background(), o.prefix+"starts/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 3 {
		t.Fatalf("%d start records in etcd, want 3", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		for _, secret := range []string{"secret-state", "secret-challenge", "op.example"} {
			if bytes.Contains(kv.Value, []byte(secret)) {
				t.Fatalf("%s holds %q in plain text", kv.Key, secret)
			}
		}
	}
	later := now.Add(2 * time.Minute)
	if _, err := s.TakeStart("aa", later); !errors.Is(err, store.ErrExpired) {
		t.Fatalf("TakeStart after the deadline = %v, want ErrExpired", err)
	}
	if _, err := s.TakeStart("aa", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TakeStart of an expired page taken once = %v, want ErrNotFound", err)
	}
	n, err := s.PrunePending(later)
	if err != nil || n != 1 {
		t.Fatalf("PrunePending = %d, %v; want 1 (bb), nil", n, err)
	}
	if _, err := s.TakeStart("bb", now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TakeStart of a pruned page = %v, want ErrNotFound", err)
	}
	if got, err := s.TakeStart("cc", later); err != nil || got.State != "secret-state" {
		t.Fatalf("TakeStart of the live page = %+v, %v", got, err)
	}
	// A record moved under another hash does not open.
	if err := s.PutStart("dd", p); err != nil {
		t.Fatal(err)
	}
	cli := o.client(t)
	g, err := cli.Get(context.Background(), o.prefix+"starts/dd")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), o.prefix+"starts/ee", string(g.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeStart("ee", now); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("TakeStart of a record moved to another hash = %v, want ErrCorrupt", err)
	}
}
