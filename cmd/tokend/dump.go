package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"syscall"
)

// A watchdog kill should leave in the journal where tokend hung, in a few
// dozen lines. tokend.service sets WatchdogSignal=SIGQUIT; under the
// watchdog, serve catches it and writes shortDump instead of the Go
// runtime's dump. GOTRACEBACK cannot do this: on a fatal signal (SIGQUIT,
// SIGABRT) the Go 1.26 runtime prints every goroutine with runtime frames,
// frame pointers and registers whatever GOTRACEBACK says. Measured with it
// unset, "single", "all" and "none", for both signals: the same dump each
// time, about 450 lines (30 kB) for tokend.service, 576 lines (36 kB) for
// tokend dev.

// dumpOnQuit makes SIGQUIT write shortDump to w and exit with status 2, as
// the runtime's own SIGQUIT dump does. It returns a function undoing it.
// Outside the watchdog serve leaves SIGQUIT alone, so that Ctrl-\ in a
// terminal still gives the runtime's full dump.
func dumpOnQuit(w io.Writer, exit func(int)) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			fmt.Fprintln(w, "tokend: SIGQUIT (the systemd watchdog sends it when tokend stops pinging): goroutines, identical stacks counted once:")
			_, _ = w.Write(shortDump())
			exit(2)
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

var (
	// "goroutine 12 [select, 3 minutes]:" → state "select, 3 minutes"
	goroutineHeader = regexp.MustCompile(`^goroutine \d+ (?:gp=\S+ m=\S+ )?\[([^\]]*)\]:`)
	// "pkg.f(0xc000012345, ...)" → "pkg.f"
	frameArgs = regexp.MustCompile(`\([^()]*\)$`)
	// "\t/path/file.go:123 +0x1f" → "file.go:123"
	frameLoc = regexp.MustCompile(`^\t(?:.*/)?([^/ ]+:\d+)(?: \+0x[0-9a-f]+)?$`)
	// "created by pkg.f in goroutine 7" → "created by pkg.f"
	createdBy = regexp.MustCompile(` in goroutine \d+$`)
)

// keepFrames is how many frames of each stack are always shown, from the
// top (where the goroutine waits); below them only tokend's own frames
// and the "created by" line are.
const keepFrames = 2

// shortDump returns the stacks of every goroutine, grouped and shortened:
// one line a frame (function, file:line), the top frames and tokend's
// own, and goroutines with the same state and frames printed once with
// their count. The goroutine that writes the dump is left out.
func shortDump() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	type group struct {
		state, frames string
		count         int
	}
	var order []string
	groups := map[string]*group{}
	for i, block := range strings.Split(strings.TrimSpace(string(buf)), "\n\n") {
		if i == 0 {
			continue // this goroutine: runtime.Stack, shortDump
		}
		lines := strings.Split(block, "\n")
		m := goroutineHeader.FindStringSubmatch(lines[0])
		if m == nil {
			continue
		}
		var b strings.Builder
		skipped := false
		for j := 1; j+1 < len(lines); j += 2 {
			fn := createdBy.ReplaceAllString(frameArgs.ReplaceAllString(lines[j], ""), "")
			loc := lines[j+1]
			if lm := frameLoc.FindStringSubmatch(loc); lm != nil {
				loc = lm[1]
			}
			own := strings.HasPrefix(fn, "github.com/tokend/") || strings.HasPrefix(fn, "main.") || strings.HasPrefix(fn, "created by ")
			if j/2 >= keepFrames && !own {
				if !skipped {
					b.WriteString("  ...\n")
				}
				skipped = true
				continue
			}
			skipped = false
			fmt.Fprintf(&b, "  %s %s\n", fn, loc)
		}
		// A wait's duration ("3 minutes") differs between goroutines
		// parked at the same place; the longest one is shown.
		state, _, _ := strings.Cut(m[1], ",")
		key := state + "\n" + b.String()
		g := groups[key]
		if g == nil {
			g = &group{state: m[1], frames: b.String()}
			groups[key] = g
			order = append(order, key)
		}
		g.count++
		if len(m[1]) > len(g.state) {
			g.state = m[1]
		}
	}
	var out bytes.Buffer
	for _, k := range order {
		g := groups[k]
		fmt.Fprintf(&out, "%d goroutine(s) [%s]:\n%s", g.count, g.state, g.frames)
	}
	return out.Bytes()
}
