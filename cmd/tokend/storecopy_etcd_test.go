package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/store/etcdstore"
)

// TestStoreCopyEtcdRoundTrip: bbolt -> etcd -> bbolt on a three-member
// embedded cluster keeps every token, history, client and provider, sealed
// with the store key on both sides; a non-empty etcd prefix is refused
// without --force.
func TestStoreCopyEtcdRoundTrip(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	c := etcdtest.New(t, etcdtest.Options{Members: 3, NoFsync: true})
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x6b}, 32)
	eps := "[" + strings.Join(c.Endpoints(), ", ") + "]"
	cfg := copyConfig(t, dir, key, fmt.Sprintf("  backend: etcd\n  etcd: {endpoints: %s, prefix: /copy-test/}\n", eps))
	srcPath, backPath := filepath.Join(dir, "src.db"), filepath.Join(dir, "back.db")
	src := openCopy(t, srcPath, key)
	fillStore(t, src, 40)
	src.Close()

	tc := newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "etcd"); code != exitOK {
		t.Fatalf("bbolt -> etcd: exit %d, %s", code, tc.errOut.String())
	}
	if !strings.Contains(tc.out.String(), "tokens     40\n") || !strings.Contains(tc.out.String(), "to etcd (") {
		t.Errorf("output:\n%s", tc.out.String())
	}
	checkNoSecrets(t, tc)

	// What etcd holds is sealed: no secret in any value.
	es, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: c.Endpoints(), Prefix: "/copy-test/", Key: key, Instance: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a := openCopy(t, srcPath, key)
	sameRecords(t, a, es)
	a.Close()
	es.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.Get(context.Background(), "/copy-test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, sec := range copySecrets {
			if bytes.Contains(kv.Value, []byte(sec)) {
				t.Errorf("etcd key %s holds a plaintext secret", kv.Key)
			}
		}
	}

	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "etcd"); code != exitError || !strings.Contains(tc.errOut.String(), "is not empty (40 tokens") {
		t.Fatalf("non-empty etcd: exit %d, %s", code, tc.errOut.String())
	}

	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "etcd", "--to", "bbolt:"+backPath); code != exitOK {
		t.Fatalf("etcd -> bbolt: exit %d, %s", code, tc.errOut.String())
	}
	checkNoSecrets(t, tc)
	a, b := openCopy(t, srcPath, key), openCopy(t, backPath, key)
	sameRecords(t, a, b)
	a.Close()
	b.Close()

	// The wrong key is refused by etcd's sealed check.
	cfg2 := copyConfig(t, t.TempDir(), bytes.Repeat([]byte{1}, 32), fmt.Sprintf("  backend: etcd\n  etcd: {endpoints: %s, prefix: /copy-test/}\n", eps))
	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg2, "--from", "etcd", "--to", "bbolt:"+filepath.Join(dir, "x.db")); code != exitError || !strings.Contains(tc.errOut.String(), "another key") {
		t.Errorf("wrong key: exit %d, %s", code, tc.errOut.String())
	}
}

// A copy into the etcd store of a running fleet: --force is refused while
// an instance is live (it would roll the fleet's tokens back unfenced);
// --into-live-fleet imports only the grants whose record there is older.
func TestStoreCopyIntoLiveFleet(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x6b}, 32)
	cfg := copyConfig(t, dir, key, fmt.Sprintf("  backend: etcd\n  etcd: {endpoints: [%s], prefix: /live/}\n", c.Endpoints()[0]))
	srcPath := filepath.Join(dir, "src.db")
	src := openCopy(t, srcPath, key)
	fillStore(t, src, 4)
	src.Close()
	tc := newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "etcd"); code != exitOK {
		t.Fatalf("first copy: exit %d, %s", code, tc.errOut.String())
	}

	// An instance runs and writes a newer token of grant-001; the source
	// has a newer one of grant-002.
	inst, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: c.Endpoints(), Prefix: "/live/", Key: key, Instance: "host-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	fleetTok, err := inst.Token("grant-001")
	if err != nil {
		t.Fatal(err)
	}
	fleetTok.AccessToken, fleetTok.Generation = "at-fleet", 10
	if err := inst.PutAuthorized(fleetTok, nil); err != nil {
		t.Fatal(err)
	}
	src = openCopy(t, srcPath, key)
	newer, err := src.Token("grant-002")
	if err != nil {
		t.Fatal(err)
	}
	newer.AccessToken, newer.Generation = "at-newer", 50
	if err := src.PutToken(newer, nil); err != nil {
		t.Fatal(err)
	}
	src.Close()

	tc = newTestCLI()
	code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "etcd", "--force")
	if code != exitError || !strings.Contains(tc.errOut.String(), "running fleet (instances host-a)") {
		t.Fatalf("--force into a live fleet: exit %d, %s", code, tc.errOut.String())
	}
	if got, err := inst.Token("grant-001"); err != nil || got.AccessToken != "at-fleet" {
		t.Fatalf("after the refused copy grant-001 is %q, %v", got.AccessToken, err)
	}

	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "etcd", "--into-live-fleet"); code != exitOK {
		t.Fatalf("--into-live-fleet: exit %d, %s", code, tc.errOut.String())
	}
	if !strings.Contains(tc.out.String(), "1 imported, 3 kept") {
		t.Errorf("output:\n%s", tc.out.String())
	}
	checkNoSecrets(t, tc)
	if got, err := inst.Token("grant-001"); err != nil || got.AccessToken != "at-fleet" {
		t.Fatalf("grant-001 after the live import is %q, %v; want the fleet's", got.AccessToken, err)
	}
	if got, err := inst.Token("grant-002"); err != nil || got.AccessToken != "at-newer" {
		t.Fatalf("grant-002 after the live import is %q, %v; want the source's newer one", got.AccessToken, err)
	}
}
