package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// scaleResult is what a child process measured for one size.
type scaleResult struct {
	Grants    int   `json:"grants"`
	StartupNS int64 `json:"startup_ns"`
	RSS       int64 `json:"rss"`      // VmRSS after start and the first tick
	PeakRSS   int64 `json:"peak_rss"` // VmHWM
	BaseRSS   int64 `json:"base_rss"` // VmRSS before daemon.New (runtime, provider, configuration)
	RSSAnon   int64 `json:"rss_anon"` // of RSS: anonymous memory (Go heap, stacks)
	RSSFile   int64 `json:"rss_file"` // of RSS: file pages (the store's mmap, the binary)
	HeapInuse int64 `json:"heap_inuse"`
	Refreshes int64 `json:"refreshes"`
	ParseNS   int64 `json:"parse_ns"` // config.Parse of the YAML text (-scale-yaml)
	// Peak is where VmHWM was reached: the start-up phase and what the
	// RSS was made of then (sampled every few milliseconds).
	Peak peakSample `json:"peak"`
	// PhaseHWM is VmHWM at the end of each start-up phase, in order.
	PhaseHWM []phaseHWM `json:"phase_hwm"`
}

// peakSample is one reading of the process's memory during start-up.
type peakSample struct {
	Phase    string `json:"phase"`
	RSS      int64  `json:"rss"`
	Anon     int64  `json:"anon"`
	File     int64  `json:"file"`
	HeapGoal int64  `json:"heap_goal"` // the GC's heap goal then
}

type phaseHWM struct {
	Phase string `json:"phase"`
	HWM   int64  `json:"hwm"`
}

const keyEnv = "TOKEND_BENCH_KEY"

// childProfile, when set (-child-profile), makes each scale child write
// CPU (start-up) and heap profiles to childProfile.N.cpu and .heap.
var childProfile string

// seedStore writes n fresh tokens (valid for an hour) straight into a new
// sealed store. It is set-up, not measured, so the store is opened with
// NoSync; the daemon later opens it normally.
func seedStore(path string, key []byte, n int) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	st, err := store.Open(store.Options{Path: path, Key: key, NoSync: true})
	if err != nil {
		return err
	}
	err = seedGrants(n, func(t store.Token, a store.Attempt) error { return st.PutToken(t, &a) })
	return errors.Join(err, st.Close())
}

// seedGrants calls put, from 64 goroutines, with one fresh token (valid
// for accessTTL) and one history entry for each of n grants, and returns
// the first error.
func seedGrants(n int, put func(store.Token, store.Attempt) error) error {
	now := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := store.Token{
					Grant: grantName(i), AccessToken: "at_" + strconv.Itoa(i) + "_0123456789ABCDEFGHIJKLMNOPQRSTUV", TokenType: "Bearer",
					Scope: "read", Obtained: now, Expiry: now.Add(accessTTL), Generation: 1, State: api.StateValid,
					StateSince: now, LastSuccess: now, LastAttempt: now,
				}
				a := store.Attempt{At: now, Result: "success", Latency: 40 * time.Millisecond, Reason: "missing"}
				if err := put(t, a); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// scaleChild runs in a fresh process: it starts the daemon over a seeded
// store of n grants and prints what it measured as JSON.
func scaleChild(dir string, n int, fromYAML bool, cpuprofile, memprofile string) error {
	key, err := hex.DecodeString(os.Getenv(keyEnv))
	if err != nil || len(key) != 32 {
		return errors.New("bench: child: no key")
	}
	mem := startSampler("configuration")
	prov := newProvider()
	defer prov.Close()
	var cfg *config.Config
	var parseNS int64
	if fromYAML {
		// As `tokend serve` reads its file: the text, then config.Parse
		// (Load is Parse and the secrets' files; the secrets are set
		// here, as Load would resolve them).
		text := benchYAML(dir, prov.URL(), n)
		begin := time.Now()
		c, _, err := config.Parse(text, filepath.Join(dir, "config.yaml"))
		if err != nil {
			return err
		}
		parseNS = time.Since(begin).Nanoseconds()
		c.Store.Key = key
		cl := c.Clients["app"]
		cl.Secret = oauth.NewSecret(clientSecret)
		c.Clients["app"] = cl
		cfg = c
	} else {
		cfg, err = benchConfig(dir, key, prov.URL(), n, 0)
		if err != nil {
			return err
		}
	}
	res := scaleResult{Grants: n, BaseRSS: procStatus("VmRSS"), ParseNS: parseNS}
	mem.enter("daemon.New")
	// The store is opened as the daemon opens it (daemon.openStore), with
	// the phase marked around it: what follows the open, until Started,
	// is the load of every token.
	open := func(c config.Store, log *slog.Logger) (daemon.Store, error) {
		mem.enter("store open")
		st, err := store.Open(store.Options{Path: c.Path, Key: c.Key, Logger: log})
		mem.enter("token load")
		return st, err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	r, err := startDaemonWith(cfg, nil, open)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	mem.enter("after start")
	res.StartupNS = r.startup.Nanoseconds()
	// The first tick runs right after start; give it and the listeners
	// time to settle, then read what the kernel says the process holds.
	time.Sleep(3 * time.Second)
	res.Peak, res.PhaseHWM = mem.finish()
	res.RSS = procStatus("VmRSS")
	res.PeakRSS = procStatus("VmHWM")
	if memprofile != "" {
		f, err := os.Create(memprofile)
		if err != nil {
			return err
		}
		runtime.GC()
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	res.RSSAnon = procStatus("RssAnon")
	res.RSSFile = procStatus("RssFile")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuse = int64(ms.HeapInuse)
	res.Refreshes = r.m.ok.Load()
	if err := r.stop(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// scaleRounds is how many children measure the largest size.
const scaleRounds = 3

// runScaleChild measures one daemon of n grants over the store in d in a
// fresh process, its configuration built in code or (fromYAML) parsed.
func runScaleChild(self, d string, key []byte, n, round int, fromYAML bool) (scaleResult, error) {
	args := []string{"-scale-child", strconv.Itoa(n), "-dir", d}
	if fromYAML {
		args = append(args, "-scale-yaml")
	}
	if expNoMet {
		args = append(args, "-exp-nometrics")
	}
	if childProfile != "" && round == 0 {
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%d.cpu", childProfile, n), "-memprofile", fmt.Sprintf("%s.%d.heap", childProfile, n))
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), keyEnv+"="+hex.EncodeToString(key))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return scaleResult{}, fmt.Errorf("bench: scale child %d: %w", n, err)
	}
	var sr scaleResult
	if err := json.Unmarshal(out, &sr); err != nil {
		return scaleResult{}, fmt.Errorf("bench: scale child %d: %w: %q", n, err, out)
	}
	if sr.Refreshes != 0 {
		return scaleResult{}, fmt.Errorf("bench: scale child %d: %d refreshes at start; the seeded tokens should not be due", n, sr.Refreshes)
	}
	return sr, nil
}

// medianStartup returns the round of median start-up.
func medianStartup(rs []scaleResult) scaleResult {
	return median(rs, func(a, b scaleResult) int { return cmp.Compare(a.StartupNS, b.StartupNS) })
}

func maxOf(rs []scaleResult, f func(scaleResult) int64) int64 {
	var m int64
	for _, r := range rs {
		m = max(m, f(r))
	}
	return m
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type tickResult struct{ wallNS, cpuNS, bytes float64 }

var tickLine = regexp.MustCompile(`^BenchmarkIdleTick/grants=(\d+)(/nostore)?-\d+\s+\d+\s+([\d.]+) ns/op\s+([\d.]+) cpu-ns/op\s+([\d.]+) B/op`)

// tickRounds is how many times runTickBench runs each size. One round of
// 2,000 ticks at 10,000 grants is about 20 ms of CPU, short enough for a
// stray GC or another process to move it by a quarter; the median of three
// rounds keeps the growth row about the code.
const tickRounds = 3

// runTickBench runs the daemon's BenchmarkIdleTick with go test and
// returns the figures by size, each the round of median CPU per tick
// (store included, and without it).
func runTickBench(goCmd string) (map[int]tickResult, map[int]tickResult, string, error) {
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkIdleTick$", "-benchtime", "2000x", "-count", strconv.Itoa(tickRounds), "./daemon/"}
	cmd := exec.Command(goCmd, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	line := goCmd + " " + strings.Join(args, " ")
	if err != nil {
		return nil, nil, line, fmt.Errorf("bench: %s: %w\n%s", line, err, out.String())
	}
	withAll, withoutAll := map[int][]tickResult{}, map[int][]tickResult{}
	for _, l := range strings.Split(out.String(), "\n") {
		m := tickLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		var tr tickResult
		tr.wallNS, _ = strconv.ParseFloat(m[3], 64)
		tr.cpuNS, _ = strconv.ParseFloat(m[4], 64)
		tr.bytes, _ = strconv.ParseFloat(m[5], 64)
		if m[2] == "" {
			withAll[n] = append(withAll[n], tr)
		} else {
			withoutAll[n] = append(withoutAll[n], tr)
		}
	}
	if len(withAll) == 0 {
		return nil, nil, line, fmt.Errorf("bench: no BenchmarkIdleTick results in:\n%s", out.String())
	}
	return medianTicks(withAll), medianTicks(withoutAll), line, nil
}

// medianTicks picks, for each size, the round of median CPU per tick.
func medianTicks(rounds map[int][]tickResult) map[int]tickResult {
	med := make(map[int]tickResult, len(rounds))
	for n, rs := range rounds {
		slices.SortFunc(rs, func(a, b tickResult) int { return cmp.Compare(a.cpuNS, b.cpuNS) })
		med[n] = rs[len(rs)/2]
	}
	return med
}

// benchScale is benchmark 4: store size, RSS and start-up time of a
// daemon in a fresh process per size, and the idle tick from go test.
func benchScale(rep *report, dir, goCmd string, sizes []int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	res := map[int]scaleResult{}     // the round of median start-up
	all := map[int][]scaleResult{}   // every round
	yamlRun := map[int]scaleResult{} // the configuration parsed from YAML
	sizeOf := map[int]int64{}
	for _, n := range sizes {
		d := filepath.Join(dir, fmt.Sprintf("scale-%d", n))
		key := newKey()
		path := filepath.Join(d, "tokend.db")
		t := time.Now()
		if err := seedStore(path, key, n); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  seeded %d tokens in %s\n", n, time.Since(t).Round(time.Millisecond))
		rounds := 1
		if n == sizes[len(sizes)-1] {
			rounds = scaleRounds
		}
		for round := range rounds {
			sr, err := runScaleChild(self, d, key, n, round, false)
			if err != nil {
				return err
			}
			all[n] = append(all[n], sr)
		}
		res[n] = medianStartup(all[n])
		if rounds > 1 {
			// Once more as `tokend serve` starts: the configuration parsed
			// from YAML, whose tree is the largest thing a start holds.
			sr, err := runScaleChild(self, d, key, n, 0, true)
			if err != nil {
				return err
			}
			yamlRun[n] = sr
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		sizeOf[n] = fi.Size()
		os.RemoveAll(d)
	}
	ticks, bare, tickCmd, err := runTickBench(goCmd)
	if err != nil {
		return err
	}
	largest := sizes[len(sizes)-1]
	for _, n := range sizes {
		sr := res[n]
		sec := fmt.Sprintf("4. Scale, %d grants", n)
		big := n == largest && n == 100000
		target := func(s string, ok bool) (string, *bool) {
			if !big {
				return "", nil
			}
			return s, met(ok)
		}
		rounds := all[n]
		rep.add(row{sec, "store size", fmtBytes(sizeOf[n]), "", "", "", nil})
		startup := time.Duration(sr.StartupNS)
		ts, tm := target("< 1.5 s", startup < 1500*time.Millisecond)
		rep.add(row{sec, fmt.Sprintf("start-up (New → Started), median of %d", len(rounds)), fmtDur(startup), "", "", ts, tm})
		steady := maxOf(rounds, func(r scaleResult) int64 { return r.RSS })
		rs, rm := target("< 256 MiB", steady < 256<<20)
		rep.add(row{sec, fmt.Sprintf("RSS after start, highest of %d", len(rounds)), fmtBytes(steady), fmtBytes(sr.BaseRSS) + " before New", "", rs, rm})
		peak := maxOf(rounds, func(r scaleResult) int64 { return r.PeakRSS })
		ps, pm := target("< 300 MiB", peak < 300<<20)
		rep.add(row{sec, fmt.Sprintf("peak RSS (VmHWM), highest of %d", len(rounds)), fmtBytes(peak), "", "", ps, pm})
		if len(rounds) > 1 {
			by := func(f func(scaleResult) int64, format func(int64) string) string {
				v := make([]int64, len(rounds))
				for i, r := range rounds {
					v[i] = f(r)
				}
				return spread(v, cmp.Compare, format)
			}
			rep.add(row{sec, "start-up, min / median / max", by(func(r scaleResult) int64 { return r.StartupNS }, func(v int64) string { return fmtDur(time.Duration(v)) }), "", "", "", nil})
			rep.add(row{sec, "RSS after start, min / median / max", by(func(r scaleResult) int64 { return r.RSS }, fmtBytes), "", "", "", nil})
			rep.add(row{sec, "peak RSS, min / median / max", by(func(r scaleResult) int64 { return r.PeakRSS }, fmtBytes), "", "", "", nil})
		}
		top := rounds[0]
		for _, r := range rounds {
			if r.PeakRSS > top.PeakRSS {
				top = r
			}
		}
		rep.add(row{sec, "at the highest peak: phase, anonymous / file, GC heap goal", fmt.Sprintf("%s, %s / %s, %s", top.Peak.Phase, fmtBytes(top.Peak.Anon), fmtBytes(top.Peak.File), fmtBytes(top.Peak.HeapGoal)), "", "", "", nil})
		var hwms []string
		for _, h := range top.PhaseHWM {
			hwms = append(hwms, h.Phase+" "+fmtBytes(h.HWM))
		}
		rep.add(row{sec, "VmHWM at the end of each phase", strings.Join(hwms, ", "), "", "", "", nil})
		if y, ok := yamlRun[n]; ok {
			var yh []string
			for _, h := range y.PhaseHWM {
				yh = append(yh, h.Phase+" "+fmtBytes(h.HWM))
			}
			rep.add(row{sec, "configuration from YAML: config.Parse", fmtDur(time.Duration(y.ParseNS)), "", "", "", nil})
			rep.add(row{sec, "configuration from YAML: start-up, RSS after start, peak RSS", fmt.Sprintf("%s, %s, %s", fmtDur(time.Duration(y.StartupNS)), fmtBytes(y.RSS), fmtBytes(y.PeakRSS)), "", "", "", nil})
			rep.add(row{sec, "configuration from YAML: VmHWM at the end of each phase", strings.Join(yh, ", "), "", "", "", nil})
		}
		rep.add(row{sec, "RSS: anonymous / file (store mmap)", fmtBytes(sr.RSSAnon) + " / " + fmtBytes(sr.RSSFile), "", "", "", nil})
		rep.add(row{sec, "Go heap in use", fmtBytes(sr.HeapInuse), "", "", "", nil})
		if tr, ok := ticks[n]; ok {
			cs, cm := target("< 20 ms", tr.cpuNS < 20e6)
			rep.add(row{sec, "idle tick CPU", fmtDur(time.Duration(tr.cpuNS)), "", "", cs, cm})
			rep.add(row{sec, "idle tick wall", fmtDur(time.Duration(tr.wallNS)), "", "", "", nil})
			if b, ok := bare[n]; ok {
				rep.add(row{sec, "idle tick CPU without PrunePending", fmtDur(time.Duration(b.cpuNS)), "", "", "", nil})
			}
		}
	}
	// Growth: cost per grant from the middle size to the largest, ≤ 1.2
	// (20 % slack for noise) meaning "no faster than linear".
	if len(sizes) >= 2 {
		a, b := sizes[len(sizes)-2], sizes[len(sizes)-1]
		k := float64(b) / float64(a)
		sec := fmt.Sprintf("4. Scale growth %d→%d (%.0f× grants)", a, b, k)
		grow := func(metric string, x, y float64) {
			g := (y / x) / k
			rep.add(row{sec, metric + " per grant", "", "", fmtRatio(g), "≤ 1.20×", met(g <= 1.2)})
		}
		grow("store size", float64(sizeOf[a]), float64(sizeOf[b]))
		grow("start-up", float64(res[a].StartupNS), float64(res[b].StartupNS))
		grow("RSS above base", float64(res[a].RSS-res[a].BaseRSS), float64(res[b].RSS-res[b].BaseRSS))
		if ta, ok := ticks[a]; ok {
			if tb, ok := ticks[b]; ok {
				grow("idle tick CPU", ta.cpuNS, tb.cpuNS)
			}
		}
	}
	rep.notef("Scale: for each size a sealed store is seeded with one fresh token and one history entry per grant (set-up, NoSync), then a fresh child process (this program re-executed with -scale-child) builds the configuration, runs daemon.New + Run and times New → Started() (store open, every token read and unsealed, listeners up); RSS is /proc/self/status VmRSS 3 s after start (the first tick done, no refresh due: checked), before-New RSS is the child's runtime, provider and built configuration (the daemon holds the configuration too); the peak is VmHWM, and the child samples VmRSS, RssAnon, RssFile and the GC's heap goal every %s to tell in which phase the peak fell (configuration built in code, daemon.New, store open with its check of every page, token load until Started, after start) and what it was made of. The largest size runs %d times over the same store, each in a fresh child: start-up is the median round, RSS after start and the peak the highest. Store size is the bbolt file after the daemon ran.", sampleEvery, scaleRounds)
	rep.notef("Idle tick: `%s` calls the scheduler's tick with every grant holding a fresh token (each size the round of median CPU of the %d) and a real sealed store (fsync on, so PrunePending's write transaction is included); CPU is getrusage user+system per tick; 'without PrunePending' is the same with no store. Growth rows compare cost per grant between the two largest sizes: 1.00× is linear.", tickCmd, tickRounds)
	return nil
}
