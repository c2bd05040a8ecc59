package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

var (
	_ daemon.Store = (*etcdstore.Store)(nil)
	_ daemon.Fleet = (*etcdstore.Store)(nil)
)

var testKey = bytes.Repeat([]byte{7}, store.KeySize)

const ttl = 2 * time.Second

type opener struct {
	c      *etcdtest.Cluster
	prefix string
}

func newCluster(t testing.TB, members int) opener {
	c := etcdtest.New(t, etcdtest.Options{Members: members, NoFsync: true})
	return opener{c: c, prefix: "/t/"}
}

func (o opener) open(t testing.TB, inst string, mod ...func(*etcdstore.Options)) *etcdstore.Store {
	t.Helper()
	opts := etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: o.prefix, Key: testKey, Instance: inst,
		LeaseTTL: ttl, DialTimeout: 2 * time.Second, RequestTimeout: time.Second}
	for _, m := range mod {
		m(&opts)
	}
	s, err := etcdstore.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open %s: %v", inst, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (o opener) client(t testing.TB) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: o.c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitFor polls cond until it holds, failing after limit: a bound on
// liveness, not a measure of speed.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tok(grant, at string, gen uint64) store.Token {
	return store.Token{Grant: grant, AccessToken: at, RefreshToken: "rt-" + at, TokenType: "Bearer", Generation: gen, State: "valid"}
}

func TestOpenRefusals(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "a")
	if err := s.PutToken(tok("g", "secret-access", 1), nil); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("PutToken of a grant not held = %v, want ErrFenced", err)
	}
	if err := s.PutAuthorized(tok("g", "secret-access", 1), &store.Attempt{At: time.Now(), Result: "success"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for name, c := range map[string]struct {
		mod  func(*etcdstore.Options)
		want error
	}{
		"wrong key":    {func(o *etcdstore.Options) { o.Key = bytes.Repeat([]byte{8}, store.KeySize) }, store.ErrWrongKey},
		"no key":       {func(o *etcdstore.Options) { o.Key = nil }, store.ErrKeyRequired},
		"other prefix": {func(o *etcdstore.Options) { o.Prefix = "/other/" }, store.ErrCorrupt},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "other prefix" {
				if _, err := o.client(t).Put(context.Background(), "/other/thing", "x"); err != nil {
					t.Fatal(err)
				}
			}
			opts := etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: o.prefix, Key: testKey, Instance: "b", LeaseTTL: ttl}
			c.mod(&opts)
			s, err := etcdstore.Open(context.Background(), opts)
			if !errors.Is(err, c.want) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Open = %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("error carries a secret: %v", err)
			}
		})
	}
	// Sealed: no value in etcd holds the token in plain text.
	resp, err := o.client(t).Get(context.Background(), o.prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, kv := range resp.Kvs {
		if string(kv.Key) == o.prefix+"tokens/g" {
			found = true
		}
		if bytes.Contains(kv.Value, []byte("secret-access")) {
			t.Fatalf("%s holds the token in plain text", kv.Key)
		}
	}
	if !found {
		t.Fatal("no tokens/g record")
	}
	t.Run("key for an unsealed store", func(t *testing.T) {
		p := opener{c: o.c, prefix: "/plain/"}
		p.open(t, "a", func(opt *etcdstore.Options) { opt.Key = nil }).Close()
		_, err := etcdstore.Open(context.Background(), etcdstore.Options{Endpoints: o.c.Endpoints(), Prefix: "/plain/", Key: testKey, Instance: "b", LeaseTTL: ttl})
		if !errors.Is(err, store.ErrNotEncrypted) {
			t.Fatalf("Open with a key of an unsealed store = %v, want ErrNotEncrypted", err)
		}
	})
	s2 := o.open(t, "c")
	if got, err := s2.Token("g"); err != nil || got.AccessToken != "secret-access" || got.RefreshToken != "rt-secret-access" {
		t.Fatalf("Token = %+v, %v", got, err)
	}
}

func TestPendingAcrossInstances(t *testing.T) {
	o := newCluster(t, 3)
	a, b := o.open(t, "a"), o.open(t, "b")
	for round := range 5 {
		state := fmt.Sprint("state-", round)
		p := store.Pending{State: state, Grant: "user", Kind: "authorization_code", Verifier: "v", StartHash: "start", Deadline: time.Now().Add(time.Hour)}
		if err := a.PutPending(p); err != nil {
			t.Fatal(err)
		}
		if _, err := b.BindPending(state, "start", "bind", time.Now()); err != nil {
			t.Fatal(err)
		}
		won := racersWon(a, b, func(st *etcdstore.Store) bool {
			got, err := st.ConsumePending(state, "bind", time.Now())
			switch {
			case err == nil:
				if got.Verifier != "v" || got.State != state {
					t.Errorf("consumed %+v", got)
				}
				return true
			case !errors.Is(err, store.ErrNotFound):
				t.Errorf("ConsumePending: %v", err)
			}
			return false
		})
		if won != 1 {
			t.Fatalf("round %d: %d consumers across two instances won, want 1", round, won)
		}
	}
}

// racersWon starts 16 racers at once, every other one on b and the rest
// on a, each calling take on its instance, and returns how many of the
// takes report that they won.
func racersWon(a, b *etcdstore.Store, take func(st *etcdstore.Store) (won bool)) int {
	var wins atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 16 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			<-start
			if take(st) {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	return int(wins.Load())
}

// campaignAll makes every store of ss campaign for the grants g0 to
// g(n-1), all of fingerprint "fp", and returns them.
func campaignAll(t testing.TB, n int, ss ...*etcdstore.Store) map[string]string {
	t.Helper()
	fps := map[string]string{}
	for i := range n {
		fps[fmt.Sprint("g", i)] = "fp"
	}
	for _, s := range ss {
		if err := s.SetGrants(context.Background(), fps); err != nil {
			t.Fatal(err)
		}
	}
	return fps
}

// hold makes s campaign for grants and waits until it holds them all.
func hold(t *testing.T, s *etcdstore.Store, grants ...string) {
	t.Helper()
	fps := map[string]string{}
	for _, g := range grants {
		fps[g] = "fp"
	}
	if err := s.SetGrants(context.Background(), fps); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, s.Instance()+" holds "+strings.Join(grants, ","), func() bool {
		for _, g := range grants {
			if !s.Holds(g, 0) {
				return false
			}
		}
		return true
	})
}

// SetGrants stops when its context ends (the daemon's shutdown, which
// waits for it): with the context's error, and having taken nothing.
func TestSetGrantsEndsWithItsContext(t *testing.T) {
	o := newCluster(t, 3)
	s := o.open(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fps := map[string]string{}
	for i := range 200 {
		fps[fmt.Sprintf("g%03d", i)] = "fp"
	}
	if err := s.SetGrants(ctx, fps); !errors.Is(err, context.Canceled) {
		t.Fatalf("SetGrants with an ended context: %v, want context.Canceled", err)
	}
	if h := s.Health(); h.GrantsHeld != 0 {
		t.Fatalf("SetGrants with an ended context took %d grants", h.GrantsHeld)
	}
	hold(t, s, "g000", "g199") // the next call does the work
}

func TestFencing(t *testing.T) {
	o := newCluster(t, 3)
	a, b := o.open(t, "a"), o.open(t, "b")
	hold(t, a, "g")
	if err := b.SetGrants(context.Background(), map[string]string{"g": "fp"}); err != nil {
		t.Fatal(err)
	}
	if b.Holds("g", 0) {
		t.Fatal("two instances hold g")
	}
	if a.Holds("g", 2*ttl) {
		t.Fatal("Holds with a margin longer than the lease")
	}
	if h := a.Health(); !h.Quorum || !h.LeaseOK || h.GrantsHeld != 1 {
		t.Fatalf("Health = %+v", h)
	}
	// b learns the owner through its watch of owners/: eventually.
	waitFor(t, 10*time.Second, "b sees a as g's owner", func() bool { return b.GrantInfo("g").Owner == "a" })
	if gi := b.GrantInfo("g"); gi.Owner != "a" || gi.Held || gi.Conflict != "" {
		t.Fatalf("b's GrantInfo = %+v", gi)
	}
	if err := a.PutToken(tok("g", "a1", 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.PutToken(tok("g", "b1", 2), nil); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("PutToken by the instance not holding g = %v, want ErrFenced", err)
	}

	t.Run("written elsewhere", func(t *testing.T) {
		if _, err := b.Token("g"); err != nil {
			t.Fatal(err)
		}
		if err := b.PutAuthorized(tok("g", "b2", 3), nil); err != nil {
			t.Fatalf("PutAuthorized after reading the record: %v", err)
		}
		if err := a.PutToken(tok("g", "a2", 4), nil); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("PutToken over a record written elsewhere = %v, want ErrFenced", err)
		}
		if got, _ := a.Token("g"); got.AccessToken != "b2" {
			t.Fatalf("record is %q after a fenced write, want b2", got.AccessToken)
		}
		// Having seen it (Token read), the holder writes again.
		if err := a.PutToken(tok("g", "a3", 5), nil); err != nil {
			t.Fatal(err)
		}
		if err := b.PutAuthorized(tok("g", "b3", 6), nil); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("PutAuthorized on a stale revision = %v, want ErrFenced", err)
		}
	})

	t.Run("lease lost", func(t *testing.T) {
		if err := a.RevokeLease(); err != nil {
			t.Fatal(err)
		}
		err := a.PutToken(tok("g", "a4", 7), nil)
		if !errors.Is(err, store.ErrFenced) {
			t.Fatalf("PutToken after the lease ended = %v, want ErrFenced", err)
		}
		if strings.Contains(err.Error(), "a4") {
			t.Fatalf("error carries the token: %v", err)
		}
		// b takes over; a, with a new lease, finds g held.
		waitFor(t, 3*ttl, "b takes g over", func() bool { return b.Holds("g", 0) })
		waitFor(t, 3*ttl, "a has a new lease", func() bool { return a.Health().LeaseOK })
		if a.Holds("g", 0) {
			t.Fatal("a and b hold g")
		}
	})

	t.Run("paused past its lease", func(t *testing.T) {
		if _, err := b.Token("g"); err != nil {
			t.Fatal(err)
		}
		if !b.Holds("g", ttl/2) {
			t.Fatal("b does not hold g with margin")
		}
		b.PauseKeepAlive(true) // SIGSTOP: it believes it holds g
		paused := time.Now()
		waitFor(t, 3*ttl, "a takes g over from the paused b", func() bool { return a.Holds("g", 0) })
		t.Logf("take-over %s after the holder stopped renewing a %s lease", time.Since(paused).Round(10*time.Millisecond), ttl)
		if err := a.PutToken(tok("g", "a5", 8), nil); err != nil {
			t.Fatal(err)
		}
		// SIGCONT: b's write from before the pause is refused.
		if err := b.PutToken(tok("g", "stale", 9), nil); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("stale PutToken after the pause = %v, want ErrFenced", err)
		}
		if b.Holds("g", 0) {
			t.Fatal("b still believes it holds g after its lease ran out")
		}
		b.PauseKeepAlive(false)
		if got, _ := a.Token("g"); got.AccessToken != "a5" {
			t.Fatalf("record %q, want a5", got.AccessToken)
		}
	})
}

func TestSpreadAndTakeover(t *testing.T) {
	o := newCluster(t, 3)
	var grants []string
	fps := map[string]string{}
	for i := range 30 {
		g := fmt.Sprintf("g%02d", i)
		grants = append(grants, g)
		fps[g] = "fp"
	}
	ss := []*etcdstore.Store{o.open(t, "a"), o.open(t, "b"), o.open(t, "c")}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(func() {
			if err := s.SetGrants(context.Background(), fps); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	count := func(ss []*etcdstore.Store) ([]int, bool) {
		n := make([]int, len(ss))
		for _, g := range grants {
			holders := 0
			for i, s := range ss {
				if s.Holds(g, 0) {
					n[i]++
					holders++
				}
			}
			if holders != 1 {
				return n, false
			}
		}
		return n, true
	}
	var n []int
	waitFor(t, 10*time.Second, "every grant held by exactly one of three, spread", func() bool {
		var ok bool
		n, ok = count(ss)
		return ok && min(n[0], n[1], n[2]) >= 8
	})
	t.Logf("held: %v", n)
	if got := ss[0].GrantInfo(grants[0]).Owner; got == "" {
		t.Fatal("GrantInfo has no owner")
	}

	// c dies (its lease runs out, nobody tells it): a and b take its grants.
	ss[2].PauseKeepAlive(true)
	if err := ss[2].RevokeLease(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl+2*time.Second, "a and b take over c's grants", func() bool {
		n, ok := count(ss[:2])
		return ok && n[0]+n[1] == len(grants)
	})

	// b stops cleanly: a holds everything at once.
	ss[1].Close()
	waitFor(t, ttl+2*time.Second, "a takes over b's grants", func() bool {
		n, ok := count(ss[:1])
		return ok && n[0] == len(grants)
	})

	// A newcomer gets its share: a hands grants back.
	d := o.open(t, "d")
	if err := d.SetGrants(context.Background(), fps); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 4*ttl, "a hands grants to d", func() bool {
		n, ok := count([]*etcdstore.Store{ss[0], d})
		return ok && min(n[0], n[1]) >= 10
	})
}

func TestConflict(t *testing.T) {
	o := newCluster(t, 1)
	a, b := o.open(t, "a"), o.open(t, "b")
	hold(t, a, "g")
	if err := b.SetGrants(context.Background(), map[string]string{"g": "other", "h": "fp"}); err != nil {
		t.Fatal(err)
	}
	if c := b.GrantInfo("g").Conflict; c == "" {
		t.Fatal("no conflict reported for a differing definition")
	}
	if a.GrantInfo("g").Conflict != "" {
		t.Fatal("the first definition is reported in conflict")
	}
	a.Close() // g is free, but b's definition differs: b does not take it...
	waitFor(t, 5*time.Second, "b holds h", func() bool { return b.Holds("h", 0) })
	if b.Holds("g", 0) {
		t.Fatal("an instance with a differing definition holds the grant")
	}
	// ...until its writer is gone and b's definition is set on reload.
	if err := b.SetGrants(context.Background(), map[string]string{"g": "other", "h": "fp"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b holds g with the writer gone", func() bool { return b.Holds("g", 0) })
}

func TestQuorumLoss(t *testing.T) {
	o := newCluster(t, 3)
	a := o.open(t, "a")
	hold(t, a, "g")
	if err := a.PutToken(tok("g", "t1", 1), nil); err != nil {
		t.Fatal(err)
	}
	o.c.Stop(2)
	if err := a.PutToken(tok("g", "t2", 2), nil); err != nil {
		t.Fatalf("one member of three down: %v", err)
	}
	o.c.Stop(1)
	waitFor(t, 3*ttl, "quorum loss seen", func() bool { return !a.Health().Quorum })
	if a.Holds("g", 0) {
		t.Fatal("Holds without quorum")
	}
	start := time.Now()
	err := a.PutToken(tok("g", "t3", 3), nil)
	if err == nil {
		t.Fatal("PutToken without quorum succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("PutToken without quorum took %s", d) // a hang, not a speed check
	}
	t.Logf("PutToken without quorum: %v after %s", err, time.Since(start).Round(time.Millisecond))
	r1, r2 := o.c.RestartAsync(1), o.c.RestartAsync(2)
	if err := <-r1; err != nil {
		t.Fatal(err)
	}
	if err := <-r2; err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*ttl, "a holds g again", func() bool { return a.Health().Quorum && a.Holds("g", 0) })
	if _, err := a.Token("g"); err != nil {
		t.Fatal(err)
	}
	if err := a.PutToken(tok("g", "t4", 4), nil); err != nil {
		t.Fatalf("PutToken after quorum returned: %v", err)
	}
}

// collector gathers what a Watch delivers.
type collector struct {
	mu sync.Mutex
	ts []store.Token
}

func (c *collector) add(t store.Token) { c.mu.Lock(); c.ts = append(c.ts, t); c.mu.Unlock() }
func (c *collector) last(grant string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.ts) - 1; i >= 0; i-- {
		if c.ts[i].Grant == grant {
			return c.ts[i].AccessToken
		}
	}
	return ""
}

func TestWatch(t *testing.T) {
	o := newCluster(t, 3)
	a := o.open(t, "a")
	// b talks to member 0 only, so stopping it breaks b's watch.
	b := o.open(t, "b", func(opt *etcdstore.Options) { opt.Endpoints = o.c.Endpoints()[:1] })
	hold(t, a, "g")
	if err := a.PutToken(tok("g", "w1", 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.EachToken(func(*store.Token) error { return nil }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got, own collector
	go b.Watch(ctx, got.add)
	go a.Watch(ctx, own.add)
	if err := a.PutToken(tok("g", "w2", 2), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b sees w2", func() bool { return got.last("g") == "w2" })
	if b.Health().WatchOK != true {
		t.Fatal("WatchOK false on a running watch")
	}

	t.Run("resume", func(t *testing.T) {
		o.c.Stop(0)
		waitFor(t, 5*time.Second, "b's watch reported broken", func() bool { return !b.Health().WatchOK })
		if err := a.PutToken(tok("g", "w3", 3), nil); err != nil {
			t.Fatal(err)
		}
		o.c.Restart(0)
		waitFor(t, 10*time.Second, "b sees w3 after its watch resumed", func() bool { return got.last("g") == "w3" })
	})

	t.Run("compaction", func(t *testing.T) {
		// c loaded long ago; the revisions since are compacted away.
		c := o.open(t, "c")
		if err := c.EachToken(func(*store.Token) error { return nil }); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if err := a.PutToken(tok("g", fmt.Sprint("x", i), uint64(10+i)), nil); err != nil {
				t.Fatal(err)
			}
		}
		cli := o.client(t)
		r, err := cli.Get(context.Background(), "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Compact(context.Background(), r.Header.Revision); err != nil {
			t.Fatal(err)
		}
		var cg collector
		go c.Watch(ctx, cg.add)
		waitFor(t, 10*time.Second, "c resyncs to x4 after compaction", func() bool { return cg.last("g") == "x4" })
		cg.mu.Lock()
		n := len(cg.ts)
		cg.mu.Unlock()
		if n != 1 {
			t.Fatalf("resync delivered %d records of g, want the newest only", n)
		}
	})
	if n := own.last("g"); n != "" {
		t.Fatalf("a's watch delivered its own write %q", n)
	}
}

func TestLock(t *testing.T) {
	o := newCluster(t, 1)
	a, b := o.open(t, "a"), o.open(t, "b")
	unlock, err := a.Lock(context.Background(), "register-app")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := b.Lock(ctx, "register-app"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Lock = %v, want to wait", err)
	}
	cancel()
	got := make(chan error, 1)
	go func() {
		u, err := b.Lock(context.Background(), "register-app")
		if err == nil {
			u()
		}
		got <- err
	}()
	unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// A holder that dies releases it with its lease.
	if _, err := a.Lock(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer lcancel()
	if _, err := b.Lock(lctx, "x"); err != nil {
		t.Fatalf("lock of a closed instance not released: %v", err)
	}
}

func TestExportImport(t *testing.T) {
	o := newCluster(t, 1)
	s := o.open(t, "copy")
	if empty, err := s.Empty(); err != nil || !empty {
		t.Fatalf("Empty = %v, %v", empty, err)
	}
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	as := []store.Attempt{{At: at.Add(time.Second), Result: "success"}, {At: at, Result: "invalid_grant"}}
	tk := tok("g", "imp", 1)
	if err := s.ImportGrant("g", &tk, as); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportGrant("h", nil, as[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutClient(store.Client{Name: "c", ClientID: "id", ClientSecret: "cs"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutProvider("p", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	c, err := s.Count()
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.Counts{Tokens: 1, Histories: 2, Attempts: 3, Clients: 1, Providers: 1}); c != want {
		t.Fatalf("Count = %+v, want %+v", c, want)
	}
	var hist []string
	if err := s.EachHistory(func(g string, as []store.Attempt) error {
		hist = append(hist, fmt.Sprint(g, len(as), as[0].Result))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(hist, ",") != "g2success,h1success" {
		t.Fatalf("EachHistory: %v", hist)
	}
	var cs []store.Client
	if err := s.EachClient(func(c *store.Client) error { cs = append(cs, *c); return nil }); err != nil || len(cs) != 1 || cs[0].ClientSecret != "cs" {
		t.Fatalf("EachClient: %+v, %v", cs, err)
	}
	var ps []string
	if err := s.EachProvider(func(n string, m []byte) error { ps = append(ps, n+string(m)); return nil }); err != nil || strings.Join(ps, "") != "p{}" {
		t.Fatalf("EachProvider: %v, %v", ps, err)
	}
}

// An instance that lost its lease and came back holds its part again
// within a few lease periods: the others hand grants over between their
// refreshes, never one they promised a refresh (Holds) until the promise
// runs out.
func TestRejoinedInstanceGetsItsShare(t *testing.T) {
	o := newCluster(t, 3)
	fps := map[string]string{}
	var grants []string
	for i := range 6 {
		g := fmt.Sprintf("g%d", i)
		grants = append(grants, g)
		fps[g] = "fp"
	}
	ss := []*etcdstore.Store{o.open(t, "a"), o.open(t, "b"), o.open(t, "c")}
	for _, s := range ss {
		if err := s.SetGrants(context.Background(), fps); err != nil {
			t.Fatal(err)
		}
	}
	held := func(s *etcdstore.Store) (n int) {
		for _, g := range grants {
			if s.GrantInfo(g).Held {
				n++
			}
		}
		return n
	}
	waitFor(t, 10*time.Second, "every instance holds grants", func() bool { return min(held(ss[0]), held(ss[1]), held(ss[2])) >= 1 })

	// c loses its lease (a pause longer than it): a and b take its grants.
	ss[2].PauseKeepAlive(true)
	if err := ss[2].RevokeLease(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ttl+2*time.Second, "a and b hold every grant", func() bool { return held(ss[0])+held(ss[1]) == len(grants) })
	// a promises a refresh of each of its grants (as long as its lease
	// allows).
	promise := ttl / 2
	var promised []string
	for _, g := range grants {
		if ss[0].Holds(g, promise) {
			promised = append(promised, g)
		}
	}
	if len(promised) == 0 {
		t.Fatal("a promised nothing")
	}
	promisedAt := time.Now()
	ss[2].PauseKeepAlive(false)
	waitFor(t, 4*ttl, "the rejoined c holds grants again", func() bool { return held(ss[2]) >= 1 })
	for time.Since(promisedAt) < promise-100*time.Millisecond {
		for _, g := range promised {
			if owner := ss[0].GrantInfo(g).Owner; owner != "a" && owner != "" {
				t.Fatalf("%s, promised by a for %s, handed to %s after %s", g, promise, owner, time.Since(promisedAt))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, 4*ttl, "each instance holds 2 of 6", func() bool {
		return held(ss[0]) == 2 && held(ss[1]) == 2 && held(ss[2]) == 2
	})
}
