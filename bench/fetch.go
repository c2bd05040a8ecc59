package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// bareServer is the fetch baseline: net/http on a unix socket answering
// every GET /v1/tokens/{name} with the same bytes tokend sent.
type bareServer struct {
	srv  *http.Server
	sock string
}

func startBare(dir string, handler http.Handler) (*bareServer, error) {
	sock := filepath.Join(dir, "bare.sock")
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return &bareServer{srv: srv, sock: sock}, nil
}

func (b *bareServer) close() { b.srv.Close() }

func fixedBody(body []byte, ctype string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tokens/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
	return mux
}

// benchFetch is benchmark 1: GET /v1/tokens/{name} against tokend and
// against a bare server returning a body of the same size, 1 and 16
// keep-alive clients, rounds alternating between the two so drift on a
// shared machine hits both alike.
func benchFetch(rep *report, dir string) error {
	prov := newProvider()
	defer prov.Close()
	cfg, err := benchConfig(filepath.Join(dir, "fetch"), newKey(), prov.URL(), 1, 0)
	if err != nil {
		return err
	}
	r, err := startServing(cfg, 1)
	if err != nil {
		return err
	}
	defer r.stop()
	name := grantName(0)
	resp, err := unixClient(cfg.Listen.Socket).Get("http://tokend/v1/tokens/" + name)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: first fetch: %d %v", resp.StatusCode, err)
	}
	bare, err := startBare(filepath.Join(dir, "fetch"), fixedBody(body, resp.Header.Get("Content-Type")))
	if err != nil {
		return err
	}
	defer bare.close()
	path := func(int, int) string { return "/v1/tokens/" + name }

	const rounds = 3
	for _, clients := range []int{1, 16} {
		per := requestsPerClient(clients)
		limit := 30 * time.Second
		// Warm-up: connections, goroutine stacks, the page cache.
		runLoad(cfg.Listen.Socket, clients, per/4, limit, path)
		runLoad(bare.sock, clients, per/4, limit, path)
		td, bs := alternateRounds(rounds, cfg.Listen.Socket, bare.sock, clients, per, limit, path)
		t, b := merge(td...), merge(bs...)
		if t.errs > 0 || b.errs > 0 {
			return errors.Join(fmt.Errorf("bench: fetch: %d tokend and %d baseline errors", t.errs, b.errs), t.first, b.first)
		}
		sec := fmt.Sprintf("1. Fetch, %d client(s)", clients)
		ratio := t.rps() / b.rps()
		rep.add(row{sec, "throughput (req/s)", fmtRate(t.rps()), fmtRate(b.rps()), fmtRatio(ratio), "≥ 0.90×", met(ratio >= 0.9)})
		rep.add(roundsRow(sec, "throughput by round, min / median / max", td, bs))
		rep.add(row{sec, "p50 latency", fmtDur(t.pct(50)), fmtDur(b.pct(50)), fmtRatio(float64(t.pct(50)) / float64(b.pct(50))), "", nil})
		rep.add(row{sec, "p99 latency", fmtDur(t.pct(99)), fmtDur(b.pct(99)), fmtRatio(float64(t.pct(99)) / float64(b.pct(99))), "", nil})
		rep.notef("Fetch, %d client(s): %d requests per server in %d rounds alternating tokend and the bare server; body %d bytes.", clients, t.n(), rounds, len(body))
	}
	return nil
}
