package store

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestExportImportRoundTrip(t *testing.T) {
	key := newKey(t)
	src := MustOpen(t, Options{Key: key, NoSync: true})
	if empty, err := src.Empty(); err != nil || !empty {
		t.Fatalf("new store: Empty = %t, %v; want true", empty, err)
	}
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		tok := Token{
			Grant: fmt.Sprintf("g%d", i), AccessToken: fmt.Sprintf("at-%d", i), RefreshToken: fmt.Sprintf("rt-%d", i),
			Expiry: base.Add(time.Hour), Generation: uint64(i + 1), State: "valid",
		}
		for j := range 25 { // more than HistoryLen: the oldest are dropped
			a := Attempt{At: base.Add(time.Duration(j) * time.Second), Result: "success", Reason: fmt.Sprint(j)}
			if err := src.PutToken(tok, &a); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := src.PutClient(Client{Name: "c", ClientID: "id", ClientSecret: "secret"}); err != nil {
		t.Fatal(err)
	}
	if err := src.PutProvider("op", []byte(`{"issuer":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := src.PutPending(Pending{State: "s", Grant: "g0"}); err != nil {
		t.Fatal(err)
	}
	c, err := src.Count()
	if want := (Counts{Tokens: 3, Histories: 3, Attempts: 3 * HistoryLen, Clients: 1, Providers: 1, Pending: 1}); err != nil || c != want {
		t.Fatalf("Count = %+v, %v; want %+v", c, err, want)
	}

	dst := MustOpen(t, Options{Key: newKey(t), NoSync: true})
	err = src.EachToken(func(tok *Token) error {
		h, err := src.History(tok.Grant)
		if err != nil {
			return err
		}
		return dst.ImportGrant(tok.Grant, tok, h)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A history without a token, and a re-import that replaces a history.
	if err := dst.ImportGrant("orphan", nil, []Attempt{{At: base, Result: "failed"}}); err != nil {
		t.Fatal(err)
	}
	if err := dst.ImportGrant("g0", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := src.EachClient(func(c *Client) error { return dst.PutClient(*c) }); err != nil {
		t.Fatal(err)
	}
	if err := src.EachProvider(func(n string, m []byte) error { return dst.PutProvider(n, m) }); err != nil {
		t.Fatal(err)
	}

	for i := range 3 {
		g := fmt.Sprintf("g%d", i)
		a, _ := src.Token(g)
		b, err := dst.Token(g)
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("token %s: copied %v, %v; want %v", g, b, err, a)
		}
		ha, _ := src.History(g)
		hb, _ := dst.History(g)
		if g == "g0" {
			ha = nil
		}
		if !reflect.DeepEqual(ha, hb) {
			t.Errorf("history %s: copied %d attempts, want %d", g, len(hb), len(ha))
		}
	}
	histories := map[string]int{}
	if err := dst.EachHistory(func(g string, as []Attempt) error {
		histories[g] = len(as)
		if len(as) > 1 && !as[0].At.After(as[1].At) {
			t.Errorf("history %s not newest first", g)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"g1": HistoryLen, "g2": HistoryLen, "orphan": 1}; !reflect.DeepEqual(histories, want) {
		t.Errorf("EachHistory = %v, want %v", histories, want)
	}
	if cl, err := dst.Client("c"); err != nil || cl.ClientSecret != "secret" {
		t.Errorf("client copied: %v, %v", cl, err)
	}
	if m, err := dst.Provider("op"); err != nil || string(m) != `{"issuer":"x"}` {
		t.Errorf("provider copied: %q, %v", m, err)
	}

	// fn's error comes back as it is and stops the walk.
	stop := errors.New("stop")
	n := 0
	if err := src.EachHistory(func(string, []Attempt) error { n++; return stop }); err != stop || n != 1 {
		t.Errorf("EachHistory with a failing fn: %v after %d calls", err, n)
	}
	if err := src.EachClient(func(*Client) error { return stop }); err != stop {
		t.Errorf("EachClient with a failing fn: %v", err)
	}
	if err := dst.ImportGrant("x", &Token{Grant: "y"}, nil); err == nil {
		t.Errorf("ImportGrant with a token of another grant succeeded")
	}
}
