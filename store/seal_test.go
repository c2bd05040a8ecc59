package store

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// secrets holds records with a distinctive value in every secret field.
type secrets struct {
	tok     Token
	client  Client
	pending Pending
	dpopD   string // the private part of tok.DPoPKey
}

func newSecrets(tag string) secrets {
	return secrets{
		dpopD: "DPK-" + tag + "-dpopkey",
		tok: Token{
			Grant: "reports", AccessToken: "AT-" + tag + "-access", RefreshToken: "RT-" + tag + "-refresh",
			IDToken: "IDT-" + tag + "-idtoken", TokenType: "DPoP",
			DPoPKey: `{"kty":"EC","crv":"P-256","d":"DPK-` + tag + `-dpopkey"}`,
		},
		client: Client{
			Name: "corp-app", ClientID: "tokend-prod", ClientSecret: "CS-" + tag + "-clientsecret",
			RegistrationAccessToken: "RAT-" + tag + "-registration",
		},
		pending: Pending{
			State: "ST-" + tag + "-state", Grant: "reports", Kind: "device_code",
			Verifier: "PV-" + tag + "-verifier", DeviceCode: "DC-" + tag + "-devicecode",
			Deadline: time.Now().Add(time.Hour),
		},
	}
}

func (sc secrets) values() []string {
	return []string{
		sc.tok.AccessToken, sc.tok.RefreshToken, sc.tok.IDToken, sc.dpopD,
		sc.client.ClientSecret, sc.client.RegistrationAccessToken,
		sc.pending.Verifier, sc.pending.DeviceCode,
	}
}

func (sc secrets) write(t *testing.T, s *Store) {
	t.Helper()
	if err := s.PutToken(sc.tok, &Attempt{Result: "success"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClient(sc.client); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(sc.pending); err != nil {
		t.Fatal(err)
	}
}

func (sc secrets) verify(t *testing.T, s *Store) {
	t.Helper()
	tok, err := s.Token(sc.tok.Grant)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != sc.tok.AccessToken || tok.RefreshToken != sc.tok.RefreshToken || tok.IDToken != sc.tok.IDToken || tok.DPoPKey != sc.tok.DPoPKey {
		t.Fatalf("token secrets differ after reopen")
	}
	c, err := s.Client(sc.client.Name)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret != sc.client.ClientSecret || c.RegistrationAccessToken != sc.client.RegistrationAccessToken {
		t.Fatalf("client secrets differ after reopen")
	}
	ps, err := s.PendingFor(sc.pending.Grant)
	if err != nil || len(ps) != 1 {
		t.Fatalf("PendingFor = %d, %v", len(ps), err)
	}
	if ps[0].Verifier != sc.pending.Verifier || ps[0].DeviceCode != sc.pending.DeviceCode {
		t.Fatalf("pending secrets differ after reopen")
	}
}

// TestSecretsAtRest greps the raw file for every secret. Without a key they
// are all there, which shows the grep can find them; with one, none is.
// The pending state is never stored, key or not.
func TestSecretsAtRest(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			var key []byte
			if sealed {
				key = newKey(t)
			}
			path := tempPath(t)
			s := MustOpen(t, Options{Path: path, Key: key})
			if s.Encrypted() != sealed {
				t.Fatalf("Encrypted = %v", s.Encrypted())
			}
			sc := newSecrets("x7Q")
			sc.write(t, s)
			s.Close()
			raw := mustRead(t, path)
			for _, v := range sc.values() {
				if found := bytes.Contains(raw, []byte(v)); found == sealed {
					t.Errorf("secret %q in file: %v, want %v", v, found, !sealed)
				}
			}
			if bytes.Contains(raw, []byte(sc.pending.State)) {
				t.Errorf("pending state is in the file")
			}
			sc.verify(t, MustOpen(t, Options{Path: path, Key: key}))
		})
	}
}

func TestKeyErrors(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	s := MustOpen(t, Options{Path: path, Key: key})
	newSecrets("k").write(t, s)
	s.Close()

	err := mustOpenErr(t, Options{Path: path, Key: newKey(t)}, ErrWrongKey)
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	err = mustOpenErr(t, Options{Path: path}, ErrKeyRequired)
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	if _, err := Open(Options{Path: path, Key: key[:16]}); err == nil {
		t.Fatal("16-byte key accepted")
	}

	plain := tempPath(t)
	s = MustOpen(t, Options{Path: plain})
	newSecrets("p").write(t, s)
	s.Close()
	err = mustOpenErr(t, Options{Path: plain, Key: key}, ErrNotEncrypted)
	if !strings.Contains(err.Error(), "tokend rekey") || !strings.Contains(err.Error(), plain) {
		t.Errorf("error %q does not say to run tokend rekey", err)
	}

	// An empty store given a key becomes sealed.
	empty := tempPath(t)
	MustOpen(t, Options{Path: empty}).Close()
	s = MustOpen(t, Options{Path: empty, Key: key})
	if !s.Encrypted() {
		t.Fatal("empty store not sealed")
	}
	s.Close()
	mustOpenErr(t, Options{Path: empty}, ErrKeyRequired)
}

// A sealed value copied into another record does not open there.
func TestSealedValueBoundToRecord(t *testing.T) {
	key := newKey(t)
	path := tempPath(t)
	s := MustOpen(t, Options{Path: path, Key: key})
	if err := s.PutToken(Token{Grant: "a", AccessToken: "secret-of-a"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(Token{Grant: "b", AccessToken: "secret-of-b"}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	writeBoltExisting(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketTokens))
		return b.Put([]byte("b"), bytes.Clone(b.Get([]byte("a"))))
	})
	s = MustOpen(t, Options{Path: path, Key: key})
	if tok, err := s.Token("a"); err != nil || tok.AccessToken != "secret-of-a" {
		t.Fatalf("Token(a) = %v", err)
	}
	_, err := s.Token("b")
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("Token(b) = %v, want ErrCorrupt naming b", err)
	}
	if strings.Contains(err.Error(), "secret-of") {
		t.Fatalf("error %q shows a secret", err)
	}
}

func writeBoltExisting(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestRekey(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	path := tempPath(t)
	sc := newSecrets("rk")

	// Unsealed to k1: what `tokend rekey` does to an unsealed file.
	s := MustOpen(t, Options{Path: path})
	sc.write(t, s)
	for i := range 30 {
		if err := s.PutToken(Token{Grant: fmt.Sprintf("g%02d", i), AccessToken: fmt.Sprintf("AT-many-%02d", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Rekey(k1); err != nil {
		t.Fatal(err)
	}
	if !s.Encrypted() {
		t.Fatal("not encrypted after Rekey")
	}
	sc.verify(t, s) // the open store keeps working, with the new key
	s.Close()
	mustOpenErr(t, Options{Path: path}, ErrKeyRequired)

	// k1 to k2.
	s = MustOpen(t, Options{Path: path, Key: k1})
	if err := s.Rekey(k2); err != nil {
		t.Fatal(err)
	}
	s.Close()
	mustOpenErr(t, Options{Path: path, Key: k1}, ErrWrongKey)
	s = MustOpen(t, Options{Path: path, Key: k2})
	sc.verify(t, s)
	toks, err := s.Tokens()
	if err != nil || len(toks) != 31 {
		t.Fatalf("Tokens = %d, %v", len(toks), err)
	}
	for _, tok := range toks[:30] {
		if want := "AT-many-" + tok.Grant[1:]; tok.AccessToken != want {
			t.Fatalf("%s: access token %q, want %q", tok.Grant, tok.AccessToken, want)
		}
	}
	if h, err := s.History(sc.tok.Grant); err != nil || len(h) != 1 {
		t.Fatalf("History = %d, %v", len(h), err)
	}

	// k2 to unsealed.
	if err := s.Rekey(nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	mustOpenErr(t, Options{Path: path, Key: k2}, ErrNotEncrypted)
	s = MustOpen(t, Options{Path: path})
	sc.verify(t, s)
	if err := s.Rekey(k1[:5]); err == nil {
		t.Fatal("Rekey with a 5-byte key succeeded")
	}
}
