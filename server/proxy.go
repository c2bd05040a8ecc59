package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/engine"
	"github.com/tokend/tokend/oauth"
)

// Caller is the local user a request came from, as the kernel recorded it
// when the connection was made (the engine's own type: it decides what a
// caller may do).
type Caller = engine.Caller

// TokenSource is what the proxy asks of tokend for one grant on behalf of
// a caller: the daemon's engine when the daemon serves the proxy, the
// socket API when `tokend proxy` does. Each call decides whether caller
// may read the grant; a refusal is an *api.Error with Status 403.
// Implementations must be safe for concurrent use.
type TokenSource interface {
	// Token returns the grant's current access token.
	Token(ctx context.Context, caller Caller, grant string) (*api.TokenResponse, error)
	// Rejected says the resource refused req.AccessToken and returns a
	// token other than it (refreshing once when it is still the current
	// one).
	Rejected(ctx context.Context, caller Caller, grant string, req api.RejectedRequest) (*api.TokenResponse, error)
	// StepUp records the scopes a resource asked for.
	StepUp(ctx context.Context, caller Caller, grant string, req api.StepUpRequest) (*api.GrantStatus, error)
	// DPoP returns the grant's DPoP-bound token and a proof for req.
	DPoP(ctx context.Context, caller Caller, grant string, req api.DPoPRequest) (*api.DPoPResponse, error)
}

// Defaults of ProxyConfig.
const (
	DefaultMaxReplayBody    = 1 << 20
	DefaultRejectedInterval = 2 * time.Second
)

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Grant names the grant whose token the proxy adds.
	Grant string
	// Upstream is the protected resource: requests for / go to its path,
	// requests for /x to its path followed by /x.
	Upstream *url.URL
	// DPoP sends the grant's token as a DPoP-bound one with a fresh proof
	// per request.
	DPoP   bool
	Source TokenSource
	// Transport carries the requests upstream; nil: NewTransport().
	Transport http.RoundTripper
	// MaxReplayBody is the largest request body kept to send again after
	// the resource refused the token (default DefaultMaxReplayBody).
	// Larger bodies and bodies of unknown length are streamed and never
	// sent twice.
	MaxReplayBody int64
	// RejectedInterval is the least time between two reports of rejected
	// tokens that are not the same token (default
	// DefaultRejectedInterval): a resource that refuses every token must
	// not turn each request into a refresh.
	RejectedInterval time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Log receives what went wrong, never a token (nil: discarded).
	Log *slog.Logger
}

// Proxy is a reverse proxy to a grant's protected resource that adds the
// grant's token to every request of an admitted caller. It strips any
// Authorization, Proxy-Authorization and DPoP header the caller sent, so
// the caller's credentials never go upstream. A request whose token the
// resource refuses (401 with a Bearer or DPoP challenge) is sent once more
// with a new token when its body can be replayed; a 403 insufficient_scope
// is recorded as a step-up and passed on. Answers stream: server-sent
// events reach the caller as they come.
//
// A Proxy is an http.Handler safe for concurrent use. It serves only
// requests whose context carries a Caller (see Serve); others get 403.
type Proxy struct {
	cfg ProxyConfig
	rp  *httputil.ReverseProxy
	rej rejections
}

// NewProxy returns a Proxy, or an error when cfg cannot work.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Grant == "" {
		return nil, errors.New("server: proxy: no grant")
	}
	if cfg.Source == nil {
		return nil, errors.New("server: proxy: no token source")
	}
	u := cfg.Upstream
	if u == nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("server: proxy: the upstream must be an http or https URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("server: proxy: the upstream URL must have no user, query or fragment")
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	if cfg.MaxReplayBody <= 0 {
		cfg.MaxReplayBody = DefaultMaxReplayBody
	}
	if cfg.RejectedInterval <= 0 {
		cfg.RejectedInterval = DefaultRejectedInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg}
	p.rej.calls = map[[sha256.Size]byte]*rejectCall{}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: authTransport{p},
		// Answers of unknown length (streams) and server-sent events are
		// flushed as each write arrives: ReverseProxy does so for them
		// whatever FlushInterval says. An answer of known length goes out
		// in one piece, as from the resource: flushing each write (-1)
		// cost a quarter of the throughput in syscalls.
		FlushInterval: 0,
		ErrorHandler:  p.upstreamError,
		// The standard log would be the process's stderr.
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// NewTransport returns the transport a Proxy uses by default:
// http.DefaultTransport's settings, keeping up to 64 idle connections to
// the resource. Every caller's requests go to one host, where the
// default of 2 would open and close a connection for most requests of
// concurrent callers.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return t
}

type callerKey struct{}

// WithCaller returns ctx carrying caller, as Serve records it for each
// connection.
func WithCaller(ctx context.Context, caller Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// CallerFrom returns the caller recorded in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := CallerFrom(r.Context()); !ok {
		writeError(w, &api.Error{Status: http.StatusForbidden, Code: api.CodeForbidden, Description: "the proxy does not know who is calling"})
		return
	}
	if r.Method == http.MethodConnect {
		// The proxy forwards to one resource; it is no tunnel to others.
		writeError(w, &api.Error{Status: http.StatusMethodNotAllowed, Code: api.CodeInvalidRequest, Description: "CONNECT is not forwarded"})
		return
	}
	p.rp.ServeHTTP(w, r)
}

// rewrite points the request at the resource. The caller's credentials
// and forwarding headers are dropped here; authTransport adds the grant's.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	out, u := pr.Out, p.cfg.Upstream
	out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
	out.URL.Path, out.URL.RawPath = joinPath(u, pr.In.URL)
	out.Host = ""
	for _, h := range []string{"Authorization", "Proxy-Authorization", "Dpop", "Cookie"} {
		out.Header.Del(h)
	}
}

// joinPath appends the request's path to the upstream's: / is the
// resource itself (no trailing slash added: /mcp and /mcp/ are different
// endpoints to many servers).
func joinPath(base, in *url.URL) (path, rawPath string) {
	if in.Path == "" || in.Path == "/" {
		return base.Path, base.RawPath
	}
	bp := strings.TrimSuffix(base.EscapedPath(), "/")
	rp := bp + in.EscapedPath()
	path = strings.TrimSuffix(base.Path, "/") + in.Path
	if rp == (&url.URL{Path: path}).EscapedPath() {
		return path, ""
	}
	return path, rp
}

// sourceError is a TokenSource failure that is not an answer of tokend's
// (tokend could not be reached): the resource was never asked.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// upstreamError answers a request that got no answer from the resource,
// or whose token could not be had.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	if errors.As(err, &ae) {
		writeError(w, ae)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The caller went away.
		return
	}
	var se *sourceError
	if errors.As(err, &se) {
		p.cfg.Log.Warn("proxy: tokend did not answer for the grant's token", "grant", p.cfg.Grant, "error", err.Error())
		writeError(w, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeTemporarilyUnavailable, Description: "tokend did not answer for the grant's token"})
		return
	}
	p.cfg.Log.Warn("proxy: the resource did not answer", "grant", p.cfg.Grant, "error", err.Error())
	writeError(w, &api.Error{Status: http.StatusBadGateway, Code: api.CodeTemporarilyUnavailable, Description: "the protected resource did not answer"})
}

// writeError answers e as the socket API does.
func writeError(w http.ResponseWriter, e *api.Error) {
	status := e.Status
	if status < 400 || status > 599 {
		status = http.StatusBadGateway
	}
	if status == http.StatusForbidden {
		// A caller who may not read the grant keeps no connection open.
		w.Header().Set("Connection", "close")
	}
	code := e.Code
	if code == "" {
		code = http.StatusText(status)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(appendErrorJSON(nil, code, e.Description))
}

func appendErrorJSON(b []byte, code, desc string) []byte {
	b = append(b, `{"error":`...)
	b = appendQuoted(b, code)
	if desc != "" {
		b = append(b, `,"error_description":`...)
		b = appendQuoted(b, desc)
	}
	return append(b, "}\n"...)
}

// authTransport sends a request upstream with the grant's credentials, and
// once more with new ones when the resource refused them and the request
// can be replayed.
type authTransport struct{ p *Proxy }

func (t authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.p
	ctx := req.Context()
	caller, _ := CallerFrom(ctx)
	replay := p.replayable(req)
	cred, err := p.credential(ctx, caller, req, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.send(req, cred, false)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		ch, raw := tokenChallenge(resp, cred.dpop)
		if nonce := resp.Header.Get("DPoP-Nonce"); nonce != "" && cred.dpop && wantsNonce(ch) && replay {
			// RFC 9449 §9: the resource wants a nonce in the proof; the
			// same token, a new proof.
			retry, err := p.credential(ctx, caller, req, &retryWith{nonce: nonce, token: cred.token})
			if err != nil {
				return resp, nil
			}
			drain(resp)
			resp, err = p.send(req, retry, true)
			if err != nil || resp.StatusCode != http.StatusUnauthorized {
				return resp, err
			}
			cred = retry
			ch, raw = tokenChallenge(resp, cred.dpop)
		}
		if !rejectsToken(ch) {
			return resp, nil
		}
		nt, err := p.rejected(ctx, caller, cred.token, raw)
		if err != nil {
			// Refusals within the interval are the rate limit at work:
			// one line for each would flood the log.
			if !errors.Is(err, errRejectedTooOften) {
				p.cfg.Log.Info("proxy: the resource refused the token and no other could be had",
					"grant", p.cfg.Grant, "error", err.Error())
			}
			return resp, nil
		}
		if !replay || nt.AccessToken == cred.token {
			return resp, nil
		}
		retry, err := p.credential(ctx, caller, req, &retryWith{token: nt.AccessToken})
		if err != nil {
			return resp, nil
		}
		drain(resp)
		return p.send(req, retry, true)
	case http.StatusForbidden:
		ch, raw := tokenChallenge(resp, cred.dpop)
		if scope, ok := insufficientScope(ch); ok {
			if _, err := p.cfg.Source.StepUp(ctx, caller, p.cfg.Grant, api.StepUpRequest{Scope: scope, Challenge: raw}); err != nil {
				p.cfg.Log.Info("proxy: the resource asked for more scopes and the step-up was not recorded",
					"grant", p.cfg.Grant, "scope", scope, "error", err.Error())
			}
		}
	}
	return resp, nil
}

// tokenChallenge reads the resource's challenge about the token sent (the
// DPoP one for a DPoP-bound token, else the Bearer one; see
// oauth.ParseDPoPChallenge) and the header as received, which the daemon
// gets with a report. A challenge that cannot be read, malformed or over
// oauth.MaxChallengeBytes, counts as none: the answer goes to the caller
// as it is.
func tokenChallenge(resp *http.Response, dpop bool) (oauth.Challenge, string) {
	lines := resp.Header.Values("WWW-Authenticate")
	parse := oauth.ParseBearerChallenge
	if dpop {
		parse = oauth.ParseDPoPChallenge
	}
	c, err := parse(lines)
	if err != nil || !c.Found {
		return oauth.Challenge{}, ""
	}
	return c, strings.Join(lines, ", ")
}

// wantsNonce: the resource asks for a DPoP proof with its nonce (RFC 9449
// §9), not for another token.
func wantsNonce(c oauth.Challenge) bool {
	return c.Scheme == "DPoP" && c.Error == "use_dpop_nonce"
}

// rejectsToken: a 401 with a Bearer or DPoP challenge says the token the
// proxy sent is not good (invalid_token, or no error at all: a resource
// that does not know the token may answer as if there were none), except
// when it only asks for a DPoP nonce.
func rejectsToken(c oauth.Challenge) bool {
	return c.Found && !wantsNonce(c) && c.Error != "insufficient_scope"
}

// insufficientScope returns the scopes a 403 insufficient_scope asks for.
func insufficientScope(c oauth.Challenge) (string, bool) {
	if c.Error != "insufficient_scope" {
		return "", false
	}
	s := strings.TrimSpace(c.Scope)
	return s, s != ""
}

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// replayable makes req's body one that can be sent twice when it is small
// enough and its length known; it reports whether it is.
func (p *Proxy) replayable(req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
		return true
	}
	if req.ContentLength < 0 || req.ContentLength > p.cfg.MaxReplayBody {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, req.ContentLength))
	if err != nil || int64(len(b)) != req.ContentLength {
		// The caller's body broke off: send what there is, once, and let
		// the upstream see the short body.
		req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), req.Body))
		return false
	}
	req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return true
}

// credential is what one attempt sends.
type credential struct {
	token string
	dpop  bool
	proof string
}

// retryWith: the token to use instead of the current one (a Bearer
// grant's), and a DPoP nonce (a DPoP grant's proof).
type retryWith struct {
	token, nonce string
}

// credential asks the source for what to send with req.
func (p *Proxy) credential(ctx context.Context, caller Caller, req *http.Request, with *retryWith) (credential, error) {
	if p.cfg.DPoP {
		dr := api.DPoPRequest{Method: req.Method, URL: htu(req.URL)}
		if with != nil {
			dr.Nonce = with.nonce
		}
		if dr.Nonce == "" {
			dr.Nonce = p.rej.dpopNonce()
		}
		resp, err := p.cfg.Source.DPoP(ctx, caller, p.cfg.Grant, dr)
		if err != nil {
			return credential{}, sourceErr(err)
		}
		return credential{token: resp.AccessToken, dpop: true, proof: resp.DPoP}, nil
	}
	if with != nil && with.token != "" {
		return credential{token: with.token}, nil
	}
	tr, err := p.cfg.Source.Token(ctx, caller, p.cfg.Grant)
	if err != nil {
		return credential{}, sourceErr(err)
	}
	return credential{token: tr.AccessToken}, nil
}

// sourceErr marks err as the token source's unless it is tokend's answer.
func sourceErr(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	return &sourceError{err}
}

// send sends req upstream with c; again is a second attempt, which goes
// as a copy with the body rewound (replayable made it so). A DPoP-Nonce
// of the answer is kept for the next proofs.
func (p *Proxy) send(req *http.Request, c credential, again bool) (*http.Response, error) {
	out := req
	if again {
		out = req.Clone(req.Context())
		if req.GetBody != nil {
			b, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			out.Body = b
		}
	}
	if c.dpop {
		out.Header.Set("Authorization", "DPoP "+c.token)
		out.Header.Set("DPoP", c.proof)
	} else {
		out.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := p.cfg.Transport.RoundTrip(out)
	if err == nil && p.cfg.DPoP {
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			p.rej.mu.Lock()
			p.rej.nonce = n
			p.rej.mu.Unlock()
		}
	}
	return resp, err
}

// htu is the request's URL as a DPoP proof names it: no query, no
// fragment (RFC 9449 §4.2).
func htu(u *url.URL) string {
	v := *u
	v.RawQuery, v.Fragment, v.RawFragment, v.User = "", "", "", nil
	return v.String()
}

// drain reads a little of an answer that will not be passed on, so that
// its connection can be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// rejections reports rejected tokens to the source: one report per token
// however many requests it failed (the others wait for that report's
// answer), and reports of different tokens at least RejectedInterval
// apart.
type rejections struct {
	mu    sync.Mutex
	last  time.Time
	calls map[[sha256.Size]byte]*rejectCall
	nonce string
}

type rejectCall struct {
	done chan struct{}
	at   time.Time
	resp *api.TokenResponse
	err  error
}

// errRejectedTooOften: another token was reported a moment ago.
var errRejectedTooOften = errors.New("server: a rejected token was reported a moment ago")

// rejected reports token as refused by the resource and returns the token
// to retry with.
func (p *Proxy) rejected(ctx context.Context, caller Caller, token, challenge string) (*api.TokenResponse, error) {
	key := sha256.Sum256([]byte(token))
	r := &p.rej
	now := p.cfg.Now()
	r.mu.Lock()
	for k, c := range r.calls {
		// A report is reused while it is recent; later the token is
		// long gone anyway.
		if now.Sub(c.at) > time.Minute {
			delete(r.calls, k)
		}
	}
	c, ok := r.calls[key]
	if !ok {
		if !r.last.IsZero() && now.Sub(r.last) < p.cfg.RejectedInterval {
			r.mu.Unlock()
			return nil, errRejectedTooOften
		}
		r.last = now
		c = &rejectCall{done: make(chan struct{}), at: now}
		r.calls[key] = c
		r.mu.Unlock()
		// The report outlives the request that made it: the others
		// waiting for it must not fail because this caller went away.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		c.resp, c.err = p.cfg.Source.Rejected(rctx, caller, p.cfg.Grant, api.RejectedRequest{AccessToken: token, Challenge: challenge})
		cancel()
		close(c.done)
	} else {
		r.mu.Unlock()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.err != nil {
		return nil, c.err
	}
	if !ok {
		return c.resp, nil
	}
	// Another caller's report: its answer was fetched with that caller's
	// rights, so this one asks for the current token with its own.
	if p.cfg.DPoP {
		return c.resp, nil
	}
	return p.cfg.Source.Token(ctx, caller, p.cfg.Grant)
}

func (r *rejections) dpopNonce() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nonce
}
