package daemon

// The grants' local proxies (key proxy: {listen}): package server serves
// them; what they ask of the engine goes through proxySource, with the
// rights of the caller the proxy identified, exactly as a request on the
// socket would.

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
)

// grantProxy is one grant's proxy, listening.
type grantProxy struct {
	grant string
	ln    net.Listener
	h     *server.Proxy
}

// listenProxies opens the listener of every grant with a proxy. Proxies
// are configured at start (address, resource, DPoP): a reload changes
// whether each caller may read the grant and the token added (both looked
// up per request), and reports a changed proxy as needing a restart.
func (d *Daemon) listenProxies(cfg *config.Config) ([]grantProxy, error) {
	var ps []grantProxy
	fail := func(err error) ([]grantProxy, error) {
		for _, p := range ps {
			p.ln.Close()
		}
		return nil, err
	}
	for _, name := range sortedGrantNames(cfg) {
		gc := cfg.Grants[name]
		if gc.Proxy == nil {
			continue
		}
		up, err := url.Parse(gc.ProtectedResource)
		if err != nil {
			return fail(fmt.Errorf("daemon: grants.%s.protected_resource: %w", name, err))
		}
		h, err := server.NewProxy(server.ProxyConfig{
			Grant:    name,
			Upstream: up,
			DPoP:     gc.DPoP,
			Source:   proxySource{d},
			Log:      d.log.With("grant", name),
		})
		if err != nil {
			return fail(fmt.Errorf("daemon: grants.%s.proxy: %w", name, err))
		}
		ln, err := server.Listen(gc.Proxy.Listen)
		if err != nil {
			return fail(fmt.Errorf("daemon: grants.%s.proxy.listen: %w", name, err))
		}
		ps = append(ps, grantProxy{grant: name, ln: ln, h: h})
	}
	return ps, nil
}

// proxyListens maps each grant with a proxy to its address.
func proxyListens(c *config.Config) map[string]string {
	m := map[string]string{}
	for name, g := range c.Grants {
		if g.Proxy != nil {
			m[name] = g.Proxy.Listen
		}
	}
	return m
}

// keepProxies gives next's grants the proxies running has: they listen
// where they started until a restart.
func keepProxies(next, running *config.Config) {
	for name, g := range next.Grants {
		var p *config.GrantProxy
		if r, ok := running.Grants[name]; ok {
			p = r.Proxy
		}
		if g.Proxy != p {
			g.Proxy = p
			next.Grants[name] = g
		}
	}
}

// goProxies serves the proxies in g until ctx ends.
func (d *Daemon) goProxies(g *errgroup.Group, ctx context.Context, ps []grantProxy) {
	for _, p := range ps {
		d.log.Info("proxy listening", "grant", p.grant, "listen", p.ln.Addr().String())
		g.Go(func() error {
			if err := server.Serve(ctx, p.ln, p.h, d.log.With("grant", p.grant)); err != nil && err != http.ErrServerClosed {
				return fmt.Errorf("daemon: proxy of %s: %w", p.grant, err)
			}
			return nil
		})
	}
}

func sortedGrantNames(cfg *config.Config) []string {
	return slices.Sorted(maps.Keys(cfg.Grants))
}

// proxySource is the engine as a proxy's server.TokenSource.
type proxySource struct{ d *Daemon }

var _ server.TokenSource = proxySource{}

// noGID stands for a group the kernel did not name: a TCP caller has a
// uid and nothing else. (gid_t)-1 is no group on Linux (chown(2) takes it
// for "leave unchanged"), so no readers list can name it.
const noGID = math.MaxUint32

// peerOf is c as the socket's access rules judge callers.
func peerOf(c server.Caller) peer {
	p := peer{ok: true, uid: c.UID, gid: noGID}
	if c.HasGroups {
		p.gid, p.groups = c.GID, c.Groups
	}
	return p
}

// apiError is err as the socket API would answer it.
func apiError(err error) error {
	code, resp := answerOf(err)
	return &api.Error{Status: code, Code: resp.Error, Description: resp.ErrorDescription}
}

func (s proxySource) grant(c server.Caller, name string) (*grant, error) {
	g, err := s.d.access(peerOf(c), name, false)
	if err != nil {
		s.d.fetchMetric(nil, statusOfErr(err))
		return nil, apiError(err)
	}
	return g, nil
}

func statusOfErr(err error) int {
	code, _ := answerOf(err)
	return code
}

func (s proxySource) Token(ctx context.Context, c server.Caller, name string) (*api.TokenResponse, error) {
	g, err := s.grant(c, name)
	if err != nil {
		return nil, err
	}
	t, err := s.d.fetch(ctx, g)
	if err != nil {
		s.d.fetchMetric(g, statusOfErr(err))
		return nil, apiError(err)
	}
	s.d.fetchMetric(g, http.StatusOK)
	return s.tokenResponse(t), nil
}

// tokenResponse is t as the socket API answers it.
func (s proxySource) tokenResponse(t *store.Token) *api.TokenResponse {
	_, p := s.d.config()
	exp := expiryOf(t, p)
	return &api.TokenResponse{
		AccessToken: t.AccessToken,
		TokenType:   t.TokenType,
		ExpiresIn:   int64(exp.Sub(s.d.clock.Now()) / time.Second),
		ExpiresAt:   exp.UTC(),
		Scope:       t.Scope,
	}
}

// Rejected is the engine's answer to a refused token (stepup.go): the
// grant refreshed once for everyone reporting the same token.
func (s proxySource) Rejected(ctx context.Context, c server.Caller, name string, req api.RejectedRequest) (*api.TokenResponse, error) {
	g, err := s.grant(c, name)
	if err != nil {
		return nil, err
	}
	t, err := s.d.rejected(ctx, g, req)
	if err != nil {
		s.d.fetchMetric(g, statusOfErr(err))
		return nil, apiError(err)
	}
	s.d.fetchMetric(g, http.StatusOK)
	return s.tokenResponse(t), nil
}

// StepUp records the scopes a resource asked for (stepup.go).
func (s proxySource) StepUp(_ context.Context, c server.Caller, name string, req api.StepUpRequest) (*api.GrantStatus, error) {
	g, err := s.grant(c, name)
	if err != nil {
		return nil, err
	}
	if err := s.d.recordStepUp(g, req); err != nil {
		return nil, apiError(err)
	}
	st := s.d.status(g)
	return &st, nil
}

func (s proxySource) DPoP(ctx context.Context, c server.Caller, name string, req api.DPoPRequest) (*api.DPoPResponse, error) {
	g, err := s.grant(c, name)
	if err != nil {
		return nil, err
	}
	resp, err := s.d.proof(ctx, g, req)
	if err != nil {
		s.d.fetchMetric(g, statusOfErr(err))
		return nil, apiError(err)
	}
	s.d.fetchMetric(g, http.StatusOK)
	return resp, nil
}
