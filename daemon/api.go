package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// nearExpiry is how close to expiry a token is no longer handed out without
// first trying a refresh: a caller needs a moment to use it.
const nearExpiry = 5 * time.Second

// apiServer serves the local fetch API on the unix socket. Limits keep a
// slow or oversized request from holding a connection; a fetch of a valid
// token takes no lock and does no I/O.
func (d *Daemon) apiServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tokens", d.handleList)
	mux.HandleFunc("GET /v1/tokens/{name}", d.handleToken)
	mux.HandleFunc("GET /v1/tokens/{name}/status", d.handleStatus)
	mux.HandleFunc("POST /v1/tokens/{name}/refresh", d.handleRefresh)
	mux.HandleFunc("POST /v1/tokens/{name}/authorize", d.handleAuthorize)
	mux.HandleFunc("POST /v1/tokens/{name}/revoke", d.handleRevoke)
	mux.HandleFunc("POST /v1/reload", d.handleReload)
	return &http.Server{
		Handler:           limitBody(mux, 64<<10),
		ConnContext:       peerContext,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      d.opts.FetchWait + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slogErrorLog(d.log, "api"),
	}
}

// socketServer is the API server on ln, with ln bounded (connLimiter):
// the server's ConnState tells the limiter which connections are idle.
// The peer's credentials are read once per connection, at accept.
func (d *Daemon) socketServer(ln net.Listener) (*http.Server, net.Listener) {
	srv := d.apiServer()
	cl := newConnLimiter(ln, apiConnLimits(), func(uid uint32) bool { return uid == 0 || uid == d.selfUID }, d.log)
	srv.ConnState = cl.connState
	return srv, cl
}

// limitBody refuses a request whose body is over n bytes before any
// handler acts on it. The API takes no bodies, but an oversized one must
// not be answered as if it were fine.
func limitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "request body too large")
			return
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, desc string) {
	writeJSON(w, code, ErrorResponse{Error: errCode, ErrorDescription: desc})
}

// lookup finds the named grant the caller may read. Callers who are not
// operators get the same 403 for a grant that does not exist as for one
// they may not read, so they learn nothing about other grants.
func (d *Daemon) lookup(w http.ResponseWriter, r *http.Request, write bool) (*grant, peer, bool) {
	p := peerFrom(r.Context())
	name := r.PathValue("name")
	g := d.grant(name)
	op := d.isOperator(p)
	// Refusals are counted under one label (metrics.UnknownGrant), never
	// under the grant's name: /metrics would otherwise tell whoever reads
	// it which names exist, which the identical 403 hides from the caller.
	switch {
	case write && !op:
		d.fetchMetric(nil, http.StatusForbidden)
		writeError(w, http.StatusForbidden, "forbidden", "this action needs root or an operator group")
		return nil, p, false
	case g == nil && op:
		d.fetchMetric(nil, http.StatusNotFound)
		writeError(w, http.StatusNotFound, "unknown_grant", "no grant named "+strconv.Quote(name))
		return nil, p, false
	case g == nil || !d.mayRead(p, g):
		d.fetchMetric(nil, http.StatusForbidden)
		writeError(w, http.StatusForbidden, "forbidden", "not allowed to read this grant (or no such grant)")
		return nil, p, false
	}
	return g, p, true
}

func (d *Daemon) fetchMetric(g *grant, code int) {
	name := ""
	if g != nil {
		name = g.name
	}
	d.metrics.ObserveFetch(name, code)
}

func (d *Daemon) handleToken(w http.ResponseWriter, r *http.Request) {
	g, _, ok := d.lookup(w, r, false)
	if !ok {
		return
	}
	t, code, errCode, desc := d.fetch(r.Context(), g)
	d.fetchMetric(g, code)
	if t == nil {
		writeError(w, code, errCode, desc)
		return
	}
	_, p := d.config()
	exp := expiryOf(t, p)
	h := w.Header()
	h["Cache-Control"] = noStore
	if (r.URL.RawQuery != "" && r.URL.Query().Get("format") == "raw") || wantsText(r) {
		h["Content-Type"] = textPlain
		_, _ = io.WriteString(w, t.AccessToken+"\n")
		return
	}
	// The hot path: the body is appended by hand into a pooled buffer,
	// the same bytes encoding/json writes for a TokenResponse.
	bp := bodyPool.Get().(*[]byte)
	b := appendTokenJSON((*bp)[:0], t, exp, d.clock.Now())
	h["Content-Type"] = appJSON
	_, _ = w.Write(b)
	*bp = b
	bodyPool.Put(bp)
}

var (
	noStore   = []string{"no-store"}
	textPlain = []string{"text/plain; charset=utf-8"}
	appJSON   = []string{"application/json"}
	bodyPool  = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
)

// appendTokenJSON appends the TokenResponse of t, with a newline, as
// json.Encoder would.
func appendTokenJSON(b []byte, t *store.Token, exp, now time.Time) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, t.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, t.TokenType)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, int64(exp.Sub(now)/time.Second), 10)
	b = append(b, `,"expires_at":"`...)
	b = exp.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if t.Scope != "" {
		b = append(b, `,"scope":`...)
		b = appendJSONString(b, t.Scope)
	}
	return append(b, "}\n"...)
}

// appendJSONString quotes s as encoding/json does: plain printable ASCII
// (what tokens are made of) is copied, anything else goes through
// encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func wantsText(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	return strings.HasPrefix(accept, "text/plain")
}

// fetch returns a token to hand out. A valid token is returned at once.
// An expired or nearly expired one triggers the grant's refresh (shared
// with any in flight) and waits for it, at most until the request's
// deadline.
func (d *Daemon) fetch(ctx context.Context, g *grant) (*store.Token, int, string, string) {
	_, p := d.config()
	now := d.clock.Now()
	t := g.cur.Load()
	if usable(now.Add(nearExpiry), t, p) {
		return t, http.StatusOK, "", ""
	}
	if !g.renewable(t) || t.State == StateReauthorization {
		if usable(now, t, p) {
			return t, http.StatusOK, "", ""
		}
		return nil, http.StatusConflict, StateReauthorization, "a person must authorize this grant: tokend authorize " + g.name
	}
	if t.State == StateCredentialsError || t.State == StateConfigurationError {
		if usable(now, t, p) {
			return t, http.StatusOK, "", ""
		}
		return nil, http.StatusServiceUnavailable, t.State, oauth.Printable(t.LastError)
	}
	if g.backingOff.Load() {
		// The provider just failed and the refresh waits to retry: waiting
		// for it would only make the caller's 503 late.
		return nil, http.StatusServiceUnavailable, "temporarily_unavailable",
			"the token has expired and the provider is failing (" + oauth.Printable(t.LastError) + "); tokend is retrying"
	}
	wctx, cancel := context.WithTimeout(ctx, d.opts.FetchWait)
	defer cancel()
	nt, err := d.refreshWait(wctx, g, "on-demand")
	now = d.clock.Now()
	if nt == nil {
		nt = g.cur.Load()
	}
	if nt != nil && usable(now, nt, p) {
		return nt, http.StatusOK, "", ""
	}
	if nt != nil && nt.State == StateReauthorization {
		return nil, http.StatusConflict, StateReauthorization, "a person must authorize this grant: tokend authorize " + g.name
	}
	desc := "the token has expired and the provider could not be reached"
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			desc = "the token has expired and its refresh did not finish in time"
		} else {
			desc = err.Error()
		}
	}
	return nil, http.StatusServiceUnavailable, "temporarily_unavailable", desc
}

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	p := peerFrom(r.Context())
	gs := d.grantList()
	list := TokenList{Grants: []GrantStatus{}}
	for _, g := range gs {
		if d.mayRead(p, g) {
			list.Grants = append(list.Grants, d.status(g))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	g, _, ok := d.lookup(w, r, false)
	if !ok {
		return
	}
	s := d.status(g)
	if hist, err := d.st.History(g.name); err == nil {
		for _, a := range hist {
			s.History = append(s.History, AttemptStatus{At: a.At.UTC(), Result: a.Result, LatencyMS: a.Latency.Milliseconds(), Reason: a.Reason, Error: a.Error})
		}
	}
	writeJSON(w, http.StatusOK, s)
}

func (d *Daemon) handleRefresh(w http.ResponseWriter, r *http.Request) {
	g, _, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	t := g.cur.Load()
	if !g.renewable(t) {
		writeError(w, http.StatusConflict, StateReauthorization, "no refresh token: a person must authorize this grant: tokend authorize "+g.name)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.opts.FetchWait)
	defer cancel()
	if _, err := d.refreshWait(ctx, g, "manual"); err != nil && ctx.Err() != nil {
		writeError(w, http.StatusGatewayTimeout, "timeout", "the refresh is still running; see tokend status "+g.name)
		return
	}
	// A failed refresh is reported in the status (state, last_error).
	writeJSON(w, http.StatusOK, d.status(g))
}

func (d *Daemon) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	g, _, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	resp, code, err := d.authorize(r.Context(), g)
	if err != nil {
		writeError(w, code, "authorization_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (d *Daemon) handleRevoke(w http.ResponseWriter, r *http.Request) {
	g, _, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	if err := d.revoke(r.Context(), g); err != nil {
		writeError(w, http.StatusBadGateway, "revocation_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d.status(g))
}

// status describes g without secrets.
func (d *Daemon) status(g *grant) GrantStatus {
	cfg, p := d.config()
	now := d.clock.Now()
	s := GrantStatus{Name: g.name, Type: g.cfg.Type}
	if c, ok := cfg.Clients[g.cfg.Client]; ok {
		s.Provider = c.Provider
	}
	t := g.cur.Load()
	// A record may hold only an authorization outcome: stateOf says what
	// a grant never obtained waits for.
	s.State, s.StateSince = g.stateOf(t), t.StateSince
	if t.State == StateValid && !usable(now, t, p) {
		s.State = StateExpired
	}
	s.Scope = t.Scope
	if t.AccessToken != "" {
		exp := expiryOf(t, p)
		s.ExpiresAt = exp.UTC()
		s.ExpiresIn = int64(exp.Sub(now) / time.Second)
		if g.renewable(t) {
			s.NextRefresh = refreshAt(t, p, g.jitterFor(t.Generation)).UTC()
		}
	}
	s.RefreshExpires = t.RefreshExpiry
	s.HasRefreshToken = t.RefreshToken != ""
	s.Obtained = t.Obtained
	s.LastSuccess, s.LastAttempt = t.LastSuccess, t.LastAttempt
	s.LastError, s.LastErrorCode, s.Failures = oauth.Printable(t.LastError), t.LastErrorCode, t.Failures
	s.Generation = t.Generation
	s.Auth, s.AuthAt = t.Auth, t.AuthAt
	return s
}
