package store

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPutTokenParallel measures refreshes written per second (a token
// and an attempt each, fsync on) with 8 to 64 concurrent writers, the
// daemon's refresh concurrency range. The requirement is at least 2000/s.
func BenchmarkPutTokenParallel(b *testing.B) {
	for _, conc := range []int{1, 8, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s := MustOpen(b, Options{Key: newKey(b)})
			now := time.Now()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range conc {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						t := Token{
							Grant:        fmt.Sprintf("grant-%d", i%1000),
							AccessToken:  "access-token-0123456789abcdefghijklmnopqrstuvwxyz",
							RefreshToken: "refresh-token-0123456789abcdefghijklmnopqrstuvwxyz",
							TokenType:    "Bearer",
							Obtained:     now,
							Expiry:       now.Add(time.Hour),
							Generation:   uint64(i),
							State:        "valid",
						}
						if err := s.PutToken(t, &Attempt{At: now, Result: "success", Latency: 40 * time.Millisecond, Reason: "due"}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}
