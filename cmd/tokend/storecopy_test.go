package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

// copySecrets are in the source store; no output may show them.
var copySecrets = []string{"at-secret-", "rt-secret-", "id-secret-", "client-secret-xyz", "reg-token-xyz", "verifier-xyz"}

// fillStore writes n grants (each with a history, grant g0 with more than
// HistoryLen attempts), a history without a token, two clients, a provider
// and a pending authorization.
func fillStore(t *testing.T, s *store.Store, n int) {
	t.Helper()
	base := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for i := range n {
		tok := store.Token{
			Grant: fmt.Sprintf("grant-%03d", i), AccessToken: fmt.Sprintf("at-secret-%d", i),
			RefreshToken: fmt.Sprintf("rt-secret-%d", i), IDToken: fmt.Sprintf("id-secret-%d", i),
			TokenType: "Bearer", Scope: "openid", Obtained: base, Expiry: base.Add(time.Hour),
			RefreshIssued: base, Generation: uint64(i), State: "valid", StateSince: base,
			LastSuccess: base, Auth: "authorized", AuthAt: base,
		}
		attempts := 1 + i%3
		if i == 0 {
			attempts = store.HistoryLen + 5
		}
		for j := range attempts {
			a := store.Attempt{At: base.Add(time.Duration(j) * time.Minute), Result: "success", Latency: time.Duration(j) * time.Millisecond, Reason: "due"}
			if err := s.PutToken(tok, &a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.ImportGrant("forgotten", nil, []store.Attempt{{At: base, Result: "invalid_grant", Error: "gone"}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.Client{
		{Name: "app", Provider: "op", ClientID: "app-id", ClientSecret: "client-secret-xyz", AuthMethod: "client_secret_basic"},
		{Name: "dyn", Provider: "op", ClientID: "dyn-id", RegistrationAccessToken: "reg-token-xyz", RegistrationClientURI: "https://op/reg/dyn", Registered: base},
	} {
		if err := s.PutClient(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutProvider("op", []byte(`{"issuer":"https://op.example"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(store.Pending{State: "state-xyz", Grant: "grant-000", Verifier: "verifier-xyz", Deadline: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// sameRecords fails the test unless a and b hold the same tokens,
// histories, clients and providers (pending authorizations are not
// copied).
func sameRecords(t *testing.T, a, b copyStore) {
	t.Helper()
	dump := func(s copyStore) map[string]any {
		m := map[string]any{}
		if err := s.EachToken(func(tok *store.Token) error { m["token "+tok.Grant] = *tok; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.EachHistory(func(g string, as []store.Attempt) error { m["history "+g] = as; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.EachClient(func(c *store.Client) error { m["client "+c.Name] = *c; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := s.EachProvider(func(n string, meta []byte) error { m["provider "+n] = string(meta); return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	da, db := dump(a), dump(b)
	if len(da) == 0 {
		t.Fatal("the source store is empty")
	}
	for k, v := range da {
		if !reflect.DeepEqual(v, db[k]) {
			t.Errorf("%s: copied %v, want %v", k, db[k], v)
		}
	}
	for k := range db {
		if _, ok := da[k]; !ok {
			t.Errorf("%s: in the copy only", k)
		}
	}
}

// copyConfig writes a configuration whose store key is key, with extra
// YAML under store:, and returns its path.
func copyConfig(t *testing.T, dir string, key []byte, storeExtra string) string {
	t.Helper()
	kf := filepath.Join(dir, "store.key")
	if err := os.WriteFile(kf, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	return writeConfig(t, dir, strings.Replace(goodConfig, "store:\n", "store:\n  key_file: "+kf+"\n"+storeExtra, 1))
}

func openCopy(t *testing.T, path string, key []byte) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Path: path, Key: key, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkNoSecrets(t *testing.T, tc *testCLI) {
	t.Helper()
	for _, sec := range copySecrets {
		if strings.Contains(tc.out.String()+tc.errOut.String(), sec) {
			t.Errorf("output shows a secret (%q...)", sec[:4])
		}
	}
}

func TestStoreCopyBbolt(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	key := bytes.Repeat([]byte{0x5a}, 32)
	cfg := copyConfig(t, dir, key, "")
	srcPath, dstPath := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	src := openCopy(t, srcPath, key)
	fillStore(t, src, 12)

	// The source open (a running daemon): refused, nothing created.
	tc := newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "bbolt:"+dstPath); code != exitError || !strings.Contains(tc.errOut.String(), "in use, probably by the running daemon") {
		t.Fatalf("source in use: exit %d, %s", code, tc.errOut.String())
	}
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(dstPath)

	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "bbolt:"+dstPath); code != exitOK {
		t.Fatalf("copy: exit %d, %s", code, tc.errOut.String())
	}
	for _, want := range []string{"tokens     12\n", "histories  13 (", "clients    2\n", "providers  1\n", "Not copied: 1 pending authorizations"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, tc.out.String())
		}
	}
	checkNoSecrets(t, tc)
	a, b := openCopy(t, srcPath, key), openCopy(t, dstPath, key)
	sameRecords(t, a, b)
	if c, _ := b.Count(); c.Pending != 0 {
		t.Errorf("pending authorizations copied: %d", c.Pending)
	}
	a.Close()
	b.Close()

	// A non-empty destination is refused without --force, and left alone;
	// --force overwrites what it copies and leaves the rest.
	other := filepath.Join(dir, "c.db")
	c := openCopy(t, other, key)
	if err := c.PutToken(store.Token{Grant: "grant-000", AccessToken: "other"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.PutToken(store.Token{Grant: "only-here", AccessToken: "mine"}, nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "bbolt:"+other); code != exitError || !strings.Contains(tc.errOut.String(), "is not empty (2 tokens") || !strings.Contains(tc.errOut.String(), "--force") {
		t.Fatalf("non-empty destination: exit %d, %s", code, tc.errOut.String())
	}
	c = openCopy(t, other, key)
	if tok, _ := c.Token("grant-000"); tok.AccessToken != "other" {
		t.Error("a refused copy changed the destination")
	}
	c.Close()
	tc = newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+srcPath, "--to", "bbolt:"+other, "--force"); code != exitOK {
		t.Fatalf("--force: exit %d, %s", code, tc.errOut.String())
	}
	a, c = openCopy(t, srcPath, key), openCopy(t, other, key)
	want, _ := a.Token("grant-000")
	if tok, _ := c.Token("grant-000"); !reflect.DeepEqual(tok, want) {
		t.Error("--force did not overwrite grant-000")
	}
	if tok, _ := c.Token("only-here"); tok.AccessToken != "mine" {
		t.Error("--force lost a record it did not copy")
	}
	a.Close()
	c.Close()
}

func TestStoreCopyUsage(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	cfg := copyConfig(t, dir, bytes.Repeat([]byte{1}, 32), "")
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"store"}, exitUsage, "usage: tokend store copy"},
		{[]string{"store", "move"}, exitUsage, "usage: tokend store copy"},
		{[]string{"store", "copy", "--config", cfg, "--to", "etcd"}, exitUsage, "--from: missing"},
		{[]string{"store", "copy", "--config", cfg, "--from", "mysql:x", "--to", "etcd"}, exitUsage, `"mysql:x": want bbolt:PATH or etcd`},
		{[]string{"store", "copy", "--config", cfg, "--from", "bbolt:", "--to", "etcd"}, exitUsage, "needs a file path"},
		{[]string{"store", "copy", "--config", cfg, "--from", "bbolt:" + dir + "/x.db", "--to", "bbolt:" + dir + "/../" + filepath.Base(dir) + "/x.db"}, exitUsage, "the same store"},
		{[]string{"store", "copy", "--config", cfg, "--from", "bbolt:" + dir + "/none.db", "--to", "bbolt:" + dir + "/b.db"}, exitError, "no such file"},
		{[]string{"store", "copy", "--config", cfg, "--from", "bbolt:" + dir + "/none.db", "--to", "etcd"}, exitError, ""},
		{[]string{"store", "copy", "--config", cfg, "--from", "etcd", "--to", "bbolt:" + dir + "/b.db"}, exitError, "store.etcd.endpoints"},
	} {
		tc := newTestCLI()
		if code := tc.run(tt.args...); code != tt.code || !strings.Contains(tc.errOut.String(), tt.msg) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tt.args, code, tc.errOut.String(), tt.code, tt.msg)
		}
	}
	// The wrong key names where the key comes from.
	src := openCopy(t, filepath.Join(dir, "k.db"), bytes.Repeat([]byte{2}, 32))
	fillStore(t, src, 1)
	src.Close()
	tc := newTestCLI()
	if code := tc.run("store", "copy", "--config", cfg, "--from", "bbolt:"+filepath.Join(dir, "k.db"), "--to", "bbolt:"+filepath.Join(dir, "k2.db")); code != exitError || !strings.Contains(tc.errOut.String(), "store.key_file") {
		t.Errorf("wrong key: exit %d, %s", code, tc.errOut.String())
	}
}
