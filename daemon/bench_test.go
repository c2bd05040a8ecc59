package daemon

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// idleDaemon builds a daemon with n client_credentials grants that all
// hold a fresh token, and a real sealed store (fsync on), as after start:
// a scheduler tick at t0 finds nothing due.
func idleDaemon(b *testing.B, n int) *Daemon {
	b.Helper()
	dir := b.TempDir()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	cfg := &config.Config{
		Store:  config.Store{Path: filepath.Join(dir, "tokend.db"), Key: key},
		Listen: config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"},
		Providers: map[string]config.Provider{
			// Never contacted: nothing is due.
			"test": {TokenEndpoint: "http://127.0.0.1:1/token"},
		},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret)},
		},
		Grants: make(map[string]config.Grant, n),
	}
	for i := range n {
		cfg.Grants[fmt.Sprintf("grant-%06d", i)] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}
	cfg.ApplyDefaults()
	d, err := New(cfg, Options{Clock: newFakeClock(t0)})
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(store.Options{Path: cfg.Store.Path, Key: key})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	d.st = st
	_, p := d.config()
	for _, g := range d.grantList() {
		d.publish(g, &store.Token{
			Grant: g.name, AccessToken: "access-token-0123456789abcdefghijklmnopqrstuvwxyz", TokenType: "Bearer",
			Scope: "read", Obtained: t0, Expiry: t0.Add(time.Hour), Generation: 1, State: api.StateValid,
			StateSince: t0, LastSuccess: t0, LastAttempt: t0,
		}, p)
	}
	return d
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkIdleTick measures one scheduler tick when nothing is due, the
// cost paid every refresh.schedule period (15 s by default) forever. It
// reports wall time (ns/op) and the process's CPU time per tick
// (cpu-ns/op, user + system, GC included). The nostore variants leave the
// store out (no PrunePending) to show what the per-grant loop costs alone.
// `make bench` runs it and copies the figures into BENCHMARKS.md.
func BenchmarkIdleTick(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, withStore := range []bool{true, false} {
			name := fmt.Sprintf("grants=%d", n)
			if !withStore {
				name += "/nostore"
			}
			b.Run(name, func(b *testing.B) {
				d := idleDaemon(b, n)
				if !withStore {
					d.st = nil
				}
				d.tick(t0) // warm: first-use allocations
				if q := d.queue.queuedLen(); q != 0 {
					b.Fatalf("%d grants due at an idle tick", q)
				}
				b.ReportAllocs()
				// The set-up's garbage is collected now, not by GC
				// workers while the ticks run, whose CPU cpuTime counts.
				runtime.GC()
				iters := 0
				cpu0 := cpuTime()
				for b.Loop() {
					d.tick(t0)
					iters++
				}
				cpu := cpuTime() - cpu0
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(iters), "cpu-ns/op")
				if q := d.queue.queuedLen(); q != 0 {
					b.Fatalf("%d grants due at an idle tick", q)
				}
			})
		}
	}
}

// BenchmarkDPoPProofs compares POST /v1/tokens/{name}/dpop (a fresh ES256
// proof per request) with GET /v1/tokens/{name} of the same grant, through
// the API's handler in one run, so that the ratio holds on a busy machine.
// It reports proofs/s and fetches/s (all cores, RunParallel).
func BenchmarkDPoPProofs(b *testing.B) {
	d := idleDaemon(b, 1)
	g := d.grantList()[0]
	g.dpopOn = true
	k, err := oauth.NewDPoPKey()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := k.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	t := *g.cur.Load()
	t.TokenType, t.DPoPKey = "DPoP", string(raw)
	_, p := d.config()
	d.publish(g, &t, p)
	handler := d.apiServer().Handler
	ctx := withPeer(context.Background(), peer{ok: true, uid: d.selfUID, gid: d.selfUID})
	body := []byte(`{"method":"GET","url":"https://api.example/v1/reports?from=2026-11-01"}`)
	run := func(b *testing.B, unit string, req func() *http.Request) {
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				handler.ServeHTTP(w, req().WithContext(ctx))
				if w.Code != http.StatusOK {
					b.Errorf("%d %s", w.Code, w.Body)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
	}
	path := "http://tokend/v1/tokens/" + g.name
	b.Run("fetch", func(b *testing.B) {
		run(b, "fetches/s", func() *http.Request { return httptest.NewRequest(http.MethodGet, path, nil) })
	})
	b.Run("proof", func(b *testing.B) {
		run(b, "proofs/s", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, path+"/dpop", bytes.NewReader(body))
		})
	})
}
