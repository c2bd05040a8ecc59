package main

import (
	"fmt"
	"path/filepath"
	"time"
)

const refreshGrants = 10000

// benchRefresh is benchmark 3: refreshes per second with 10,000 grants all
// due at once (none holds a token at start, so all are "missing" at the
// first tick), a provider with no latency, fsync on. A refresh counts when
// the daemon reports it, which is after its token is durable.
func benchRefresh(rep *report, dir string) error {
	for _, conc := range []int{64, 8} {
		prov := newProvider()
		cfg, err := benchConfig(filepath.Join(dir, fmt.Sprintf("refresh-%d", conc)), newKey(), prov.URL(), refreshGrants, conc)
		if err != nil {
			prov.Close()
			return err
		}
		r, err := startDaemon(cfg, nil)
		if err != nil {
			prov.Close()
			return err
		}
		took, werr := r.waitRefreshed(refreshGrants, 3*time.Minute)
		serr := r.stop()
		reqs := prov.Stats().TokenRequests
		prov.Close()
		if werr != nil {
			return werr
		}
		if serr != nil {
			return serr
		}
		rate := refreshGrants / took.Seconds()
		sec := "3. Refresh throughput"
		if conc == 64 {
			rep.add(row{sec, fmt.Sprintf("refreshes/s, concurrency %d", conc), fmtRate(rate), "", "", "≥ 2000/s", met(rate >= 2000)})
		} else {
			rep.add(row{sec, fmt.Sprintf("refreshes/s, concurrency %d (default)", conc), fmtRate(rate), "", "", "", nil})
		}
		rep.notef("Refresh throughput, refresh.concurrency %d: %d grants with no stored token, all due at the first tick; %s from Started() until the daemon had reported %d successful refreshes (each after PutToken returned, fsync on, bbolt Batch); the provider saw %d token requests.",
			conc, refreshGrants, took.Round(time.Millisecond), refreshGrants, reqs)
	}
	return nil
}
