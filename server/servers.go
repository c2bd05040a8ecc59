package server

// The servers that face the host, together: the socket API, the callback
// listener, the metrics listener and the grants' proxies. cmd/tokend
// builds them over the engine and hands them to its Run, which binds them
// once the store is open and before it tells the service manager it is
// ready, and shuts them down before refreshes in flight are drained.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
)

// Config configures the Servers. Zero values mean the real thing.
type Config struct {
	Engine Engine
	Log    *slog.Logger
	// Metrics counts fetches (FetchMetrics); when it is also a
	// ListenerMetrics, what the listeners refuse.
	Metrics FetchMetrics
	// MetricsHandler builds the handler of the metrics listener from a
	// readiness check; nil serves only /healthz and /readyz.
	MetricsHandler func(ready func() error) http.Handler
	// SocketListener, when set, is used instead of creating listen.socket
	// (systemd socket activation). Its file is not removed.
	SocketListener net.Listener
	// NoFile, when set, replaces RLIMIT_NOFILE as the source of the
	// listeners' bounds.
	NoFile uint64
}

// Servers are tokend's listeners and what serves them. Create with New;
// Listen, then Serve until Shutdown.
type Servers struct {
	cfg  Config
	log  *slog.Logger
	self uint32

	sock, cb, ml net.Listener
	cleanup      func()
	proxies      []grantProxy
	servers      []*http.Server
	listeners    []net.Listener

	mu                        sync.Mutex
	callbackAddr, metricsAddr string
}

// grantProxy is one grant's proxy, listening.
type grantProxy struct {
	grant string
	ln    net.Listener
	h     *Proxy
}

// New returns the servers of cfg.Engine; nothing listens before Listen.
func New(cfg Config) *Servers {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopFetchMetrics{}
	}
	return &Servers{cfg: cfg, log: cfg.Log, self: uint32(os.Geteuid()), cleanup: func() {}}
}

// Listen binds every listener c configures: the socket (or the one
// systemd passed), the callback and metrics listeners unless "off", and
// each grant's proxy. When one fails, none stays bound.
func (s *Servers) Listen(c *config.Config) (err error) {
	defer func() {
		if err != nil {
			s.closeListeners()
			s.cleanup()
			s.cleanup = func() {}
		}
	}()
	if s.cfg.SocketListener != nil {
		s.sock = s.cfg.SocketListener
	} else {
		sock, cleanup, err := listenSocket(c.Listen, s.self, nil)
		if err != nil {
			return err
		}
		s.sock, s.cleanup = sock, cleanup
	}
	// With listen.callback "off" no authorization_code grant can be
	// started (the engine says so); everything else works without it.
	if !listenerOff(c.Listen.Callback) {
		if s.cb, err = listenTCP("callback", "listen.callback", c.Listen.Callback); err != nil {
			return err
		}
	}
	if c.Listen.Metrics != "" && !listenerOff(c.Listen.Metrics) {
		if s.ml, err = listenTCP("metrics", "listen.metrics", c.Listen.Metrics); err != nil {
			if s.cb != nil && c.Listen.Metrics == c.Listen.Callback {
				err = fmt.Errorf("server: metrics listener: %s is listen.callback too; give listen.metrics a port of its own", c.Listen.Metrics)
			}
			return err
		}
	}
	if s.proxies, err = s.listenProxies(c); err != nil {
		return err
	}
	s.mu.Lock()
	if s.cb != nil {
		s.callbackAddr = s.cb.Addr().String()
	}
	if s.ml != nil {
		s.metricsAddr = s.ml.Addr().String()
	}
	s.mu.Unlock()
	s.build()
	return nil
}

// build makes the servers of the bound listeners. Every listener's
// connections are bounded (connLimiter), together to half of the
// descriptors: past the bound they would take the descriptors refreshes
// and the store need.
func (s *Servers) build() {
	nofile := s.cfg.NoFile
	if nofile == 0 {
		nofile = nofileLimit()
	}
	budget := budgetFor(nofile)
	lm, _ := s.cfg.Metrics.(ListenerMetrics)
	e := s.cfg.Engine
	api := newAPIServer(e, s.cfg.Metrics, s.log)
	s.servers = []*http.Server{api}
	s.listeners = []net.Listener{s.limit("api", s.sock, api, budget.API, func(uid uint32) bool { return uid == 0 || uid == s.self }, lm)}
	if s.cb != nil {
		srv := newCallbackServer(e, s.CallbackAddr, s.log)
		s.servers = append(s.servers, srv)
		s.listeners = append(s.listeners, s.limit("callback", s.cb, srv, budget.Callback, nil, lm))
	}
	if s.ml != nil {
		srv := newMetricsServer(s.cfg.MetricsHandler, e.Ready, s.MetricsAddr, s.log)
		s.servers = append(s.servers, srv)
		s.listeners = append(s.listeners, s.limit("metrics", s.ml, srv, budget.Metrics, nil, lm))
	}
	s.log.Info("connection bounds", "nofile", nofile, "api", budget.API.Max, "callback", budget.Callback.Max, "metrics", budget.Metrics.Max)
}

func (s *Servers) closeListeners() {
	for _, l := range []net.Listener{s.sock, s.cb, s.ml} {
		if l != nil {
			l.Close()
		}
	}
	for _, p := range s.proxies {
		p.ln.Close()
	}
	s.sock, s.cb, s.ml, s.proxies = nil, nil, nil, nil
}

// SocketAddr, CallbackAddr and MetricsAddr are the bound addresses (after
// Listen; "" for a listener that is off).
func (s *Servers) SocketAddr() string {
	if s.sock == nil {
		return ""
	}
	return s.sock.Addr().String()
}

func (s *Servers) CallbackAddr() string { s.mu.Lock(); defer s.mu.Unlock(); return s.callbackAddr }
func (s *Servers) MetricsAddr() string  { s.mu.Lock(); defer s.mu.Unlock(); return s.metricsAddr }

// Serve serves every listener until Shutdown (the proxies until ctx
// ends), then removes the socket file it created.
func (s *Servers) Serve(ctx context.Context) error {
	defer s.cleanup()
	var g errgroup.Group
	for i, srv := range s.servers {
		l := s.listeners[i]
		g.Go(func() error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("server: serve %s: %w", l.Addr(), err)
			}
			return nil
		})
	}
	for _, p := range s.proxies {
		s.log.Info("proxy listening", "grant", p.grant, "listen", p.ln.Addr().String())
		g.Go(func() error {
			if err := Serve(ctx, p.ln, p.h, s.log.With("grant", p.grant)); err != nil && err != http.ErrServerClosed {
				return fmt.Errorf("server: proxy of %s: %w", p.grant, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// Shutdown stops the listeners and waits for the requests being served,
// until ctx ends.
func (s *Servers) Shutdown(ctx context.Context) {
	for _, srv := range s.servers {
		_ = srv.Shutdown(ctx)
	}
}

// limit bounds ln, the listener srv serves, by limits (see connLimiter);
// privileged names the uids the reserve is for (nil: none).
func (s *Servers) limit(name string, ln net.Listener, srv *http.Server, limits connLimits, privileged func(uint32) bool, m ListenerMetrics) net.Listener {
	cl := newConnLimiter(name, ln, limits, privileged, s.log, m)
	srv.ConnState = cl.connState
	return cl
}

// listenProxies opens the listener of every grant with a proxy. Proxies
// are configured at start (address, resource, DPoP): a reload changes
// whether each caller may read the grant and the token added (both looked
// up per request); the engine reports a changed proxy as needing a
// restart.
func (s *Servers) listenProxies(cfg *config.Config) ([]grantProxy, error) {
	var ps []grantProxy
	fail := func(err error) ([]grantProxy, error) {
		for _, p := range ps {
			p.ln.Close()
		}
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Grants)) {
		gc := cfg.Grants[name]
		if gc.Proxy == nil {
			continue
		}
		up, err := url.Parse(gc.ProtectedResource)
		if err != nil {
			return fail(fmt.Errorf("server: grants.%s.protected_resource: %w", name, err))
		}
		h, err := NewProxy(ProxyConfig{
			Grant:    name,
			Upstream: up,
			DPoP:     gc.DPoP,
			Source:   engineSource{s.cfg.Engine, s.cfg.Metrics},
			Log:      s.log.With("grant", name),
		})
		if err != nil {
			return fail(fmt.Errorf("server: grants.%s.proxy: %w", name, err))
		}
		ln, err := Listen(gc.Proxy.Listen)
		if err != nil {
			return fail(fmt.Errorf("server: grants.%s.proxy.listen: %w", name, err))
		}
		ps = append(ps, grantProxy{grant: name, ln: ln, h: h})
	}
	return ps, nil
}

// engineSource is the engine as a proxy's TokenSource: the proxy's caller
// asks with its own rights, exactly as a request on the socket would, and
// is counted and answered as one.
type engineSource struct {
	e Engine
	m FetchMetrics
}

var _ TokenSource = engineSource{}

// failed is err as the socket API would answer it, counted as a fetch of
// grant (under no name when the caller was refused).
func (s engineSource) failed(grant string, err error) error {
	code, _ := answerOf(err)
	if isRefusal(err) {
		grant = ""
	}
	s.m.ObserveFetch(grant, code)
	return apiError(err)
}

func (s engineSource) Token(ctx context.Context, c Caller, name string) (*api.TokenResponse, error) {
	t, err := s.e.Token(ctx, c, name)
	if err != nil {
		return nil, s.failed(name, err)
	}
	s.m.ObserveFetch(name, http.StatusOK)
	return &t, nil
}

// Rejected is POST .../rejected for the proxy's caller: a token other
// than the refused one.
func (s engineSource) Rejected(ctx context.Context, c Caller, name string, req api.RejectedRequest) (*api.TokenResponse, error) {
	t, err := s.e.Rejected(ctx, c, name, req)
	if err != nil {
		return nil, s.failed(name, err)
	}
	s.m.ObserveFetch(name, http.StatusOK)
	return &t, nil
}

// StepUp is POST .../step-up for the proxy's caller.
func (s engineSource) StepUp(_ context.Context, c Caller, name string, req api.StepUpRequest) (*api.GrantStatus, error) {
	st, err := s.e.StepUp(c, name, req)
	if err != nil {
		if isRefusal(err) {
			code, _ := answerOf(err)
			s.m.ObserveFetch("", code)
		}
		return nil, apiError(err)
	}
	return &st, nil
}

func (s engineSource) DPoP(ctx context.Context, c Caller, name string, req api.DPoPRequest) (*api.DPoPResponse, error) {
	resp, err := s.e.Proof(ctx, c, name, req)
	if err != nil {
		return nil, s.failed(name, err)
	}
	s.m.ObserveFetch(name, http.StatusOK)
	return resp, nil
}
