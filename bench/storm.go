package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokend/tokend/api"
)

const (
	stormGrants   = 1000
	stormLatency  = 200 * time.Millisecond
	stormClients  = 16
	stormRequests = 1000 // per client, baseline
	stormWindow   = 3 * time.Second
)

// stormPaths gives each client a fixed pseudo-random sequence of grants,
// the same for tokend and the baseline.
func stormPaths(c, i int) string {
	r := rand.New(rand.NewPCG(uint64(c), uint64(i)))
	return "/v1/tokens/" + grantName(r.IntN(stormGrants))
}

// benchStorm is benchmark 2: fetch latency of valid tokens while 1,000
// grants refresh against a 200 ms provider, against tokend idle and
// against a server that refreshes lazily on the request path with an
// oauth2.ReuseTokenSource per grant.
func benchStorm(rep *report, dir string) error {
	prov := newProvider()
	defer prov.Close()
	clock := newShiftClock()
	cfg, err := benchConfig(filepath.Join(dir, "storm"), newKey(), prov.URL(), stormGrants, 0)
	if err != nil {
		return err
	}
	r, err := startDaemon(cfg, clock)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			r.stop()
		}
	}()
	// Every grant gets its first token (latency 0), then the daemon idles.
	if _, err := r.waitRefreshed(stormGrants, 2*time.Minute); err != nil {
		return err
	}
	sock := cfg.Listen.Socket
	runLoad(sock, stormClients, stormRequests/4, time.Minute, stormPaths) // warm-up
	idle := runLoad(sock, stormClients, 1<<30, stormWindow, stormPaths)

	// The storm: every token passes its refresh point (45 min ± 3 of a 1 h
	// lifetime) but stays valid for 10 more minutes; the provider now
	// takes 200 ms per request.
	prov.SetLatency(stormLatency)
	base := r.m.ok.Load()
	reqBase := prov.Stats().TokenRequests
	clock.Shift(50 * time.Minute)
	for prov.Stats().TokenRequests-reqBase < cfg.Refresh.Concurrency {
		time.Sleep(time.Millisecond)
	}
	doneBefore := r.m.ok.Load() - base
	storm := runLoad(sock, stormClients, 1<<30, stormWindow, stormPaths)
	doneAfter := r.m.ok.Load() - base
	stillRefreshing := doneAfter < stormGrants
	stopped = true
	if err := r.stop(); err != nil {
		return err
	}
	if idle.errs > 0 || storm.errs > 0 {
		return errors.Join(fmt.Errorf("bench: storm: %d idle and %d storm errors", idle.errs, storm.errs), idle.first, storm.first)
	}
	if !stillRefreshing {
		return fmt.Errorf("bench: storm: the refresh storm ended (%d done) before the measurement did", doneAfter)
	}

	// Baseline: the same requests, answered by a handler that asks a
	// ReuseTokenSource per grant, each holding an expired token.
	lazy, err := startBare(filepath.Join(dir, "storm"), lazyHandler(prov.URL()+"/token"))
	if err != nil {
		return err
	}
	defer lazy.close()
	bl := runLoad(lazy.sock, stormClients, stormRequests, 2*time.Minute, stormPaths)
	if bl.errs > 0 {
		return errors.Join(fmt.Errorf("bench: storm baseline: %d errors", bl.errs), bl.first)
	}

	sec := "2. Readers never wait"
	idleR := float64(storm.pct(99)) / float64(idle.pct(99))
	rep.add(row{sec, "fetch p99 during storm vs idle", fmtDur(storm.pct(99)), fmtDur(idle.pct(99)) + " (idle)", fmtRatio(idleR), "≤ 2×", met(idleR <= 2)})
	blR := float64(storm.pct(99)) / float64(bl.pct(99))
	rep.add(row{sec, "fetch p99 during storm vs lazy ReuseTokenSource", fmtDur(storm.pct(99)), fmtDur(bl.pct(99)), fmtRatio(blR), "≤ 0.10×", met(blR <= 0.1)})
	rep.add(row{sec, "fetch p50 during storm", fmtDur(storm.pct(50)), fmtDur(bl.pct(50)), fmtRatio(float64(storm.pct(50)) / float64(bl.pct(50))), "", nil})
	rep.add(row{sec, "fetch max during storm", fmtDur(storm.lat[len(storm.lat)-1]), fmtDur(bl.lat[len(bl.lat)-1]), "", "", nil})
	rep.notef("Readers never wait: %d grants, default refresh.concurrency (%d). After every grant held a token, %d keep-alive clients doing GETs of pseudo-random grants (the same sequence everywhere) for %s measured idle (%d requests); then the provider's latency was set to %s and the clock moved 50 min, past every token's refresh point but 10 min before expiry, and the same load ran for %s during the storm (%d requests; %d of %d refreshes done when it started, %d when it ended: the storm covered the whole measurement). Baseline: a bare net/http unix-socket server whose handler calls a golang.org/x/oauth2 ReuseTokenSource per grant (clientcredentials, holding an expired token), the same provider and latency, the first %d requests of each client's sequence; %d of its %d requests waited ≥ %s for a refresh.",
		stormGrants, cfg.Refresh.Concurrency, stormClients, stormWindow, idle.n(), stormLatency, stormWindow, storm.n(), doneBefore, stormGrants, doneAfter, stormRequests, slowCount(bl, stormLatency), bl.n(), stormLatency)
	return nil
}

func slowCount(r loadResult, over time.Duration) int {
	n := 0
	for _, d := range r.lat {
		if d >= over {
			n++
		}
	}
	return n
}

// lazyHandler is what applications do today: refresh on the request path.
func lazyHandler(tokenURL string) http.Handler {
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
	cc := &clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL, Scopes: []string{"read"}, AuthStyle: oauth2.AuthStyleInHeader}
	sources := make(map[string]oauth2.TokenSource, stormGrants)
	expired := time.Now().Add(-time.Minute)
	for i := range stormGrants {
		sources[grantName(i)] = oauth2.ReuseTokenSource(&oauth2.Token{AccessToken: "expired", TokenType: "Bearer", Expiry: expired}, cc.TokenSource(ctx))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tokens/{name}", func(w http.ResponseWriter, r *http.Request) {
		ts, ok := sources[r.PathValue("name")]
		if !ok {
			http.Error(w, "unknown grant", http.StatusNotFound)
			return
		}
		t, err := ts.Token()
		if err != nil {
			http.Error(w, "refresh failed", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(api.TokenResponse{
			AccessToken: t.AccessToken, TokenType: t.TokenType,
			ExpiresIn: int64(time.Until(t.Expiry) / time.Second), ExpiresAt: t.Expiry.UTC(), Scope: "read",
		})
	})
	return mux
}
