package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The attacks of this file write the bbolt file directly, as someone who
// can write it but has no store key.

// plant writes v under bucket/key of the closed store file at path.
func plant(t *testing.T, path, bucket, key string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucket)).Put([]byte(key), v)
	}); err != nil {
		t.Fatal(err)
	}
}

func rawValue(t *testing.T, path, bucket, key string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	db.View(func(tx *bolt.Tx) error {
		v = append([]byte(nil), tx.Bucket([]byte(bucket)).Get([]byte(key))...)
		return nil
	})
	return v
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: got %v, want ErrCorrupt", what, err)
	}
	if strings.Contains(err.Error(), "attacker") {
		t.Fatalf("%s: the error echoes the record: %v", what, err)
	}
}

func mustSealer(t *testing.T, key []byte) *sealer {
	t.Helper()
	sl, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return sl
}

func TestRecordsAuthenticatedWhole(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	s := MustOpen(t, Options{Path: path, Key: key})
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutToken(Token{Grant: "g", AccessToken: "secret-at", RefreshToken: "secret-rt", Generation: 3, Expiry: now.Add(time.Hour)}, &Attempt{At: now, Result: "success"}))
	must(s.PutClient(Client{Name: "c", Provider: "op", ClientID: "legit", ClientSecret: "secret-cs", RedirectURI: "http://127.0.0.1/cb"}))
	must(s.PutProvider("op", []byte(`{"issuer":"https://op.example","token_endpoint":"https://op.example/token"}`)))
	s.Close()
	for _, r := range [][2]string{{bucketTokens, "g"}, {bucketClients, "c"}, {bucketProviders, "op"}} {
		if v := rawValue(t, path, r[0], r[1]); !strings.HasPrefix(string(v), recordMagic) {
			t.Fatalf("%s/%s is not sealed whole", r[0], r[1])
		}
	}

	expired, _ := json.Marshal(map[string]any{"access_token": "attacker-at", "expiry": "2099-01-01T00:00:00Z", "generation": 99})
	plant(t, path, bucketTokens, "g", expired)
	swapped, _ := json.Marshal(map[string]any{"provider": "op", "client_id": "attacker", "redirect_uri": "https://attacker.example/cb", "registration_client_uri": "https://attacker.example/r"})
	plant(t, path, bucketClients, "c", swapped)
	plant(t, path, bucketProviders, "op", []byte(`{"issuer":"https://op.example","token_endpoint":"http://127.0.0.1:1/attacker"}`))
	forged, _ := json.Marshal(map[string]any{"grant": "web", "kind": "authorization_code", "binding_hash": "b", "deadline": "2099-01-01T00:00:00Z"})
	plant(t, path, bucketPending, PendingKey("attacker-state"), forged)

	good, _ := encodeToken(mustSealer(t, key), Token{Grant: "h", AccessToken: "secret-h", Generation: 1})
	plant(t, path, bucketTokens, "h", good)

	s = MustOpen(t, Options{Path: path, Key: key})
	_, err := s.Token("g")
	wantCorrupt(t, "token record written without the key", err)
	// The other records still load.
	if toks, err := s.Tokens(); err != nil || len(toks) != 1 || toks[0].AccessToken != "secret-h" {
		t.Fatalf("Tokens with one bad record = %d, %v", len(toks), err)
	}
	_, err = s.Client("c")
	wantCorrupt(t, "client record written without the key", err)
	_, err = s.Provider("op")
	wantCorrupt(t, "provider metadata written without the key", err)
	_, err = s.ConsumePending("attacker-state", "b", now)
	wantCorrupt(t, "pending authorization written without the key", err)
}

func TestPendingWithoutVerifierRefused(t *testing.T) {
	// Without a key nothing is authenticated, but tokend never writes an
	// authorization-code flow without a PKCE verifier: one is refused.
	s := MustOpen(t, Options{})
	now := time.Now()
	if err := s.PutPending(Pending{State: "st", Grant: "web", Kind: KindAuthorizationCode, BindingHash: "b", Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.ConsumePending("st", "b", now)
	wantCorrupt(t, "an authorization-code flow without a verifier", err)
	if err := s.PutPending(Pending{State: "dev", Grant: "tv", Kind: "device_code", DeviceCode: "secret-dc", BindingHash: "b", Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumePending("dev", "b", now); err != nil {
		t.Fatalf("a device flow (no verifier): %v", err)
	}
}

func TestJunkPendingPruned(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	s := MustOpen(t, Options{Path: path, Key: key})
	now := time.Now()
	if err := s.PutPending(Pending{State: "old", Grant: "g", Kind: KindAuthorizationCode, Verifier: "v", Deadline: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(Pending{State: "live", Grant: "g", Kind: KindAuthorizationCode, Verifier: "v", Deadline: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	plant(t, path, bucketPending, "junk", []byte("not json"))
	s = MustOpen(t, Options{Path: path, Key: key})
	n, err := s.PrunePending(now)
	if err != nil || n != 2 {
		t.Fatalf("PrunePending = %d, %v; want 2 (the expired one and the junk)", n, err)
	}
	if ps, err := s.PendingFor("g"); err != nil || len(ps) != 1 {
		t.Fatalf("PendingFor = %d, %v", len(ps), err)
	}
	if n, err := s.DeletePending("g"); err != nil || n != 1 {
		t.Fatalf("DeletePending = %d, %v", n, err)
	}
}

// legacyTokenRecord is a token record of schema 1.
func legacyTokenRecord(t *testing.T, sl *sealer, tok Token) []byte {
	k := []byte(tok.Grant)
	r := tokenRecordOf(tok, "", time.Time{})
	r.AccessToken = sl.seal(tok.AccessToken, bucketTokens, k, "access_token")
	r.RefreshToken = sl.seal(tok.RefreshToken, bucketTokens, k, "refresh_token")
	v, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrationToRecordsSealedWhole(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	sl, _ := newSealer(key)
	s, err := open(Options{Path: path, Key: key}, migrations[:1])
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	plant(t, path, bucketTokens, "g", legacyTokenRecord(t, sl, Token{Grant: "g", AccessToken: "secret-at", RefreshToken: "secret-rt", Generation: 7}))
	cr := clientRecord{Provider: "op", ClientID: "id", RedirectURI: "http://127.0.0.1/cb", ClientSecret: sl.seal("secret-cs", bucketClients, []byte("c"), "client_secret")}
	cv, _ := json.Marshal(cr)
	plant(t, path, bucketClients, "c", cv)
	plant(t, path, bucketProviders, "op", []byte(`{"issuer":"https://op.example"}`))
	plant(t, path, bucketPending, PendingKey("st"), []byte(`{"grant":"g","kind":"authorization_code","deadline":"2099-01-01T00:00:00Z"}`))
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		hb, _ := tx.Bucket([]byte(bucketHistory)).CreateBucket([]byte("g"))
		return hb.Put(binary.BigEndian.AppendUint64(nil, 1), []byte(`{"at":"2026-01-01T00:00:00Z","result":"success"}`))
	})
	db.Close()

	s = MustOpen(t, Options{Path: path, Key: key})
	tok, err := s.Token("g")
	if err != nil || tok.AccessToken != "secret-at" || tok.RefreshToken != "secret-rt" || tok.Generation != 7 {
		t.Fatalf("migrated token: %+v, %v", tok, err)
	}
	if c, err := s.Client("c"); err != nil || c.ClientSecret != "secret-cs" || c.ClientID != "id" {
		t.Fatalf("migrated client: %+v, %v", c, err)
	}
	if m, err := s.Provider("op"); err != nil || string(m) != `{"issuer":"https://op.example"}` {
		t.Fatalf("migrated provider: %s, %v", m, err)
	}
	if h, err := s.History("g"); err != nil || len(h) != 1 || h[0].Result != "success" {
		t.Fatalf("migrated history: %+v, %v", h, err)
	}
	if ps, err := s.PendingFor("g"); err != nil || len(ps) != 0 {
		t.Fatalf("pending authorizations survived the migration: %d, %v", len(ps), err)
	}
	s.Close()
	if v := readSchema(t, path); v != RecordSchema {
		t.Fatalf("schema %d after the migration, want %d", v, RecordSchema)
	}
	MustCheck(t, path)

	// After it the old format is refused.
	plant(t, path, bucketTokens, "h", legacyTokenRecord(t, sl, Token{Grant: "h", AccessToken: "secret-h"}))
	s = MustOpen(t, Options{Path: path, Key: key})
	_, err = s.Token("h")
	wantCorrupt(t, "a record of the old format planted after the migration", err)
	s.Close()

	// And the schema cannot be set back to have it migrated again.
	plant(t, path, bucketMeta, string(keySchema), binary.BigEndian.AppendUint64(nil, 1))
	mustOpenErr(t, Options{Path: path, Key: key}, ErrWrongKey)
}
