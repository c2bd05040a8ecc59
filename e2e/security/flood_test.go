package security

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
)

// childFlood opens connections to $TOKEND_SOCK from 8 workers, each
// sending one request and then keeping its connection open, until
// $FLOOD_CONNS are open at once; connections the server closes are
// replaced. It prints its counts every 200 ms and stops when stdin closes
// (or after a minute, whatever the parent does).
func childFlood() {
	sock := os.Getenv("TOKEND_SOCK")
	target, _ := strconv.ParseInt(os.Getenv("FLOOD_CONNS"), 10, 64)
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	var answered, live, refused, failed atomic.Int64
	report := func() {
		fmt.Printf("answered=%d live=%d refused=%d failed=%d\n", answered.Load(), live.Load(), refused.Load(), failed.Load())
	}
	req := []byte("GET /v1/tokens/flood HTTP/1.1\r\nHost: tokend\r\n\r\n")
	deadline := time.Now().Add(time.Minute)
	for range 8 {
		go func() {
			for time.Now().Before(deadline) {
				if live.Load() >= target {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				c, err := net.DialTimeout("unix", sock, time.Second)
				if err != nil {
					failed.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				br := bufio.NewReader(c)
				_, err = c.Write(req)
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				if err != nil {
					failed.Add(1)
					c.Close()
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusForbidden {
					refused.Add(1)
					c.Close()
					continue
				}
				answered.Add(1)
				live.Add(1)
				_ = c.SetDeadline(time.Time{})
				// Held until the server closes it.
				go func() {
					_, _ = br.ReadByte()
					c.Close()
					live.Add(-1)
				}()
			}
		}()
	}
	reportUntil(stop, deadline, report)
}

// reportUntil runs report every 200 ms until stop closes or deadline
// passes, and once more when stop closes: a flooding child's counts.
func reportUntil(stop <-chan struct{}, deadline time.Time, report func()) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			report()
			return
		case <-tick.C:
			report()
			if time.Now().After(deadline) {
				return
			}
		}
	}
}

// startNofile is start with tokend's descriptor limit (soft and hard) set
// to n before it runs.
func (e *env) startNofile(n int) {
	t := e.t
	t.Helper()
	e.startCmd(exec.Command("/bin/sh", "-c", `ulimit -n "$1" && shift && exec "$@"`, "sh", strconv.Itoa(n), tokendBin, "serve", "--config", e.config))
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", e.cmd.Process.Pid))
	want := regexp.MustCompile(`(?m)^Max open files\s+` + strconv.Itoa(n) + `\s+` + strconv.Itoa(n) + `\s`)
	if err != nil || !want.Match(limits) {
		t.Fatalf("tokend does not run with %d descriptors (%v):\n%s", n, err, limits)
	}
}

const floodGrants = `  flood:
    client: app
    type: client_credentials
    scopes: [read]
    readers: {uids: [65533]}
`

// floodCounts is the last line the flooding child printed.
type floodCounts struct {
	mu   sync.Mutex
	last string
	// stderr is what the child wrote there.
	stderr testutil.SyncBuffer
}

func (f *floodCounts) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *floodCounts) get(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := regexp.MustCompile(`\b` + key + `=(\d+)`).FindStringSubmatch(f.last)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// waitAtLeast waits up to 30 s until the child counted n of key: the flood
// is under way.
func (f *floodCounts) waitAtLeast(t *testing.T, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.get(key) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the flood did not get going within 30s: %q\n%s", f.String(), f.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fetchDuringFlood has the reader fetch the token, and root read its
// status, every half second until at least three fetches succeeded and a
// scheduled refresh after floodStart did: 40 s at most. Every refresh
// after floodStart must succeed, on-demand ones only when onDemandToo.
// during, if not nil, runs after each fetch, given its number from 1. It
// returns the number of fetches.
func (e *env) fetchDuringFlood(counts *floodCounts, floodStart time.Time, onDemandToo bool, during func(fetch int)) int {
	t := e.t
	t.Helper()
	fetches := 0
	deadline := time.Now().Add(40 * time.Second)
	for {
		r := e.run(uidOther, "token", "flood")
		if r.code != exitOK || !e.prov.Valid(strings.TrimSpace(r.stdout)) {
			t.Fatalf("the reader's fetch %d during the flood: %v\nflood: %s", fetches+1, r, counts.String())
		}
		fetches++
		if during != nil {
			during(fetches)
		}
		st := e.run(0, "status", "flood", "--json")
		if st.code != exitOK {
			t.Fatalf("root's status during the flood: %v", st)
		}
		var s api.GrantStatus
		if err := json.Unmarshal([]byte(st.stdout), &s); err != nil {
			t.Fatalf("status --json: %v\n%s", err, st.stdout)
		}
		refreshed := false
		for _, a := range s.History {
			if !a.At.After(floodStart) || a.Reason == "on-demand" && !onDemandToo {
				continue
			}
			if a.Result != "success" {
				t.Fatalf("a %s refresh during the flood failed: %+v\nflood: %s", a.Reason, a, counts.String())
			}
			refreshed = refreshed || a.Reason != "on-demand" && a.Reason != "manual"
		}
		if refreshed && fetches >= 3 {
			return fetches
		}
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled refresh during 40s of flood; status: %+v\nflood: %s", s, counts.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestConnectionFlood: nobody (a non-reader allowed to connect) opens
// 3000 connections to a tokend limited to 1024 descriptors and keeps them
// open, replacing any the server closes. Meanwhile the reader's fetches
// succeed and the scheduled refresh (20 s tokens, refreshed at half their
// life) reaches the provider and succeeds: descriptors stay for them.
func TestConnectionFlood(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov:   devprovider.Options{AccessTTL: 20 * time.Second},
		grants: floodGrants,
	})
	mustWrite(t, e.config, e.configWith(`schedule: "@every 15s"`, `schedule: "@every 1s"`))
	e.startNofile(1024)
	if r := e.run(uidOther, "token", "flood"); r.code != exitOK {
		t.Fatalf("the reader before the flood: %v", r)
	}

	counts, stopFlood := startFlood(t, "flood", uidNobody, "TOKEND_SOCK="+e.sock, "FLOOD_CONNS=3000")
	// The flood is on once more connections were answered than the API
	// may hold at once (464 with 1024 descriptors).
	counts.waitAtLeast(t, "answered", 600)
	floodStart := time.Now()
	t.Logf("flood under way: %s", counts.String())

	// The reader keeps fetching, and the scheduled refresh due about 10 s
	// after the token was obtained must succeed while the flood goes on.
	e.fetchDuringFlood(counts, floodStart, false, nil)
	// Still flooding at the end: the refresh did not get a quiet moment.
	if counts.get("answered") < 1000 && counts.get("failed") < 1000 {
		t.Errorf("the flood stalled: %s", counts.String())
	}
	stopFlood()
	log := e.stderr.String()
	if strings.Contains(log, "too many open files") {
		t.Errorf("tokend ran out of descriptors:\n%s", log)
	}
	if !strings.Contains(log, "connection limit reached") {
		t.Errorf("tokend did not log that it refused connections")
	}
}

// childFloodTCP floods the TCP listeners in $FLOOD_ADDRS (comma-separated)
// from 8 workers: every other connection sends a request (and is kept
// alive after its answer), the others send nothing; each is held until
// the server closes it, and replaced, until $FLOOD_CONNS are open at once.
// It prints its counts every 200 ms and stops when stdin closes (or after
// a minute, whatever the parent does).
func childFloodTCP() {
	addrs := strings.Split(os.Getenv("FLOOD_ADDRS"), ",")
	target, _ := strconv.ParseInt(os.Getenv("FLOOD_CONNS"), 10, 64)
	stop := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(stop) }()
	var opened, live, answered, refused, closed, failed atomic.Int64
	report := func() {
		fmt.Printf("opened=%d live=%d answered=%d refused=%d closed=%d failed=%d\n",
			opened.Load(), live.Load(), answered.Load(), refused.Load(), closed.Load(), failed.Load())
	}
	// hold reads what the server sends until it closes the connection.
	hold := func(c net.Conn) {
		defer live.Add(-1)
		defer c.Close()
		var head [12]byte
		n, _ := io.ReadFull(c, head[:])
		switch {
		case n == len(head) && string(head[:]) == "HTTP/1.1 503":
			refused.Add(1)
			return
		case n == len(head):
			answered.Add(1)
		}
		_, _ = io.Copy(io.Discard, c)
		closed.Add(1)
	}
	deadline := time.Now().Add(time.Minute)
	for i := range 8 {
		addr := addrs[i%len(addrs)]
		req := []byte("GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
		go func() {
			for n := 0; time.Now().Before(deadline); n++ {
				if live.Load() >= target {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					failed.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				opened.Add(1)
				live.Add(1)
				if n%2 == 0 {
					_, _ = c.Write(req)
				}
				go hold(c)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	reportUntil(stop, deadline, report)
}

// startFlood runs the child role as uid with no groups and env, and
// returns its latest counts and a function that stops it (also run at
// cleanup).
func startFlood(t *testing.T, role string, uid uint32, env ...string) (*floodCounts, func()) {
	t.Helper()
	cmd := childCmd(t, role, uid, []uint32{}, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	counts := &floodCounts{}
	cmd.Stderr = &counts.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			counts.mu.Lock()
			counts.last = sc.Text()
			counts.mu.Unlock()
		}
	}()
	stop := sync.OnceFunc(func() {
		stdin.Close()
		<-scanned
		_ = cmd.Wait()
		t.Logf("flood: %s %s", counts.String(), counts.stderr.String())
	})
	t.Cleanup(stop)
	return counts, stop
}

// TestListenerFlood: nobody, who may not even connect to the socket,
// floods the callback and metrics listeners of a tokend limited to 256
// descriptors with thousands of connections, silent ones and keep-alive
// ones, replacing each one the server closes. Meanwhile the reader's
// fetches, root's refresh and the scheduled refresh (20 s tokens) succeed:
// the listeners hold only their share of the descriptors. Once the flood
// ends /healthz answers, and /metrics shows the connections shed.
func TestListenerFlood(t *testing.T) {
	requireRoot(t)
	e := newEnv(t, envOpts{
		prov:   devprovider.Options{AccessTTL: 20 * time.Second},
		grants: floodGrants,
	})
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := e.configWith(`schedule: "@every 15s"`, `schedule: "@every 1s"`)
	cfg = strings.Replace(cfg, `metrics: "off"`, "metrics: "+metricsAddr, 1)
	// Only root and the reader's group may connect to the socket.
	cfg = strings.Replace(cfg, `socket_mode: "0666"`, `socket_mode: "0660"`+"\n  socket_group: \"65533\"", 1)
	mustWrite(t, e.config, cfg)
	e.startNofile(256)
	if r := e.run(uidOther, "token", "flood"); r.code != exitOK {
		t.Fatalf("the reader before the flood: %v", r)
	}
	if r := e.run(uidNobody, "token", "flood"); r.code == exitOK {
		t.Fatalf("nobody may connect to the socket: %v", r)
	}

	counts, stopFlood := startFlood(t, "flood-tcp", uidNobody, "FLOOD_ADDRS="+e.callback+","+metricsAddr, "FLOOD_CONNS=3000")
	counts.waitAtLeast(t, "opened", 1000)
	floodStart := time.Now()
	t.Logf("flood under way: %s", counts.String())

	fetches := e.fetchDuringFlood(counts, floodStart, true, func(fetch int) {
		if fetch == 2 {
			if r := e.run(0, "refresh", "flood"); r.code != exitOK {
				t.Fatalf("root's refresh during the flood: %v\nflood: %s", r, counts.String())
			}
		}
	})
	// Still flooding at the end: the server kept shedding connections.
	shed := counts.get("refused") + counts.get("closed")
	if shed < 1000 {
		t.Errorf("the flood stalled: %s", counts.String())
	}
	stopFlood()

	// The metrics listener answers as soon as the flood ends.
	hc := &http.Client{Timeout: 5 * time.Second}
	var metrics string
	testutil.Eventually(t, 10*time.Second, 100*time.Millisecond, "/healthz and /metrics after the flood", func() error {
		for _, path := range []string{"/healthz", "/metrics"} {
			resp, err := hc.Get("http://" + metricsAddr + path)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %d %v", path, resp.StatusCode, err)
			}
			metrics = string(b)
		}
		return nil
	})
	// What the listeners shed is counted.
	for _, l := range []string{"callback", "metrics"} {
		n := metricValue(metrics, `tokend_connections_refused_total{listener="`+l+`"}`) +
			metricValue(metrics, `tokend_connections_idle_closed_total{listener="`+l+`"}`)
		if n < 100 {
			t.Errorf("the %s listener counted %v connections refused or closed; the flood shed %d in all\n%s", l, n, shed, grepLines(metrics, "tokend_connections_"))
		}
	}
	log := e.stderr.String()
	if strings.Contains(log, "too many open files") || strings.Contains(log, "out of file descriptors") {
		t.Errorf("tokend ran out of descriptors:\n%s", log)
	}
	for _, l := range []string{"callback", "metrics"} {
		if !strings.Contains(log, "connection limit reached") || !strings.Contains(log, "listener="+l) {
			t.Errorf("tokend did not log that the %s listener shed connections", l)
		}
	}
	t.Logf("%d fetches; %s", fetches, grepLines(metrics, "tokend_connections_"))
}

// metricValue is the value of the series named exactly series in a text
// exposition, or 0.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
