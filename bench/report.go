package main

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one figure of the results table. met is nil for a figure that
// has no target (shown for context).
type row struct {
	section, metric, value, baseline, ratio, target string
	met                                             *bool
}

type report struct {
	started time.Time
	command string
	rows    []row
	notes   []string
	errs    []string
}

func met(b bool) *bool { return &b }

func (r *report) add(x row) {
	r.rows = append(r.rows, x)
	fmt.Fprintf(os.Stderr, "  %-28s %-34s %12s  base %-12s %-8s %-12s %s\n", x.section, x.metric, x.value, x.baseline, x.ratio, x.target, metWord(x.met))
}

func (r *report) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func metWord(m *bool) string {
	switch {
	case m == nil:
		return ""
	case *m:
		return "met"
	}
	return "**missed**"
}

func fmtRate(v float64) string { return fmt.Sprintf("%.0f", v) }
func fmtRatio(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

// fmtDur prints a duration with three significant figures.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func cell(s string) string {
	if s == "" {
		return "–"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// markdown renders the table and how it was produced.
func (r *report) markdown() string {
	var b strings.Builder
	cpu := "unknown"
	if out, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	nproc := fmt.Sprint(runtime.NumCPU())
	if out, err := exec.Command("nproc").Output(); err == nil {
		nproc = strings.TrimSpace(string(out))
	}
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` (`go build -o bin/tokend-bench ./bench && %s`).\n\n", r.command)
	fmt.Fprintf(&b, "- Date: %s (took %s)\n", r.started.UTC().Format(time.RFC3339), time.Since(r.started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: `nproc` = %s, %s, %s/%s\n", nproc, cpu, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- Go: %s, GOMAXPROCS %d\n", runtime.Version(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(&b, "- Everything runs in one process on loopback and unix sockets (load generator included), except the scale figures, each measured in a fresh child process, and the tick, measured by `go test -bench BenchmarkIdleTick ./daemon/`.\n")
	fmt.Fprintf(&b, "- Setup common to all: the daemon is `daemon.New` + `Run` with a real configuration: sealed store (AES-256-GCM, encryption at rest on) in a temporary directory, bbolt fsync on, real unix socket, loopback callback and metrics listeners, real Prometheus metrics, info-level logging formatted and discarded; the provider is the in-process `devprovider` server on 127.0.0.1; grants are `client_credentials` of one client.\n\n")
	b.WriteString("| Benchmark | Figure | tokend | Baseline | Ratio | Target | Met |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | --- | --- |\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(x.section), cell(x.metric), cell(x.value), cell(x.baseline), cell(x.ratio), cell(x.target), cell(metWord(x.met)))
	}
	if len(r.errs) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, e := range r.errs {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	b.WriteString("\n## How each figure was measured\n\n")
	for _, n := range r.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

// spread renders the minimum, median and maximum of a figure over the
// rounds that measured it, so that one noisy round shows as such.
func spread[T any](vals []T, less func(a, b T) int, format func(T) string) string {
	if len(vals) == 0 {
		return ""
	}
	s := slices.Clone(vals)
	slices.SortFunc(s, less)
	return fmt.Sprintf("%s / %s / %s", format(s[0]), format(s[len(s)/2]), format(s[len(s)-1]))
}

// median returns the median of vals (the upper one of an even count).
func median[T any](vals []T, less func(a, b T) int) T {
	s := slices.Clone(vals)
	slices.SortFunc(s, less)
	return s[len(s)/2]
}

// roundRatios returns a/b of each round's throughput.
func roundRatios(a, b []loadResult) []float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i].rps() / b[i].rps()
	}
	return r
}

// roundsRow is the spread of a throughput comparison over its rounds: a's
// and b's requests per second and their ratio, each min / median / max
// (the ratio's taken round by round).
func roundsRow(section, metric string, a, b []loadResult) row {
	rps := func(rs []loadResult) []float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = r.rps()
		}
		return v
	}
	return row{section, metric, spread(rps(a), cmp.Compare, fmtRate), spread(rps(b), cmp.Compare, fmtRate), spread(roundRatios(a, b), cmp.Compare, fmtRatio), "", nil}
}
