package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

const (
	// fetchLoadTTL is the lifetime of the provider's tokens in the
	// fetch-load benchmark: short enough that a fixed 5 s fetch margin once
	// turned every fetch into a refresh.
	fetchLoadTTL     = 5 * time.Second
	fetchLoadGrants  = 8
	fetchLoadReaders = 8
	fetchLoadWindow  = 15 * time.Second
)

// benchFetchLoad is benchmark 6: provider requests per grant per token
// lifetime with 5 s tokens, for a window of the schedule alone and then
// a window of readers fetching every grant as fast as they can. With a
// schedule that keeps up (every 1 s) the readers add nothing; with the
// default one (every 15 s, so tokens expire between ticks) fetches renew
// the tokens themselves, at most once per half lifetime per grant.
func benchFetchLoad(rep *report, dir string) error {
	for _, sched := range []string{"@every 1s", "@every 15s"} {
		alone, loaded, fetches, err := fetchLoadRun(filepath.Join(dir, "fetch-load-"+sched[len("@every "):]), sched)
		if err != nil {
			return err
		}
		sec := "6. Fetch load, 5 s tokens"
		metric := fmt.Sprintf("provider requests per grant per lifetime, schedule %s", sched)
		perLife := func(reqs int) float64 {
			return float64(reqs) / fetchLoadGrants / (float64(fetchLoadWindow) / float64(fetchLoadTTL))
		}
		if sched == "@every 1s" {
			ratio := perLife(loaded) / perLife(alone)
			rep.add(row{sec, metric, fmt.Sprintf("%.2f", perLife(loaded)), fmt.Sprintf("%.2f (no fetches)", perLife(alone)), fmtRatio(ratio), "≤ 1.25×", met(ratio <= 1.25)})
		} else {
			v := perLife(loaded)
			rep.add(row{sec, metric, fmt.Sprintf("%.2f", v), fmt.Sprintf("%.2f (no fetches)", perLife(alone)), "", "≤ 2 (half-life refreshing)", met(v <= 2)})
		}
		rep.notef("Fetch load, schedule %s: %d client_credentials grants with %s tokens; token requests the provider received in %s of the schedule alone (%d), then in %s while %d keep-alive readers fetched the grants in turn as fast as they could (%d, with %d fetches, every one answered 200).",
			sched, fetchLoadGrants, fetchLoadTTL, fetchLoadWindow, alone, fetchLoadWindow, fetchLoadReaders, loaded, fetches)
	}
	return nil
}

// fetchLoadRun runs one daemon with schedule sched and returns the token
// requests of a window without fetches and of one under fetch load.
func fetchLoadRun(dir, sched string) (alone, loaded, fetches int, err error) {
	prov := devprovider.New(devprovider.Options{
		AccessTTL: fetchLoadTTL,
		Clients:   []devprovider.Client{{ID: clientID, Secret: clientSecret, AuthMethod: devprovider.AuthMethodBasic}},
	})
	defer prov.Close()
	cfg, err := benchConfig(dir, newKey(), prov.URL(), fetchLoadGrants, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	cfg.Refresh.Schedule = config.MustParseSchedule(sched)
	r, err := startServing(cfg, fetchLoadGrants)
	if err != nil {
		return 0, 0, 0, err
	}
	defer r.stop()
	// The grants were obtained together and refresh together, every 3 s
	// with a 1 s schedule: windows that start between two refreshes never
	// end on one, where a refresh would fall in either window by chance.
	time.Sleep(fetchLoadTTL * 3 / 10)
	before := prov.Stats().TokenRequests
	time.Sleep(fetchLoadWindow)
	mid := prov.Stats().TokenRequests
	res := runLoad(cfg.Listen.Socket, fetchLoadReaders, 1<<30, fetchLoadWindow, func(c, i int) string {
		return "/v1/tokens/" + grantName((c+i)%fetchLoadGrants)
	})
	end := prov.Stats().TokenRequests
	if res.errs > 0 {
		return 0, 0, 0, errors.Join(fmt.Errorf("bench: fetch-load: %d of %d fetches failed", res.errs, res.errs+res.n()), res.first)
	}
	return mid - before, end - mid, res.n(), nil
}
