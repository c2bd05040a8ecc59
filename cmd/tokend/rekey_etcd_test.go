package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// With store.backend: etcd, rekey re-seals the etcd store (refused while
// an instance runs) and never touches the bbolt file at store.path.
func TestRekeyEtcdBackend(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	c := etcdtest.New(t, etcdtest.Options{Members: 1, NoFsync: true})
	dir := t.TempDir()
	keyA, keyB := bytes.Repeat([]byte{0x6b}, 32), bytes.Repeat([]byte{0x2c}, 32)
	cfg := copyConfig(t, dir, keyA, fmt.Sprintf("  backend: etcd\n  etcd: {endpoints: [%s], prefix: /rekey/}\n", c.Endpoints()[0]))
	newKey := filepath.Join(dir, "b.key")
	if err := os.WriteFile(newKey, []byte(hex.EncodeToString(keyB)), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(key []byte) (*etcdstore.Store, error) {
		return etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: c.Endpoints(), Prefix: "/rekey/", Key: key, Instance: "host-a", DialTimeout: 2 * time.Second})
	}
	inst, err := open(keyA)
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.PutAuthorized(store.Token{Grant: "g", AccessToken: "at-secret", RefreshToken: "rt-secret", State: "valid", Generation: 1}, nil); err != nil {
		t.Fatal(err)
	}

	tc := newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--new-key-file", newKey); code != exitError || !strings.Contains(tc.errOut.String(), "running instances (host-a)") {
		t.Fatalf("rekey with an instance running: exit %d, %s%s", code, tc.out.String(), tc.errOut.String())
	}
	inst.Close()

	tc = newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--new-key-file", newKey); code != exitOK {
		t.Fatalf("rekey: exit %d, %s", code, tc.errOut.String())
	}
	if !strings.Contains(tc.out.String(), "Re-sealed the records in etcd") || !strings.Contains(tc.out.String(), "key_file: "+newKey) {
		t.Errorf("output:\n%s", tc.out.String())
	}
	checkNoSecrets(t, tc)
	if _, err := os.Stat(filepath.Join(dir, "tokend.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rekey of an etcd configuration touched the bbolt file at store.path: %v", err)
	}
	if _, err := open(keyA); !errors.Is(err, store.ErrWrongKey) {
		t.Fatalf("open with the old key after rekey = %v, want ErrWrongKey", err)
	}
	s, err := open(keyB)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.Token("g"); err != nil || got.RefreshToken != "rt-secret" {
		t.Fatalf("token with the new key: %v", err)
	}
}

// With the bbolt backend and no file at store.path, rekey says so instead
// of creating an empty store and reporting success.
func TestRekeyMissingBboltFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	cfg := copyConfig(t, dir, bytes.Repeat([]byte{0x6b}, 32), "")
	newKey := filepath.Join(dir, "b.key")
	if err := os.WriteFile(newKey, []byte(hex.EncodeToString(bytes.Repeat([]byte{0x2c}, 32))), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := newTestCLI()
	if code := tc.run("rekey", "--config", cfg, "--new-key-file", newKey); code != exitError || !strings.Contains(tc.errOut.String(), "no store file at") {
		t.Fatalf("rekey without a store file: exit %d, %s%s", code, tc.out.String(), tc.errOut.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "tokend.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("rekey created the store file: %v", err)
	}
}
