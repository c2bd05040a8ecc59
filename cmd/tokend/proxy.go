package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/server"
)

// cmdProxy is tokend proxy NAME --listen ADDR [--upstream URL]: a local
// reverse proxy that adds grant NAME's token, as a client of the daemon's
// socket, until SIGINT or SIGTERM. The upstream is the grant's
// protected_resource unless --upstream names another.
func (c *cli) cmdProxy(ctx context.Context, args []string) int {
	fs := c.flagSet("proxy", "proxy NAME --listen ADDR [--upstream URL] [--socket PATH]")
	cf := c.addClientFlags(fs)
	listen := fs.String("listen", "", "listen on `ADDR`: 127.0.0.1:PORT, [::1]:PORT or an absolute unix socket path")
	upstream := fs.String("upstream", "", "forward to `URL` (requests for / go to it, /x to URL/x); default: the grant's protected_resource")
	name, code, ok := c.parseName(fs, args)
	if !ok {
		return code
	}
	if *listen == "" {
		return c.usageErr(fs, "proxy: --listen ADDR is required")
	}
	if err := server.CheckListenAddr(*listen); err != nil {
		return c.usageErr(fs, "proxy: %s", err)
	}
	var up *url.URL
	if *upstream != "" {
		u, err := url.Parse(*upstream)
		if err != nil {
			return c.usageErr(fs, "proxy: --upstream: %s", err)
		}
		up = u
	}
	// --timeout bounds each request to the daemon, not the proxy's life.
	cl, _, cancel := c.client(context.Background(), cf)
	cancel()
	// The daemon judges this process's user; a grant it may not read, or
	// none, is said now rather than at the first request.
	sctx, scancel := context.WithTimeout(ctx, cf.timeout)
	st, err := cl.Status(sctx, name)
	scancel()
	if err != nil {
		return c.failGrant(name, err)
	}
	if up == nil {
		if st.ProtectedResource == "" {
			return c.usageErr(fs, "proxy: grant %s has no protected_resource: give --upstream URL", text(name))
		}
		if up, err = url.Parse(st.ProtectedResource); err != nil {
			return c.usageErr(fs, "proxy: grant %s's protected_resource: %s", text(name), err)
		}
	}
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	p, err := server.NewProxy(server.ProxyConfig{
		Grant:    name,
		Upstream: up,
		DPoP:     st.DPoP,
		Source:   &clientSource{cl: &api.WaitingClient{Client: cl, Wait: daemonWait, Try: cf.timeout}, uid: uint32(os.Getuid())},
		Log:      log,
	})
	if err != nil {
		return c.usageErr(fs, "proxy: %s", err)
	}
	ln, err := server.Listen(*listen)
	if err != nil {
		c.printErr(err)
		return exitError
	}
	fmt.Fprintf(c.stderr, "tokend: proxy of %s to %s listening on %s\n", text(name), text(up.Redacted()), ln.Addr())
	if err := server.Serve(ctx, ln, p, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
		c.printErr(err)
		return exitError
	}
	return exitOK
}

// clientSource is the daemon's socket as a proxy's token source. The
// daemon sees one caller, the user running tokend proxy, and decides
// whether that user may read the grant; the proxy itself admits that
// user alone. Another local user (root included) connecting to it is
// refused, even one the grant names as a reader: its own tokend proxy, or
// the socket, serve it with its own rights. Each call waits for a daemon
// that cannot be reached (api.WaitingClient), each try bounded by
// --timeout.
type clientSource struct {
	cl  *api.WaitingClient
	uid uint32
}

// daemonWait is how long a request through tokend proxy (or tokend mcp)
// waits for the daemon to answer again: long enough for a restart, after
// which the caller gets a 503 (an error answer).
const daemonWait = 30 * time.Second

var _ server.TokenSource = (*clientSource)(nil)

func (s *clientSource) admit(c server.Caller) error {
	if c.UID != s.uid {
		return &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden,
			Description: "this proxy serves uid " + strconv.FormatUint(uint64(s.uid), 10) + ", who runs it, alone"}
	}
	return nil
}

func (s *clientSource) Token(ctx context.Context, c server.Caller, grant string) (*api.TokenResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	return s.cl.Token(ctx, grant)
}

func (s *clientSource) Rejected(ctx context.Context, c server.Caller, grant string, req api.RejectedRequest) (*api.TokenResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	return s.cl.Rejected(ctx, grant, req)
}

func (s *clientSource) StepUp(ctx context.Context, c server.Caller, grant string, req api.StepUpRequest) (*api.GrantStatus, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	return s.cl.StepUp(ctx, grant, req)
}

func (s *clientSource) DPoP(ctx context.Context, c server.Caller, grant string, req api.DPoPRequest) (*api.DPoPResponse, error) {
	if err := s.admit(c); err != nil {
		return nil, err
	}
	return s.cl.DPoP(ctx, grant, req)
}
