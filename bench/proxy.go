package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/server"
)

// benchProxy is benchmark 7: requests through a grant's proxy served by
// the daemon against a bare httputil.ReverseProxy, both on loopback TCP,
// to the same upstream in the same run, 1 and 16 keep-alive clients,
// rounds alternating between the two. The proxy does everything it does
// for real: the caller's uid through sock_diag at each connection, the
// reader check and the token from the engine at each request, the
// caller's headers stripped and the token added; the baseline forwards.
func benchProxy(rep *report, dir string) error {
	prov := newProvider()
	defer prov.Close()
	// An answer the size of a small MCP tool result.
	answer := []byte(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 900) + `"}]}}`)
	var withToken atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			withToken.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	}))
	defer up.Close()
	upURL, _ := url.Parse(up.URL + "/mcp")

	addr, err := freeLowPort()
	if err != nil {
		return err
	}
	cfg, err := benchConfig(filepath.Join(dir, "proxy"), newKey(), prov.URL(), 1, 0)
	if err != nil {
		return err
	}
	name := grantName(0)
	g := cfg.Grants[name]
	g.ProtectedResource = upURL.String()
	g.Proxy = &config.GrantProxy{Listen: addr}
	cfg.Grants[name] = g
	r, err := startServing(cfg, 1)
	if err != nil {
		return err
	}
	defer r.stop()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bare := httputil.NewSingleHostReverseProxy(upURL)
	// The same transport settings as the proxy's.
	bare.Transport = server.NewTransport()
	bareSrv := &http.Server{Handler: bare, ReadHeaderTimeout: 10 * time.Second}
	go bareSrv.Serve(ln)
	defer bareSrv.Close()

	client := func() *http.Client {
		return &http.Client{
			Transport: &http.Transport{MaxIdleConns: 1, MaxIdleConnsPerHost: 1, DisableCompression: true},
			Timeout:   60 * time.Second,
		}
	}
	proxyBase, bareBase := "http://"+addr, "http://"+ln.Addr().String()
	// The bare proxy joins its target's path and the request's: / would
	// be /mcp/; the grant's proxy sends / to /mcp.
	proxyPath := func(int, int) string { return "/" }
	barePath := func(int, int) string { return "" }

	// Short rounds, many of them: on a shared machine a neighbour's burst
	// then lands on both sides alike.
	const rounds = 8
	for _, clients := range []int{1, 16} {
		per := 2500 / clients
		if clients > 1 {
			per = 8000 / clients
		}
		limit := 30 * time.Second
		runLoadOn(client, proxyBase, clients, per/4, limit, proxyPath)
		runLoadOn(client, bareBase, clients, per/4, limit, barePath)
		var px, bs []loadResult
		before := withToken.Load()
		for range rounds {
			px = append(px, runLoadOn(client, proxyBase, clients, per, limit, proxyPath))
			bs = append(bs, runLoadOn(client, bareBase, clients, per, limit, barePath))
		}
		p, b := merge(px...), merge(bs...)
		if p.errs > 0 || b.errs > 0 {
			return errors.Join(fmt.Errorf("bench: proxy: %d proxy and %d baseline errors", p.errs, b.errs), p.first, b.first)
		}
		if got := withToken.Load() - before; got != int64(p.n()) {
			return fmt.Errorf("bench: proxy: %d requests went through the proxy, the upstream saw %d with a token", p.n(), got)
		}
		sec := fmt.Sprintf("7. Proxy, %d client(s)", clients)
		tr := p.rps() / b.rps()
		p99 := float64(p.pct(99)) / float64(b.pct(99))
		rep.add(row{sec, "throughput (req/s) vs bare ReverseProxy", fmtRate(p.rps()), fmtRate(b.rps()), fmtRatio(tr), "≥ 0.90×", met(tr >= 0.9)})
		rep.add(roundsRow(sec, "throughput by round, min / median / max", px, bs))
		rep.add(row{sec, "p50 latency", fmtDur(p.pct(50)), fmtDur(b.pct(50)), fmtRatio(float64(p.pct(50)) / float64(b.pct(50))), "", nil})
		rep.add(row{sec, "p99 latency", fmtDur(p.pct(99)), fmtDur(b.pct(99)), fmtRatio(p99), "≤ 1.20×", met(p99 <= 1.2)})
		rep.notef("Proxy, %d client(s): %d requests per proxy in %d rounds alternating the grant's proxy served by the daemon (loopback TCP, the caller's uid by sock_diag per connection, the reader check and the token from the engine per request) and a bare httputil.ReverseProxy with the same transport settings, both to one httptest upstream answering %d bytes; every proxied request reached the upstream with the grant's token.", clients, p.n(), rounds, len(answer))
	}
	return nil
}

// freeLowPort returns a loopback address with a port below the ephemeral
// range that was free a moment ago: the proxy's address is configured,
// and a port from the ephemeral range could be taken by any connection.
func freeLowPort() (string, error) {
	for range 50 {
		addr := "127.0.0.1:" + strconv.Itoa(20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
			return addr, nil
		}
	}
	return "", errors.New("bench: proxy: no free port below 32000")
}
