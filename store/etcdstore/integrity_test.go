package etcdstore_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// The attacks of this file are made through a raw etcd client, as someone
// who may write the prefix but has no store key.

func rawPut(t *testing.T, cli *clientv3.Client, key, v string) {
	t.Helper()
	if _, err := cli.Put(context.Background(), key, v); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, cli *clientv3.Client, key string) []byte {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0].Value
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("%s: got %v, want a refusal (store.ErrCorrupt)", what, err)
	}
	if strings.Contains(err.Error(), "attacker") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("%s: the error echoes the record: %v", what, err)
	}
}

func TestForgedPendingRefused(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	cli := o.client(t)
	now := time.Now()
	binding := strings.Repeat("b", 64)

	// A keyless writer plants its own authorization for grant web: its
	// cookie's hash, no PKCE verifier.
	forged, _ := json.Marshal(map[string]any{"grant": "web", "kind": "authorization_code", "redirect_uri": "http://127.0.0.1/cb",
		"created": now, "deadline": now.Add(time.Hour), "binding_hash": binding})
	rawPut(t, cli, o.prefix+"pending/"+store.PendingKey("attacker-state"), string(forged))
	_, err := s.ConsumePending("attacker-state", binding, now)
	refused(t, "forged pending without a verifier", err)

	// With a verifier of its choosing it is still not sealed with the key.
	forged, _ = json.Marshal(map[string]any{"grant": "web", "kind": "authorization_code", "verifier": "attacker-verifier",
		"created": now, "deadline": now.Add(time.Hour), "binding_hash": binding})
	rawPut(t, cli, o.prefix+"pending/"+store.PendingKey("attacker-state2"), string(forged))
	_, err = s.ConsumePending("attacker-state2", binding, now)
	refused(t, "forged pending with a verifier", err)

	// A legitimate pending authorization moved to another key, or to
	// another grant, is refused too.
	if err := s.PutPending(store.Pending{State: "legit", Grant: "web", Kind: "authorization_code", Verifier: "secret-v", StartHash: "start", Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindPending("legit", "start", binding, now); err != nil {
		t.Fatal(err)
	}
	legit := rawGet(t, cli, o.prefix+"pending/"+store.PendingKey("legit"))
	rawPut(t, cli, o.prefix+"pending/"+store.PendingKey("attacker-state3"), string(legit))
	_, err = s.ConsumePending("attacker-state3", binding, now)
	refused(t, "a pending authorization moved to another state", err)
	regranted, _ := json.Marshal(map[string]any{"grant": "admin", "kind": "authorization_code", "verifier": "x",
		"created": now, "deadline": now.Add(time.Hour), "binding_hash": binding})
	rawPut(t, cli, o.prefix+"pending/"+store.PendingKey("legit"), string(regranted))
	_, err = s.ConsumePending("legit", binding, now)
	refused(t, "a pending authorization rewritten to another grant", err)
}

func TestTamperedRecordsRefused(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	cli := o.client(t)

	// Tokens: an older value with its expiry rewritten.
	if err := s.PutAuthorized(tok("g", "secret-old", 1), nil); err != nil {
		t.Fatal(err)
	}
	old := rawGet(t, cli, o.prefix+"tokens/g")
	if strings.Contains(string(old), "secret-old") || strings.Contains(string(old), `"generation"`) {
		t.Fatal("the token record is not sealed whole")
	}
	plain, _ := json.Marshal(map[string]any{"access_token": "attacker-at", "refresh_token": "attacker-rt", "expiry": "2099-01-01T00:00:00Z", "generation": 99, "state": "valid"})
	rawPut(t, cli, o.prefix+"tokens/g", string(plain))
	_, err := s.Token("g")
	refused(t, "a token record written without the key", err)
	if len(old) > 40 {
		flipped := []byte(string(old))
		flipped[len(flipped)-20] ^= 1
		rawPut(t, cli, o.prefix+"tokens/g", string(flipped))
		_, err = s.Token("g")
		refused(t, "a token record altered", err)
	}
	if err := s.PutAuthorized(tok("h", "secret-h", 1), nil); err != nil {
		t.Fatal(err)
	}
	rawPut(t, cli, o.prefix+"tokens/h", string(old))
	_, err = s.Token("h")
	refused(t, "another grant's token record", err)

	// Clients: client_id, redirect_uri or registration_client_uri swapped.
	if err := s.PutClient(store.Client{Name: "c", Provider: "op", ClientID: "legit-id", ClientSecret: "secret-cs", RedirectURI: "http://127.0.0.1:8765/callback"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClient(store.Client{Name: "d", Provider: "op", ClientID: "other-id", RedirectURI: "https://attacker.example/cb"}); err != nil {
		t.Fatal(err)
	}
	swapped, _ := json.Marshal(map[string]any{"provider": "op", "client_id": "attacker-id", "auth_method": "none", "redirect_uri": "https://attacker.example/cb",
		"registration_client_uri": "https://attacker.example/reg"})
	rawPut(t, cli, o.prefix+"clients/c", string(swapped))
	_, err = s.Client("c")
	refused(t, "a client record written without the key", err)
	rawPut(t, cli, o.prefix+"clients/c", string(rawGet(t, cli, o.prefix+"clients/d")))
	_, err = s.Client("c")
	refused(t, "another client's record", err)

	// Provider metadata pointing the token endpoint elsewhere.
	if err := s.PutProvider("op", []byte(`{"issuer":"https://op.example","token_endpoint":"https://op.example/token"}`)); err != nil {
		t.Fatal(err)
	}
	if v := rawGet(t, cli, o.prefix+"providers/op"); strings.Contains(string(v), "op.example") {
		t.Fatal("cached provider metadata is not sealed")
	}
	rawPut(t, cli, o.prefix+"providers/op", `{"issuer":"https://op.example","token_endpoint":"http://127.0.0.1:1/attacker"}`)
	_, err = s.Provider("op")
	refused(t, "provider metadata written without the key", err)

	// History: an attempt planted.
	rawPut(t, cli, o.prefix+"history/h", `[{"at":"2030-01-01T00:00:00Z","result":"success","error":"attacker"}]`)
	_, err = s.History("h")
	refused(t, "a history written without the key", err)

	// Start pages.
	rawPut(t, cli, o.prefix+"starts/"+strings.Repeat("a", 64), `{"state":"attacker-state","auth_url":"https://attacker.example/","deadline":"2099-01-01T00:00:00Z"}`)
	_, err = s.TakeStart(strings.Repeat("a", 64), time.Now())
	refused(t, "a start page written without the key", err)
}

func TestRewrittenDefinitionNoConflict(t *testing.T) {
	o := newCluster(t, 1)
	a, b := o.open(t, "a"), o.open(t, "b")
	// ya and yb are markers: each instance is in conflict on one of
	// them until the attacker's deletes reach it through the watch,
	// after (in revision order) its rewrite of defs/g.
	if err := b.SetGrants(context.Background(), map[string]string{"g": "fp", "yb": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetGrants(context.Background(), map[string]string{"g": "fp", "yb": "a", "ya": "a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetGrants(context.Background(), map[string]string{"g": "fp", "yb": "b", "ya": "b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "someone holds g", func() bool { return a.Holds("g", 0) || b.Holds("g", 0) })
	cli := o.client(t)
	rawPut(t, cli, o.prefix+"defs/g", `{"fingerprint":"attacker","by":"a"}`)
	for _, k := range []string{"defs/ya", "defs/yb"} {
		if _, err := cli.Delete(context.Background(), o.prefix+k); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "both watches applied the rewrite", func() bool {
		return a.GrantInfo("yb").Conflict == "" && b.GrantInfo("ya").Conflict == ""
	})
	for _, s := range []*etcdstore.Store{a, b} {
		if c := s.GrantInfo("g").Conflict; c != "" {
			t.Fatalf("%s: a definition written without the key puts the grant in conflict: %s", s.Instance(), c)
		}
	}
	if !a.Holds("g", 0) && !b.Holds("g", 0) {
		t.Fatal("nobody holds the grant any more")
	}
	// The next SetGrants writes a definition over it.
	if err := a.SetGrants(context.Background(), map[string]string{"g": "fp"}); err != nil {
		t.Fatal(err)
	}
	if v := rawGet(t, cli, o.prefix+"defs/g"); strings.Contains(string(v), "attacker") {
		t.Fatal("the planted definition was not written over")
	}
}

func TestJunkPendingDoesNotStopPruning(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	cli := o.client(t)
	now := time.Now()
	if err := s.PutPending(store.Pending{State: "old", Grant: "g", Kind: "authorization_code", Verifier: "v", Deadline: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(store.Pending{State: "live", Grant: "g", Kind: "authorization_code", Verifier: "v", Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rawPut(t, cli, o.prefix+"pending/"+store.PendingKey("junk"), "not json at all")
	rawPut(t, cli, o.prefix+"starts/junk", "{")
	n, err := s.PrunePending(now)
	if err != nil {
		t.Fatalf("PrunePending with junk records: %v", err)
	}
	if n != 3 {
		t.Fatalf("pruned %d, want 3 (the expired one and both junk records)", n)
	}
	if _, err := s.ConsumePending("live", "", now); !errors.Is(err, store.ErrMismatch) {
		t.Fatalf("the live pending authorization: %v", err)
	}
}

// sealField seals v as schema 1 sealed a secret field.
func sealField(t *testing.T, key []byte, bucket, record, field, v string) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	ad := bucket + "\x00" + record + "\x00" + field
	return base64.RawStdEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(v), []byte(ad)))
}

// legacyToken is a token record of schema 1: a clear header, then JSON
// with the secret fields alone sealed.
func legacyToken(t *testing.T, grant, at string, gen uint64) string {
	rec, _ := json.Marshal(map[string]any{
		"access_token":  sealField(t, testKey, "tokens", grant, "access_token", at),
		"refresh_token": sealField(t, testKey, "tokens", grant, "refresh_token", "rt-"+at),
		"token_type":    "Bearer", "generation": gen, "state": "valid",
		"expiry": "2030-01-01T00:00:00Z",
	})
	return "tokend-token-v1\nold-instance\n2026-01-01T00:00:00Z\n" + string(rec)
}

func TestMigrationFromFieldSealed(t *testing.T) {
	o := newCluster(t, 1)
	cli := o.client(t)
	p := o.prefix
	meta, _ := json.Marshal(map[string]any{"format": "tokend-store", "schema": 1, "created": "2026-01-01T00:00:00Z",
		"check": sealField(t, testKey, "meta", "check", "check", "tokend store key check v1")})
	rawPut(t, cli, p+"meta", string(meta))
	rawPut(t, cli, p+"tokens/g", legacyToken(t, "g", "secret-g", 4))
	client, _ := json.Marshal(map[string]any{"provider": "op", "client_id": "id-1", "redirect_uri": "http://127.0.0.1/cb",
		"client_secret": sealField(t, testKey, "clients", "c", "client_secret", "secret-cs")})
	rawPut(t, cli, p+"clients/c", string(client))
	rawPut(t, cli, p+"providers/op", `{"issuer":"https://op.example","token_endpoint":"https://op.example/token"}`)
	rawPut(t, cli, p+"history/g", `[{"at":"2026-01-01T00:00:00Z","result":"success"}]`)
	rawPut(t, cli, p+"defs/g", `{"fingerprint":"fp","by":"old-instance"}`)
	rawPut(t, cli, p+"pending/"+store.PendingKey("st"), `{"grant":"g","kind":"authorization_code","deadline":"2099-01-01T00:00:00Z"}`)
	rawPut(t, cli, p+"starts/x", `{"state":"s","auth_url":"u","deadline":"2099-01-01T00:00:00Z"}`)

	s := o.open(t, "a")
	got, err := s.Token("g")
	if err != nil || got.AccessToken != "secret-g" || got.RefreshToken != "rt-secret-g" || got.Generation != 4 {
		t.Fatalf("migrated token: %+v, %v", got, err)
	}
	c, err := s.Client("c")
	if err != nil || c.ClientID != "id-1" || c.ClientSecret != "secret-cs" {
		t.Fatalf("migrated client: %+v, %v", c, err)
	}
	if m, err := s.Provider("op"); err != nil || !strings.Contains(string(m), "op.example/token") {
		t.Fatalf("migrated provider: %s, %v", m, err)
	}
	if h, err := s.History("g"); err != nil || len(h) != 1 {
		t.Fatalf("migrated history: %+v, %v", h, err)
	}
	for _, k := range []string{"pending/" + store.PendingKey("st"), "starts/x"} {
		if v := rawGet(t, cli, p+k); v != nil {
			t.Fatalf("%s survived the migration", k)
		}
	}
	for _, k := range []string{"tokens/g", "clients/c", "providers/op", "history/g", "defs/g"} {
		if v := rawGet(t, cli, p+k); !strings.HasPrefix(string(v), "tokend-aead-1:") {
			t.Fatalf("%s is not sealed whole after the migration", k)
		}
	}
	if err := s.SetGrants(context.Background(), map[string]string{"g": "fp"}); err != nil {
		t.Fatal(err)
	}
	if c := s.GrantInfo("g").Conflict; c != "" {
		t.Fatalf("the migrated definition conflicts: %s", c)
	}

	// After the migration the old format is refused: planted by a
	// keyless writer, a record of schema 1 does not load.
	rawPut(t, cli, p+"tokens/h", legacyToken(t, "h", "secret-h", 1))
	_, err = s.Token("h")
	refused(t, "a record of the old format planted after the migration", err)
	s.Close()

	// Setting the meta record back to schema 1, to have the old format
	// migrated again, is refused at Open.
	rawPut(t, cli, p+"meta", string(meta))
	_, err = etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: p, Key: testKey, Instance: "b", LeaseTTL: ttl})
	refused(t, "a meta record set back to schema 1", err)
	// So is a meta record deleted and planted again.
	if _, err := cli.Delete(context.Background(), p+"meta"); err != nil {
		t.Fatal(err)
	}
	rawPut(t, cli, p+"meta", string(meta))
	_, err = etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: p, Key: testKey, Instance: "b", LeaseTTL: ttl})
	refused(t, "a meta record planted again at schema 1", err)
}
