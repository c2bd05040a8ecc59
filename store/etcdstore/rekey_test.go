package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// Rekey re-seals every record with the new key: refused while an instance
// runs, resumable after a kill midway (instances cannot start meanwhile),
// and afterwards the store opens with the new key only.
func TestRekey(t *testing.T) {
	o := newCluster(t, 1)
	newKey := bytes.Repeat([]byte{9}, store.KeySize)
	opts := etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: o.prefix, Key: testKey, DialTimeout: 2 * time.Second}
	a := o.open(t, "a")
	grants := []string{"g1", "g2", "g3", "g4"}
	hold(t, a, grants...)
	for i, g := range grants {
		if err := a.PutToken(tok(g, "at-"+g, uint64(i+1)), &store.Attempt{At: time.Now(), Result: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.PutClient(store.Client{Name: "app", ClientID: "app", ClientSecret: "client-secret"}); err != nil {
		t.Fatal(err)
	}
	if err := a.PutProvider("op", []byte(`{"issuer":"https://op.example"}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.PutPending(store.Pending{State: "st", Grant: "g1", Verifier: "v", Deadline: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cli := o.client(t)
	if _, err := cli.Put(context.Background(), o.prefix+"tokens/junk", "junk"); err != nil {
		t.Fatal(err)
	}

	_, err := etcdstore.Rekey(context.Background(), opts, newKey)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "(a)") {
		t.Fatalf("Rekey with instance a running = %v, want refused naming a", err)
	}
	a.Close()

	// Killed after two records.
	etcdstore.StopRekeyAfter(2)
	_, err = etcdstore.Rekey(context.Background(), opts, newKey)
	etcdstore.StopRekeyAfter(0)
	if err == nil {
		t.Fatal("Rekey did not stop")
	}
	for _, k := range [][]byte{testKey, newKey} {
		if _, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: o.prefix, Key: k, Instance: "b", DialTimeout: 2 * time.Second}); !errors.Is(err, store.ErrLocked) && !errors.Is(err, store.ErrWrongKey) {
			t.Fatalf("Open during an unfinished rekey = %v, want refused", err)
		}
	}
	// Run again with another new key: refused.
	if _, err := etcdstore.Rekey(context.Background(), opts, bytes.Repeat([]byte{3}, store.KeySize)); err == nil || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("Rekey to a third key during an unfinished one = %v", err)
	}
	res, err := etcdstore.Rekey(context.Background(), opts, newKey)
	if err != nil {
		t.Fatalf("Rekey run again: %v", err)
	}
	t.Logf("second run: %+v", res)
	if res.Already < 2 || fmt.Sprint(res.Undecodable) != "[tokens/junk]" || res.Dropped != 1 {
		t.Fatalf("second run: %+v", res)
	}

	if _, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: o.prefix, Key: testKey, Instance: "b", DialTimeout: 2 * time.Second}); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("Open with the old key after the rekey = %v, want ErrWrongKey", err)
	}
	b := o.open(t, "b", func(opt *etcdstore.Options) { opt.Key = newKey })
	for _, g := range grants {
		if got, err := b.Token(g); err != nil || got.AccessToken != "at-"+g {
			t.Fatalf("token %s with the new key: %q, %v", g, got.AccessToken, err)
		}
		if h, err := b.History(g); err != nil || len(h) != 1 {
			t.Fatalf("history %s with the new key: %v, %v", g, h, err)
		}
	}
	if c, err := b.Client("app"); err != nil || c.ClientSecret != "client-secret" {
		t.Fatalf("client with the new key: %v", err)
	}
	if meta, err := b.Provider("op"); err != nil || !strings.Contains(string(meta), "op.example") {
		t.Fatalf("provider with the new key: %q, %v", meta, err)
	}
	hold(t, b, grants...) // the definitions are recorded again
	// Every record opens with the new key only.
	oldCodec, _ := store.NewCodec(testKey)
	resp, err := cli.Get(context.Background(), o.prefix+"clients/app")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(err)
	}
	if _, err := oldCodec.DecodeClient("app", resp.Kvs[0].Value); err == nil {
		t.Fatal("the client record still opens with the old key")
	}
	var reseal int
	err = b.EachToken(func(*store.Token) error { reseal++; return nil })
	if err != nil || reseal != len(grants) {
		t.Fatalf("EachToken with the new key: %d tokens, %v", reseal, err)
	}
}
