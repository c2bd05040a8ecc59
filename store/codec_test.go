package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCodec(t *testing.T) {
	key := bytes.Repeat([]byte{3}, KeySize)
	c, err := NewCodec(key)
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{Grant: "g", AccessToken: "secret-at", RefreshToken: "secret-rt", Expiry: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	v, err := c.EncodeToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(v), "secret-") {
		t.Fatalf("sealed record holds a secret: %s", v)
	}
	got, err := c.DecodeToken("g", v)
	if err != nil || got.AccessToken != "secret-at" || got.RefreshToken != "secret-rt" || !got.Expiry.Equal(tok.Expiry) {
		t.Fatalf("DecodeToken = %+v, %v", got, err)
	}
	if _, err := c.DecodeToken("other", v); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a record moved to another grant opened: %v", err)
	}
	// The bbolt file decodes what the codec encodes.
	s, err := newSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	if bt, err := decodeToken(s, []byte("g"), v); err != nil || bt.AccessToken != "secret-at" {
		t.Fatalf("bbolt decode = %+v, %v", bt, err)
	}

	check := c.Check()
	if err := c.VerifyCheck(check, "here"); err != nil {
		t.Fatal(err)
	}
	other, _ := NewCodec(bytes.Repeat([]byte{4}, KeySize))
	if err := other.VerifyCheck(check, "here"); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
	plain, _ := NewCodec(nil)
	if err := plain.VerifyCheck(check, "here"); !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("no key: %v", err)
	}
	if err := c.VerifyCheck(plain.Check(), "here"); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("key for an unsealed store: %v", err)
	}

	p := Pending{State: "st", Grant: "g", Verifier: "secret-v", Deadline: time.Now().Add(time.Hour)}
	pv, err := c.EncodePending(p)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := c.DecodePending(PendingKey("st"), pv)
	if err != nil || gp.Verifier != "secret-v" || gp.State != "" {
		t.Fatalf("DecodePending = %+v, %v", gp, err)
	}
	cl := Client{Name: "c", ClientSecret: "secret-cs"}
	cv, _ := c.EncodeClient(cl)
	if gc, err := c.DecodeClient("c", cv); err != nil || gc.ClientSecret != "secret-cs" || strings.Contains(string(cv), "secret-cs") {
		t.Fatalf("client round trip = %+v, %v (%s)", gc, err, cv)
	}
}

func TestCodecStartPage(t *testing.T) {
	p := StartPage{State: "secret-state", AuthURL: "https://op/auth?state=secret-state", Secure: true, Deadline: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for _, key := range [][]byte{bytes.Repeat([]byte{3}, KeySize), nil} {
		c, err := NewCodec(key)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.EncodeStart("h1", p)
		if err != nil {
			t.Fatal(err)
		}
		if c.Sealed() && strings.Contains(string(v), "secret-") {
			t.Fatalf("sealed start page holds a secret: %s", v)
		}
		if got, err := c.DecodeStart("h1", v); err != nil || got != p {
			t.Fatalf("DecodeStart = %+v, %v; want %+v", got, err, p)
		}
		if _, err := c.DecodeStart("h2", v); c.Sealed() && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("a start page moved to another hash opened: %v", err)
		}
		if _, err := c.DecodeStart("h1", []byte("{secret")); !errors.Is(err, ErrCorrupt) || strings.Contains(err.Error(), "secret") {
			t.Fatalf("DecodeStart of garbage = %v", err)
		}
	}
}
