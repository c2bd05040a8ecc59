package daemon

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/metrics"
	"github.com/tokend/tokend/store"
)

func TestFetchMargin(t *testing.T) {
	tok := func(life time.Duration) *store.Token {
		return &store.Token{AccessToken: "a", Obtained: t0, Expiry: t0.Add(life)}
	}
	cases := []struct {
		life, want time.Duration
	}{
		{2 * time.Second, 200 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{10 * time.Second, time.Second},
		{50 * time.Second, 5 * time.Second},
		{time.Hour, 5 * time.Second},
		{0, 0},
	}
	for _, c := range cases {
		if got := fetchMargin(tok(c.life), testPolicy); got != c.want {
			t.Errorf("fetchMargin of a %s token = %s, want %s", c.life, got, c.want)
		}
		// A token just obtained is always served.
		if c.life > 0 && !usable(t0.Add(fetchMargin(tok(c.life), testPolicy)), tok(c.life), testPolicy) {
			t.Errorf("a %s token just obtained is inside its own margin", c.life)
		}
	}
}

func TestMayRefreshOnDemand(t *testing.T) {
	five := &store.Token{AccessToken: "a", Obtained: t0, Expiry: t0.Add(5 * time.Second)}
	hour := &store.Token{AccessToken: "a", Obtained: t0, Expiry: t0.Add(time.Hour)}
	none := &store.Token{}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var never time.Time
	cases := []struct {
		name string
		now  time.Time
		last time.Time
		tok  *store.Token
		fits bool
		want bool
	}{
		{"first half of life: never", at(2 * time.Second), never, five, true, false},
		{"second half, never refreshed on demand", at(3 * time.Second), never, five, true, true},
		{"expired, never refreshed on demand", at(time.Minute), never, five, true, true},
		{"refreshed on demand less than half a lifetime ago", at(6 * time.Second), at(4 * time.Second), five, true, false},
		{"refreshed on demand half a lifetime ago", at(6*time.Second + 500*time.Millisecond), at(4 * time.Second), five, true, true},
		{"wrong kind: the first half does not protect it", at(time.Second), never, five, false, true},
		{"wrong kind: still bounded", at(time.Second), at(0), five, false, false},
		{"long token: the gap is capped at a minute", at(50 * time.Minute), at(49*time.Minute + time.Second), hour, true, false},
		{"long token: a minute later", at(50 * time.Minute), at(49 * time.Minute), hour, true, true},
		{"no token yet", t0, never, none, true, true},
		{"no token yet, a fetch just tried", at(30 * time.Second), t0, none, true, false},
		{"clock stepped back", t0, at(time.Hour), none, true, true},
	}
	for _, c := range cases {
		if got := mayRefreshOnDemand(c.now, c.last, c.tok, c.fits, testPolicy); got != c.want {
			t.Errorf("%s: mayRefreshOnDemand = %v, want %v", c.name, got, c.want)
		}
	}
}

// fetchLoadResult is what one run of fetchLoad saw.
type fetchLoadResult struct {
	requests          int // token requests the provider received
	fetches           int
	started, bounded  float64 // tokend_on_demand_refreshes_total
	refused, expired  int     // fetches answered with an error, or with a token past its expiry
	firstRefusalError string
}

// fetchLoad runs a daemon with one client_credentials grant whose tokens
// live life, refresh schedule sched, for period of fake time in steps of
// step. With readers > 0, after every step that many readers fetch the
// token perReader times each, all at once, over the socket.
func fetchLoad(t *testing.T, life time.Duration, sched string, period, step time.Duration, readers, perReader int) fetchLoadResult {
	t.Helper()
	h := newHarness(t, harnessOpts{
		prov:   devprovider.Options{AccessTTL: life},
		config: func(c *config.Config) { c.Refresh.Schedule = config.MustParseSchedule(sched) },
		noRun:  true,
		step:   step,
	})
	m := metrics.New(metrics.BuildInfo{})
	h.startWith(Options{Metrics: m})
	var res fetchLoadResult
	var mu sync.Mutex
	for elapsed := time.Duration(0); elapsed < period; elapsed += step {
		h.clock.Advance(step)
		time.Sleep(time.Millisecond)
		h.settle()
		now := h.clock.Now()
		var wg sync.WaitGroup
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range perReader {
					code, body := h.get("/v1/tokens/cc")
					var tr api.TokenResponse
					_ = json.Unmarshal(body, &tr)
					mu.Lock()
					res.fetches++
					switch {
					case code != 200:
						if res.refused == 0 {
							res.firstRefusalError = fmt.Sprintf("%d %s", code, body)
						}
						res.refused++
					case !tr.ExpiresAt.After(now):
						res.expired++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		h.settle()
	}
	res.requests = h.prov.Stats().TokenRequests
	od := series(t, m.Gatherer(), "tokend_on_demand_refreshes_total")
	res.started, res.bounded = od["cc started"], od["cc bounded"]
	return res
}

// Readers fetching short-lived tokens continuously cause no more provider
// requests than the refresh schedule alone, and never wait: a 5 s fetch
// margin once made every fetch of a 5 s token a refresh the fetch waited
// for.
func TestFetchLoadShortTokens(t *testing.T) {
	const period = 30 * time.Second
	for _, life := range []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second} {
		t.Run(life.String(), func(t *testing.T) {
			alone := fetchLoad(t, life, "@every 1s", period, 250*time.Millisecond, 0, 0)
			load := fetchLoad(t, life, "@every 1s", period, 250*time.Millisecond, 4, 3)
			t.Logf("%s tokens, %s: %d token requests by the schedule alone, %d with %d fetches (on demand: %v started, %v bounded)",
				life, period, alone.requests, load.requests, load.fetches, load.started, load.bounded)
			if load.refused > 0 || load.expired > 0 {
				t.Fatalf("%d fetches refused (first: %s), %d answered with an expired token", load.refused, load.firstRefusalError, load.expired)
			}
			if load.requests > alone.requests+1 {
				t.Fatalf("%d token requests under fetch load, %d by the schedule alone", load.requests, alone.requests)
			}
			// The schedule keeps the token out of its margin: no fetch
			// even asked for a refresh, so none waited.
			if load.started+load.bounded != 0 {
				t.Fatalf("fetches asked for %v refreshes (%v bounded) of a token the schedule keeps fresh", load.started, load.bounded)
			}
		})
	}
}

// When the schedule does not keep up (a tick every hour), fetches renew
// short-lived tokens themselves, but a grant is refreshed at most about
// once per half lifetime however many fetches arrive, and every fetch is
// answered with a valid token.
func TestFetchLoadBoundsOnDemandRefreshes(t *testing.T) {
	const period = 30 * time.Second
	for _, life := range []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second} {
		t.Run(life.String(), func(t *testing.T) {
			load := fetchLoad(t, life, "@every 1h", period, 100*time.Millisecond, 4, 3)
			// Refreshing at half life would make period/(life/2) requests.
			limit := int(period/(life/2)) + 1
			t.Logf("%s tokens, %s, schedule hourly: %d token requests for %d fetches (on demand: %v started, %v bounded); half-life refreshing makes %d",
				life, period, load.requests, load.fetches, load.started, load.bounded, limit-1)
			if load.requests > limit {
				t.Fatalf("%d token requests, more than %d", load.requests, limit)
			}
			if load.refused > 0 || load.expired > 0 {
				t.Fatalf("%d fetches refused (first: %s), %d answered with an expired token", load.refused, load.firstRefusalError, load.expired)
			}
			if load.started == 0 {
				t.Fatal("no on-demand refresh counted")
			}
		})
	}
}

// A fetch of a token in its last moments answers with it at once and
// leaves one refresh running for the next callers; it never waits for it.
func TestFetchNearExpiryNeverWaits(t *testing.T) {
	h := newHarness(t, harnessOpts{
		prov:   devprovider.Options{AccessTTL: 5 * time.Second},
		config: func(c *config.Config) { c.Refresh.Schedule = config.MustParseSchedule("@every 1h") },
	})
	first := h.token("cc")
	// 4.6 s into a 5 s life: inside the 0.5 s margin, still valid.
	h.clock.Advance(4600 * time.Millisecond)
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultSlow, Delay: time.Hour, Times: 1})
	for i := range 20 {
		done := make(chan api.TokenResponse, 1)
		go func() { done <- h.token("cc") }()
		select {
		case got := <-done:
			if got.AccessToken != first.AccessToken {
				t.Fatalf("fetch %d: not the still-valid token", i)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("fetch %d of a still-valid token waited for its refresh", i)
		}
	}
	waitFor(t, "the refresh the first fetch started", func() bool { return h.prov.Stats().Faulted == 1 })
	if n := h.prov.Stats().TokenRequests; n != 2 {
		t.Fatalf("%d token requests, want the first and one refresh", n)
	}
}
