// Command bench runs tokend's benchmark suite on loopback and unix sockets
// and writes the results table to BENCHMARKS.md (`make bench`).
//
// Every figure that matters is a ratio against a baseline measured in the
// same run: fetch throughput against a bare net/http server, fetch latency
// during a refresh storm against tokend idle and against lazy refresh with
// oauth2.ReuseTokenSource. Refresh throughput and the scale figures are
// checked against absolute targets. See BENCHMARKS.md for the method.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"
)

// analysisMarker starts the hand-written part of BENCHMARKS.md, which a
// run keeps.
const analysisMarker = "<!-- analysis: written by hand, kept by make bench -->"

func main() {
	out := flag.String("out", "BENCHMARKS.md", "file to write the results to; empty: print only")
	goCmd := flag.String("go", "go", "go command, to run the daemon's tick benchmark")
	only := flag.String("only", "fetch,storm,refresh,scale,dpop,fetch-load,fleet-fetch,fleet-refresh,fleet-isolated,fleet-scale,failover,proxy", "benchmarks to run, comma-separated")
	sizes := flag.String("sizes", "1000,10000,100000", "grant counts of the scale benchmark")
	child := flag.Int("scale-child", 0, "internal: measure a daemon of this many grants and print JSON")
	dir := flag.String("dir", "", "internal: the child's directory")
	fromYAML := flag.Bool("scale-yaml", false, "internal: the child parses its configuration from YAML")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (not the children) to this file")
	flag.BoolVar(&expNoSync, "exp-nosync", false, "experiment: open the daemon's store with NoSync (not a valid measurement)")
	flag.BoolVar(&expPool, "exp-pool", false, "experiment: give the daemon an HTTP client keeping refresh.concurrency idle connections")
	flag.BoolVar(&expNoMet, "exp-nometrics", false, "experiment: run the daemon without Prometheus metrics (not a valid measurement)")
	memprofile := flag.String("memprofile", "", "internal: the scale child's heap profile")
	flag.StringVar(&childProfile, "child-profile", "", "write start-up CPU and heap profiles of each scale child to PREFIX.N.cpu/.heap")
	flag.Parse()

	if *cpuprofile != "" && *child == 0 {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}

	if *child > 0 {
		if err := scaleChild(*dir, *child, *fromYAML, *cpuprofile, *memprofile); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(*out, *goCmd, *only, *sizes); err != nil {
		fmt.Fprintln(os.Stderr, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// prerequisites are the checks of what steps need beyond Go, by step.
var prerequisites = map[string]func() error{
	"failover": failoverReady,
}

func run(out, goCmd, only, sizeList string) error {
	var sizes []int
	for _, s := range strings.Split(sizeList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("bench: -sizes: %q", s)
		}
		sizes = append(sizes, n)
	}
	tmp, err := os.MkdirTemp("", "tokend-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rep := &report{started: time.Now(), command: strings.Join(os.Args, " ")}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"fetch", func() error { return benchFetch(rep, tmp) }},
		{"storm", func() error { return benchStorm(rep, tmp) }},
		{"refresh", func() error { return benchRefresh(rep, tmp) }},
		{"scale", func() error { return benchScale(rep, tmp, goCmd, sizes) }},
		{"dpop", func() error { return benchDPoP(rep, goCmd) }},
		{"fetch-load", func() error { return benchFetchLoad(rep, tmp) }},
		{"fleet-fetch", func() error { return benchFleet(rep, tmp, benchFleetFetch) }},
		{"fleet-refresh", func() error { return benchFleet(rep, tmp, benchFleetRefresh) }},
		{"fleet-isolated", func() error { return benchFleet(rep, tmp, benchFleetIsolated) }},
		{"fleet-scale", func() error { return benchFleet(rep, tmp, benchFleetScale) }},
		{"failover", func() error { return benchFailover(rep, tmp, goCmd) }},
		{"proxy", func() error { return benchProxy(rep, tmp) }},
	}
	selected := func(name string) bool { return strings.Contains(","+only+",", ","+name+",") }
	// What a step needs beyond Go is checked before anything runs: a step
	// that lacks it says so now, is reported as failed, and the others
	// still run and report.
	missing := map[string]error{}
	for name, check := range prerequisites {
		if !selected(name) {
			continue
		}
		if err := check(); err != nil {
			missing[name] = err
			fmt.Fprintf(os.Stderr, "bench: %s will not run: %v\n", name, err)
		}
	}
	for _, s := range steps {
		if !selected(s.name) {
			continue
		}
		if err := missing[s.name]; err != nil {
			rep.errs = append(rep.errs, fmt.Sprintf("%s: not run: %v", s.name, err))
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", s.name)
		t := time.Now()
		if err := s.fn(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", s.name, err)
			rep.errs = append(rep.errs, fmt.Sprintf("%s: %v", s.name, err))
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", s.name, time.Since(t).Round(time.Millisecond))
	}
	closeFleet()
	md := rep.markdown()
	fmt.Print(md)
	if out != "" {
		if old, err := os.ReadFile(out); err == nil {
			if _, kept, ok := strings.Cut(string(old), analysisMarker); ok {
				md += "\n" + analysisMarker + kept
			}
		}
		if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if len(rep.errs) > 0 {
		return fmt.Errorf("bench: %d benchmark(s) failed", len(rep.errs))
	}
	return nil
}
