package main

import (
	"cmp"
	"fmt"
	"path/filepath"
	"syscall"
	"time"
)

const refreshGrants = 10000

// refreshRounds is how many times the refresh throughput at concurrency 64
// (the figure with a target) is measured; the default concurrency is
// measured once, for context.
const refreshRounds = 3

// benchRefresh is benchmark 3: refreshes per second with 10,000 grants all
// due at once (none holds a token at start, so all are "missing" at the
// first tick), a provider with no latency, fsync on. A refresh counts when
// the daemon reports it, which is after its token is durable.
func benchRefresh(rep *report, dir string) error {
	for _, conc := range []int{64, 8} {
		rounds := 1
		if conc == 64 {
			rounds = refreshRounds
		}
		var rates []float64
		var took []time.Duration
		var cpus []time.Duration
		var reqs int64
		for i := range rounds {
			d, cpu, n, err := refreshRound(filepath.Join(dir, fmt.Sprintf("refresh-%d-%d", conc, i)), conc)
			if err != nil {
				return err
			}
			rates = append(rates, refreshGrants/d.Seconds())
			took = append(took, d.Round(time.Millisecond))
			cpus = append(cpus, cpu/refreshGrants)
			reqs += n
		}
		sec := "3. Refresh throughput"
		rate := median(rates, cmp.Compare)
		if conc == 64 {
			rep.add(row{sec, fmt.Sprintf("refreshes/s, concurrency %d, median of %d rounds", conc, rounds), fmtRate(rate), "", "", "≥ 5000/s", met(rate >= 5000)})
			rep.add(row{sec, fmt.Sprintf("refreshes/s, concurrency %d, min / median / max", conc), spread(rates, cmp.Compare, fmtRate), "", "", "", nil})
			rep.add(row{sec, fmt.Sprintf("CPU per refresh, concurrency %d, min / median / max", conc), spread(cpus, cmp.Compare, fmtDur), "", "", "", nil})
		} else {
			rep.add(row{sec, fmt.Sprintf("refreshes/s, concurrency %d (default)", conc), fmtRate(rate), "", "", "", nil})
		}
		rep.notef("Refresh throughput, refresh.concurrency %d: %d round(s), each a fresh daemon with %d grants with no stored token, all due at the first tick; %v from Started() until the daemon had reported %d successful refreshes (each after PutToken returned, fsync on, bbolt Batch); the provider saw %d token requests in all.",
			conc, rounds, refreshGrants, took, refreshGrants, reqs)
	}
	return nil
}

// refreshRound starts a daemon of refreshGrants grants without tokens at
// concurrency conc and times their first refreshes; it returns the time,
// the CPU time the process spent meanwhile (user+system: the daemon and
// the in-process provider; unlike the time, it hardly moves when other
// processes share the cores) and the token requests the provider saw.
func refreshRound(dir string, conc int) (time.Duration, time.Duration, int64, error) {
	prov := newProvider()
	defer prov.Close()
	cfg, err := benchConfig(dir, newKey(), prov.URL(), refreshGrants, conc)
	if err != nil {
		return 0, 0, 0, err
	}
	r, err := startDaemon(cfg, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	cpu0 := processCPU()
	took, werr := r.waitRefreshed(refreshGrants, 3*time.Minute)
	cpu := processCPU() - cpu0
	serr := r.stop()
	if werr != nil {
		return 0, 0, 0, werr
	}
	if serr != nil {
		return 0, 0, 0, serr
	}
	return took, cpu, int64(prov.Stats().TokenRequests), nil
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
