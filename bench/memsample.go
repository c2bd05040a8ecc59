package main

import (
	"bytes"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memSampler reads the process's memory every few milliseconds during a
// scale child's start-up and keeps the reading with the highest RSS, with
// the phase it fell in, so the peak (VmHWM) can be attributed: to the
// configuration, the store's open, the token load, or after start.
type memSampler struct {
	phase atomic.Pointer[string]
	stop  chan struct{}
	done  chan struct{}

	mu   sync.Mutex        // guards the fields below
	buf  [8192]byte        // status's
	goal [1]metrics.Sample // the GC's heap goal, read with each sample
	peak peakSample
	hwm  []phaseHWM
}

const sampleEvery = 2 * time.Millisecond

func startSampler(phase string) *memSampler {
	m := &memSampler{stop: make(chan struct{}), done: make(chan struct{})}
	m.goal[0].Name = "/gc/heap/goal:bytes"
	m.phase.Store(&phase)
	go func() {
		defer close(m.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// enter ends the current phase (recording VmHWM at its end) and starts
// the next.
func (m *memSampler) enter(phase string) {
	m.sample()
	m.mu.Lock()
	m.hwm = append(m.hwm, phaseHWM{Phase: *m.phase.Load(), HWM: procStatus("VmHWM")})
	m.mu.Unlock()
	m.phase.Store(&phase)
}

// finish ends the last phase and the sampling.
func (m *memSampler) finish() (peakSample, []phaseHWM) {
	m.enter("")
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak, m.hwm
}

func (m *memSampler) sample() {
	m.mu.Lock()
	defer m.mu.Unlock()
	phase := *m.phase.Load()
	rss, anon, file := m.status()
	metrics.Read(m.goal[:])
	if rss > m.peak.RSS {
		m.peak = peakSample{Phase: phase, RSS: rss, Anon: anon, File: file, HeapGoal: int64(m.goal[0].Value.Uint64())}
	}
}

// status reads VmRSS, RssAnon and RssFile from /proc/self/status, in
// bytes, into a buffer it reuses: the sampler must not add garbage of its
// own to the start-up it measures.
func (m *memSampler) status() (rss, anon, file int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, 0
	}
	n, _ := io.ReadFull(f, m.buf[:])
	f.Close()
	field := func(name string) int64 {
		b := m.buf[:n]
		i := bytes.Index(b, []byte("\n"+name+":"))
		if i < 0 {
			return 0
		}
		b = b[i+len(name)+2:]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[:j]
		}
		kb, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("kB")))), 10, 64)
		return kb << 10
	}
	return field("VmRSS"), field("RssAnon"), field("RssFile")
}
