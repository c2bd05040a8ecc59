package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is what one load run measured.
type loadResult struct {
	lat     []time.Duration // every successful request, sorted
	elapsed time.Duration
	errs    int
	first   error
}

func (r loadResult) n() int { return len(r.lat) }

// rps is requests completed per second of wall time.
func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.lat)) / r.elapsed.Seconds()
}

// pct returns the p-th percentile (0 < p ≤ 100), nearest rank.
func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p/100+0.5) - 1
	i = max(0, min(i, len(r.lat)-1))
	return r.lat[i]
}

// merge pools the samples and times of several runs.
func merge(rs ...loadResult) loadResult {
	var m loadResult
	for _, r := range rs {
		m.lat = append(m.lat, r.lat...)
		m.elapsed += r.elapsed
		m.errs += r.errs
		if m.first == nil {
			m.first = r.first
		}
	}
	slices.Sort(m.lat)
	return m
}

// alternateRounds runs rounds of runLoad on the socket a and then on b, in
// turn, so that a slow moment of the machine falls on both, and returns
// each one's results.
func alternateRounds(rounds int, a, b string, clients, perClient int, limit time.Duration, path func(c, i int) string) (ra, rb []loadResult) {
	for range rounds {
		ra = append(ra, runLoad(a, clients, perClient, limit, path))
		rb = append(rb, runLoad(b, clients, perClient, limit, path))
	}
	return ra, rb
}

// runLoad runs clients goroutines, each with its own keep-alive client
// over the unix socket at sock, each doing perClient GETs of path(c, i)
// unless limit passes first. Only 200 answers with a body count.
func runLoad(sock string, clients, perClient int, limit time.Duration, path func(c, i int) string) loadResult {
	return runLoadOn(func() *http.Client { return unixClient(sock) }, "http://tokend", clients, perClient, limit, path)
}

// runLoadOn is runLoad with clients from newClient, GETting base+path.
func runLoadOn(newClient func() *http.Client, base string, clients, perClient int, limit time.Duration, path func(c, i int) string) loadResult {
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	hcs := make([]*http.Client, clients)
	for c := range hcs {
		hcs[c] = newClient()
	}
	start := time.Now()
	deadline := start.Add(limit)
	for c := range clients {
		wg.Go(func() {
			hc := hcs[c]
			lat := make([]time.Duration, 0, min(perClient, 1<<16))
			errs := 0
			var first error
			for i := 0; i < perClient && time.Now().Before(deadline); i++ {
				t := time.Now()
				err := get(hc, base+path(c, i))
				d := time.Since(t)
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if res.first == nil {
				res.first = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, hc := range hcs {
		hc.CloseIdleConnections()
	}
	slices.Sort(res.lat)
	return res
}

func get(hc *http.Client, url string) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || n == 0 {
		return fmt.Errorf("GET %s: status %d, %d bytes", url, resp.StatusCode, n)
	}
	return nil
}
