package main

import (
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

//go:noinline
func parkedHere(ch chan struct{}, wg *sync.WaitGroup) {
	wg.Done()
	<-ch
}

func TestShortDump(t *testing.T) {
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go parkedHere(ch, &wg)
	}
	wg.Wait()
	defer close(ch)
	dump := string(shortDump())
	if !strings.Contains(dump, "5 goroutine(s) [chan receive]:\n  github.com/tokend/tokend/cmd/tokend.parkedHere dump_test.go:") {
		t.Fatalf("the five parked goroutines are not one group naming where they wait:\n%s", dump)
	}
	if strings.Contains(dump, ".shortDump") {
		t.Errorf("the dump shows its own goroutine:\n%s", dump)
	}
	full := make([]byte, 1<<20)
	full = full[:runtime.Stack(full, true)]
	short, long := strings.Count(dump, "\n"), strings.Count(string(full), "\n")
	t.Logf("short dump %d lines, runtime.Stack %d lines", short, long)
	if short >= long {
		t.Errorf("the short dump (%d lines) is not shorter than runtime.Stack (%d lines)", short, long)
	}
	for _, l := range strings.Split(strings.TrimSpace(dump), "\n") {
		if strings.Contains(l, "+0x") || strings.Contains(l, "(0x") {
			t.Errorf("line with offsets or arguments: %q", l)
		}
	}
}

// SIGQUIT, once dumpOnQuit is set up, writes the short dump and exits 2.
func TestDumpOnQuit(t *testing.T) {
	var mu sync.Mutex
	var out strings.Builder
	exited := make(chan int, 1)
	stop := dumpOnQuit(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return out.Write(p)
	}), func(code int) { exited <- code })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGQUIT did not end in exit")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.HasPrefix(out.String(), "tokend: SIGQUIT") || !strings.Contains(out.String(), "goroutine(s) [") {
		t.Fatalf("dump:\n%s", out.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
