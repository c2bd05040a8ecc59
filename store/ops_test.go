package store

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fill sets every field of the struct pointed to by p to a distinct
// non-zero value, so a field the encoding forgets fails the round trip.
// Times are in a non-UTC zone and carry a monotonic reading.
func fill(p any) {
	v := reflect.ValueOf(p).Elem()
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	base := time.Now().In(zone) // has a monotonic reading
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(fmt.Sprintf("%s-value-%d", v.Type().Field(i).Name, i))
		case time.Time:
			f.Set(reflect.ValueOf(base.Add(time.Duration(i)*time.Hour + 123456789)))
		case time.Duration:
			f.SetInt(int64(i) * int64(time.Millisecond))
		case uint64:
			f.SetUint(uint64(i) + 1000)
		case int:
			f.SetInt(int64(i) + 1)
		default:
			panic(fmt.Sprintf("fill: field %s of type %s", v.Type().Field(i).Name, f.Type()))
		}
	}
}

// sameRecord compares field by field, times by instant.
func sameRecord(t *testing.T, got, want any) {
	t.Helper()
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		name := g.Type().Field(i).Name
		gf, wf := g.Field(i).Interface(), w.Field(i).Interface()
		if wt, ok := wf.(time.Time); ok {
			gt := gf.(time.Time)
			if !gt.Equal(wt) || gt.Location() != time.UTC {
				t.Errorf("%s: got %v, want %v (in UTC)", name, gt, wt)
			}
			continue
		}
		if !reflect.DeepEqual(gf, wf) {
			t.Errorf("%s: got %v, want %v", name, gf, wf)
		}
	}
}

func TestRoundTrips(t *testing.T) {
	for _, key := range [][]byte{nil, newKey(t)} {
		t.Run(fmt.Sprintf("sealed=%v", key != nil), func(t *testing.T) {
			path := tempPath(t)
			s := MustOpen(t, Options{Path: path, Key: key})
			var tok Token
			fill(&tok)
			var a Attempt
			fill(&a)
			var c Client
			fill(&c)
			var p Pending
			fill(&p)
			p.Deadline = time.Now().Add(time.Hour)
			if err := s.PutToken(tok, &a); err != nil {
				t.Fatal(err)
			}
			if err := s.PutClient(c); err != nil {
				t.Fatal(err)
			}
			if err := s.PutPending(p); err != nil {
				t.Fatal(err)
			}
			s.Close()

			s = MustOpen(t, Options{Path: path, Key: key})
			gotTok, err := s.Token(tok.Grant)
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, gotTok, tok)
			h, err := s.History(tok.Grant)
			if err != nil || len(h) != 1 {
				t.Fatalf("History = %v, %v", h, err)
			}
			sameRecord(t, h[0], a)
			gotC, err := s.Client(c.Name)
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, gotC, c)
			gotP, err := s.ConsumePending(p.State, p.BindingHash, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			sameRecord(t, gotP, p)
		})
	}
}

func TestZeroTimesStayZero(t *testing.T) {
	s := MustOpen(t, Options{})
	if err := s.PutToken(Token{Grant: "g"}, nil); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token("g")
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Expiry.IsZero() || !tok.RefreshExpiry.IsZero() || !tok.Obtained.IsZero() || tok != (Token{Grant: "g"}) {
		t.Fatalf("zero token came back as %#v", tok)
	}
}

func TestNotFound(t *testing.T) {
	s := MustOpen(t, Options{})
	if _, err := s.Token("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Token = %v", err)
	}
	if _, err := s.Client("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Client = %v", err)
	}
	if _, err := s.Provider("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Provider = %v", err)
	}
	if _, err := s.ConsumePending("nope", "b", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("ConsumePending = %v", err)
	}
	if h, err := s.History("nope"); err != nil || len(h) != 0 {
		t.Errorf("History = %v, %v", h, err)
	}
	if toks, err := s.Tokens(); err != nil || len(toks) != 0 {
		t.Errorf("Tokens = %v, %v", toks, err)
	}
	if err := s.DeleteToken("nope"); err != nil {
		t.Errorf("DeleteToken = %v", err)
	}
}

func TestTokensAndDelete(t *testing.T) {
	s := MustOpen(t, Options{})
	for _, g := range []string{"c", "a", "b"} {
		if err := s.PutToken(Token{Grant: g, AccessToken: "at-" + g}, &Attempt{Result: "success"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutToken(Token{}, nil); err == nil {
		t.Fatal("PutToken without a grant succeeded")
	}
	toks, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tok := range toks {
		names = append(names, tok.Grant+"="+tok.AccessToken)
	}
	if fmt.Sprint(names) != "[a=at-a b=at-b c=at-c]" {
		t.Fatalf("Tokens = %v", names)
	}
	if err := s.DeleteToken("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Token("b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Token after delete = %v", err)
	}
	if h, _ := s.History("b"); len(h) != 0 {
		t.Fatalf("history survived delete: %v", h)
	}
	if h, _ := s.History("a"); len(h) != 1 {
		t.Fatalf("history of a: %v", h)
	}
}

func TestHistoryBounded(t *testing.T) {
	s := MustOpen(t, Options{})
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for i := range 25 {
		a := &Attempt{At: t0.Add(time.Duration(i) * time.Minute), Result: "success", Reason: fmt.Sprint(i)}
		if err := s.PutToken(Token{Grant: "g", Generation: uint64(i)}, a); err != nil {
			t.Fatal(err)
		}
		// A write without an attempt leaves the history alone.
		if err := s.PutToken(Token{Grant: "g", Generation: uint64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.History("g")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != HistoryLen {
		t.Fatalf("%d attempts kept, want %d", len(h), HistoryLen)
	}
	for i, a := range h {
		if want := fmt.Sprint(24 - i); a.Reason != want {
			t.Fatalf("attempt %d is %s, want %s (newest first)", i, a.Reason, want)
		}
	}
	// The bucket itself holds only HistoryLen records.
	var n int
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketHistory)).Bucket([]byte("g")).ForEach(func(_, _ []byte) error { n++; return nil })
	})
	if n != HistoryLen {
		t.Fatalf("history bucket holds %d records, want %d", n, HistoryLen)
	}
}

func TestUpdateToken(t *testing.T) {
	s := MustOpen(t, Options{})
	err := s.UpdateToken("g", func(tok *Token, found bool) error {
		if found || tok.Grant != "g" {
			t.Errorf("first update: found=%v grant=%q", found, tok.Grant)
		}
		tok.AccessToken = "one"
		tok.Generation = 1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.UpdateToken("g", func(tok *Token, found bool) error {
		if !found || tok.AccessToken != "one" {
			t.Errorf("second update: found=%v %v", found, tok)
		}
		tok.Generation++
		tok.Grant = "renamed" // ignored
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("changed my mind")
	err = s.UpdateToken("g", func(tok *Token, found bool) error {
		tok.AccessToken = "discarded"
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("UpdateToken returned %v, want fn's error unchanged", err)
	}
	tok, err := s.Token("g")
	if err != nil || tok.AccessToken != "one" || tok.Generation != 2 {
		t.Fatalf("Token = %v, %v", tok, err)
	}
	if _, err := s.Token("renamed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fn renamed the grant: %v", err)
	}
}

// Concurrent read-modify-writes lose no update.
func TestUpdateTokenConcurrent(t *testing.T) {
	s := MustOpen(t, Options{NoSync: true})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 5 {
				if err := s.UpdateToken("g", func(tok *Token, _ bool) error { tok.Generation++; return nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if tok, _ := s.Token("g"); tok.Generation != 100 {
		t.Fatalf("Generation %d, want 100", tok.Generation)
	}
}

func TestPutTokenConcurrent(t *testing.T) {
	s := MustOpen(t, Options{Key: newKey(t)})
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			g := fmt.Sprintf("g%02d", i)
			if err := s.PutToken(Token{Grant: g, AccessToken: "at-" + g}, &Attempt{Reason: g}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range 64 {
		g := fmt.Sprintf("g%02d", i)
		tok, err := s.Token(g)
		if err != nil || tok.AccessToken != "at-"+g {
			t.Fatalf("%s: %v %v", g, tok, err)
		}
		if h, _ := s.History(g); len(h) != 1 || h[0].Reason != g {
			t.Fatalf("%s: history %v", g, h)
		}
	}
}

func TestPending(t *testing.T) {
	s := MustOpen(t, Options{Key: newKey(t)})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for _, p := range []Pending{
		{State: "s1", Grant: "g", Kind: "authorization_code", Verifier: "v1", Deadline: now.Add(10 * time.Minute), BindingHash: "b1"},
		{State: "s2", Grant: "g", Kind: "authorization_code", Verifier: "v2", Deadline: now.Add(time.Minute), BindingHash: "b2"},
		{State: "s3", Grant: "other", Kind: "device_code", DeviceCode: "dc", Deadline: now.Add(-time.Second)},
		{State: "s4", Grant: "other", Kind: "device_code", DeviceCode: "dc4"}, // no deadline
	} {
		if err := s.PutPending(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPending(Pending{Grant: "g"}); err == nil {
		t.Fatal("PutPending without state succeeded")
	}
	ps, err := s.PendingFor("g")
	if err != nil || len(ps) != 2 {
		t.Fatalf("PendingFor(g) = %v, %v", ps, err)
	}
	for _, p := range ps {
		if p.State != "" || p.Grant != "g" || p.Verifier == "" {
			t.Fatalf("PendingFor gave %#v", p)
		}
	}

	p, err := s.ConsumePending("s1", "b1", now)
	if err != nil || p.State != "s1" || p.Verifier != "v1" || p.Grant != "g" {
		t.Fatalf("ConsumePending(s1) = %v, %v", p, err)
	}
	if _, err := s.ConsumePending("s1", "b1", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second ConsumePending(s1) = %v, want ErrNotFound", err)
	}

	// At the deadline it has expired; it is deleted all the same, and the
	// record comes back (without its secrets) so the caller can record the
	// outcome on its grant.
	p, err = s.ConsumePending("s2", "b2", now.Add(time.Minute))
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("ConsumePending(s2) at deadline = %v, want ErrExpired", err)
	}
	if p.Grant != "g" || p.State != "s2" || p.Verifier != "" {
		t.Fatalf("expired ConsumePending(s2) returned %#v; want grant g, no verifier", p)
	}
	if _, err := s.ConsumePending("s2", "b2", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ConsumePending(s2) after expiry = %v, want ErrNotFound", err)
	}

	n, err := s.PrunePending(now)
	if err != nil || n != 1 {
		t.Fatalf("PrunePending = %d, %v; want 1 (s3)", n, err)
	}
	if ps, _ := s.PendingFor("other"); len(ps) != 1 || ps[0].DeviceCode != "dc4" {
		t.Fatalf("after prune: %v", ps)
	}
	if n, err := s.DeletePending("other"); err != nil || n != 1 {
		t.Fatalf("DeletePending = %d, %v", n, err)
	}
	if p, err := s.ConsumePending("s4", "", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ConsumePending(s4) after DeletePending = %v, %v", p, err)
	}
}

// The browser binding: the start page binds once; a callback without the
// binding (another local user delivering their own code for the same state)
// is refused and leaves the authorization for the browser that has it.
func TestPendingBinding(t *testing.T) {
	s := MustOpen(t, Options{Key: newKey(t)})
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := Pending{State: "st", Grant: "g", Kind: "authorization_code", Verifier: "v", Deadline: now.Add(10 * time.Minute), StartHash: "start"}
	if err := s.PutPending(p); err != nil {
		t.Fatal(err)
	}
	// Before the start page was used, no callback redeems it, not even one
	// presenting nothing.
	for _, b := range []string{"", "start", "guess"} {
		got, err := s.ConsumePending("st", b, now)
		if !errors.Is(err, ErrMismatch) || got.Grant != "g" || got.Verifier != "" {
			t.Fatalf("ConsumePending(binding %q) before binding = %#v, %v; want ErrMismatch for g without verifier", b, got, err)
		}
	}
	if _, err := s.BindPending("st", "wrong-start", "cookie", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("BindPending with a wrong start id = %v, want ErrNotFound", err)
	}
	if _, err := s.BindPending("st", "start", "cookie", now); err != nil {
		t.Fatalf("BindPending = %v", err)
	}
	// The start page works once.
	if _, err := s.BindPending("st", "start", "cookie2", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second BindPending = %v, want ErrNotFound", err)
	}
	// The attacker's callback: refused, not consumed.
	if _, err := s.ConsumePending("st", "", now); !errors.Is(err, ErrMismatch) {
		t.Fatalf("ConsumePending without the binding = %v, want ErrMismatch", err)
	}
	if _, err := s.ConsumePending("st", "cookie2", now); !errors.Is(err, ErrMismatch) {
		t.Fatalf("ConsumePending with another binding = %v, want ErrMismatch", err)
	}
	if ps, _ := s.PendingFor("g"); len(ps) != 1 || ps[0].BindingHash != "cookie" || ps[0].StartHash != "" {
		t.Fatalf("after refused callbacks: %#v", ps)
	}
	// The browser's callback.
	got, err := s.ConsumePending("st", "cookie", now)
	if err != nil || got.Verifier != "v" || got.Grant != "g" {
		t.Fatalf("ConsumePending with the binding = %#v, %v", got, err)
	}
	if _, err := s.ConsumePending("st", "cookie", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replay = %v, want ErrNotFound", err)
	}

	// An expired start page: ErrExpired with the grant, and deleted.
	p2 := Pending{State: "st2", Grant: "g2", Kind: "authorization_code", Verifier: "v2", Deadline: now.Add(time.Minute), StartHash: "start2"}
	if err := s.PutPending(p2); err != nil {
		t.Fatal(err)
	}
	if got, err := s.BindPending("st2", "start2", "c", now.Add(time.Minute)); !errors.Is(err, ErrExpired) || got.Grant != "g2" || got.Verifier != "" {
		t.Fatalf("BindPending after the deadline = %#v, %v; want ErrExpired for g2", got, err)
	}
	if ps, _ := s.PendingFor("g2"); len(ps) != 0 {
		t.Fatalf("expired pending authorization kept: %v", ps)
	}
	if _, err := s.BindPending("st2", "", "c", now); err == nil {
		t.Fatal("BindPending without a start id succeeded")
	}
}

// Of many concurrent redemptions of one state, exactly one wins.
func TestConsumePendingOnce(t *testing.T) {
	s := MustOpen(t, Options{NoSync: true})
	now := time.Now()
	if err := s.PutPending(Pending{State: "st", Grant: "g", Deadline: now.Add(time.Hour), BindingHash: "bh"}); err != nil {
		t.Fatal(err)
	}
	var wins, notFound atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := s.ConsumePending("st", "bh", now)
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, ErrNotFound):
				notFound.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || notFound.Load() != 15 {
		t.Fatalf("%d wins, %d not found", wins.Load(), notFound.Load())
	}
}

func TestProvider(t *testing.T) {
	s := MustOpen(t, Options{})
	meta := []byte(`{"issuer":"https://id.example.com"}`)
	if err := s.PutProvider("corp", meta); err != nil {
		t.Fatal(err)
	}
	meta[2] = 'X' // the store keeps its own copy
	got, err := s.Provider("corp")
	if err != nil || string(got) != `{"issuer":"https://id.example.com"}` {
		t.Fatalf("Provider = %s, %v", got, err)
	}
	if err := s.PutProvider("", nil); err == nil {
		t.Fatal("PutProvider without a name succeeded")
	}
}
