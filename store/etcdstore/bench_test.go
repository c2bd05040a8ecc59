package etcdstore_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/internal/etcdtest"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/etcdstore"
)

// benchToken is a token set of realistic size: JWT-sized access and ID
// tokens, an opaque refresh token.
func benchToken(grant string, gen uint64) store.Token {
	jwt := func(n int) string { return fmt.Sprintf("%0*d", n, gen) }
	now := time.Now()
	return store.Token{Grant: grant, AccessToken: jwt(900), RefreshToken: jwt(64), IDToken: jwt(1100), TokenType: "Bearer",
		Scope: "openid profile email offline_access", Obtained: now, Expiry: now.Add(time.Hour), RefreshIssued: now,
		Generation: gen, State: "valid", StateSince: now, LastAttempt: now, LastSuccess: now}
}

// BenchmarkPutTokenDurable is durable refreshes per second through a
// three-member cluster with fsync on: fenced PutToken with a history
// attempt, 256 writers on 256 held grants (etcd batches concurrent proposals into one fsync).
func BenchmarkPutTokenDurable(b *testing.B) { benchPutToken(b, false) }

// BenchmarkPutTokenNoFsync is the same without fsync: what the disk costs.
func BenchmarkPutTokenNoFsync(b *testing.B) { benchPutToken(b, true) }

func benchPutToken(b *testing.B, noFsync bool) {
	c := etcdtest.New(b, etcdtest.Options{Members: 3, NoFsync: noFsync})
	o := opener{c: c, prefix: "/bench/"}
	s := o.open(b, "a", func(opt *etcdstore.Options) { opt.LeaseTTL, opt.RequestTimeout = 10*time.Second, 5*time.Second })
	const grants = 256
	fps := map[string]string{}
	for i := range grants {
		fps[fmt.Sprint("g", i)] = "fp"
	}
	if err := s.SetGrants(context.Background(), fps); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 30*time.Second, "all grants held", func() bool { return s.Health().GrantsHeld == grants })
	var next atomic.Int64
	b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			g := fmt.Sprint("g", n%grants)
			if err := s.PutToken(benchToken(g, uint64(n)), &store.Attempt{At: time.Now(), Result: "success", Reason: "due"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
}

// BenchmarkBytesPerGrant reports what one grant costs in etcd: its token
// record, a full history, its owner and definition keys (keys and values;
// etcd's own per-revision overhead comes on top).
func BenchmarkBytesPerGrant(b *testing.B) {
	c := etcdtest.New(b, etcdtest.Options{Members: 1, NoFsync: true})
	o := opener{c: c, prefix: "/bytes/"}
	s := o.open(b, "a")
	const grants = 50
	fps := map[string]string{}
	for i := range grants {
		fps[fmt.Sprint("grant-", i)] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	}
	if err := s.SetGrants(context.Background(), fps); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 30*time.Second, "all grants held", func() bool { return s.Health().GrantsHeld == grants })
	for i := range grants {
		g := fmt.Sprint("grant-", i)
		for n := range store.HistoryLen {
			if err := s.PutToken(benchToken(g, uint64(n)), &store.Attempt{At: time.Now(), Result: "success", Latency: time.Millisecond, Reason: "due"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	var total int
	for range b.N {
		resp, err := o.client(b).Get(context.Background(), o.prefix, clientv3.WithPrefix())
		if err != nil {
			b.Fatal(err)
		}
		total = 0
		for _, kv := range resp.Kvs {
			total += len(kv.Key) + len(kv.Value)
		}
	}
	b.ReportMetric(float64(total)/grants, "bytes/grant")
}

// BenchmarkStartup100k is an instance's start with 100,000 grants in
// etcd: Open and EachToken, reading every record (decoding and opening
// the sealed fields); then SetGrants of a fleet's first instance.
func BenchmarkStartup100k(b *testing.B) {
	if testing.Short() {
		b.Skip("loads 100,000 grants")
	}
	c := etcdtest.New(b, etcdtest.Options{Members: 3, NoFsync: true})
	o := opener{c: c, prefix: "/startup/"}
	slow := func(opt *etcdstore.Options) { opt.RequestTimeout, opt.DialTimeout = 10*time.Second, 10*time.Second }
	w := o.open(b, "loader", slow)
	const grants = 100_000
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				t := benchToken(fmt.Sprint("g", i), 1)
				var err error
				for range 5 { // a loaded machine can time a write out
					if err = w.ImportGrant(t.Grant, &t, nil); err == nil {
						break
					}
				}
				if err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range grants {
		work <- i
	}
	close(work)
	wg.Wait()
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		s := o.open(b, fmt.Sprint("i", i), slow)
		n := 0
		if err := s.EachToken(func(*store.Token) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != grants {
			b.Fatalf("EachToken saw %d grants", n)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/startup")
		// The daemon then names its grants: the first instance of a
		// fleet writes every definition and takes every grant.
		fps := make(map[string]string, grants)
		for g := range grants {
			fps[fmt.Sprint("g", g)] = "fp"
		}
		start = time.Now()
		if err := s.SetGrants(context.Background(), fps); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/setgrants")
		b.ReportMetric(float64(s.Health().GrantsHeld), "held")
		s.Close()
	}
}
