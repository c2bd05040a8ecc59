package daemon

// The socket API's HTTP layer: routes, limits, and the one place an
// engine error becomes a status code and an api.ErrorResponse (answerOf).
// What the handlers ask of the engine is in fetch.go, authorize.go and
// reload.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/store"
)

// apiServer serves the local API (package api) on the unix socket. Limits keep a
// slow or oversized request from holding a connection; a fetch of a valid
// token takes no lock and does no I/O.
func (d *Daemon) apiServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tokens", d.handleList)
	mux.HandleFunc("GET /v1/tokens/{name}", d.handleToken)
	mux.HandleFunc("GET /v1/tokens/{name}/status", d.handleStatus)
	mux.HandleFunc("POST /v1/tokens/{name}/dpop", d.handleDPoP)
	mux.HandleFunc("POST /v1/tokens/{name}/refresh", d.handleRefresh)
	mux.HandleFunc("POST /v1/tokens/{name}/authorize", d.handleAuthorize)
	mux.HandleFunc("POST /v1/tokens/{name}/authorize/complete", d.handleComplete)
	mux.HandleFunc("POST /v1/tokens/{name}/rejected", d.handleRejected)
	mux.HandleFunc("POST /v1/tokens/{name}/step-up", d.handleStepUp)
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

// socketServer is the API server on ln, with ln bounded by limits
// (connLimiter): the server's ConnState tells the limiter which
// connections are idle. The peer's credentials are read once per
// connection, at accept.
func (d *Daemon) socketServer(ln net.Listener, limits connLimits) (*http.Server, net.Listener) {
	srv := d.apiServer()
	return srv, d.limitListener("api", ln, srv, limits, func(uid uint32) bool { return uid == 0 || uid == d.selfUID })
}

// limitListener bounds ln, the listener srv serves, by limits (see
// connLimiter); privileged names the uids the reserve is for (nil: none).
func (d *Daemon) limitListener(name string, ln net.Listener, srv *http.Server, limits connLimits, privileged func(uint32) bool) net.Listener {
	m, _ := d.metrics.(ListenerMetrics)
	cl := newConnLimiter(name, ln, limits, privileged, d.log, m)
	srv.ConnState = cl.connState
	return cl
}

// limitBody refuses a request whose body is over n bytes before any
// handler acts on it: an oversized one must not be answered as if it were
// fine. The body is read whole first (only POST .../dpop takes one), so
// a handler never waits on a slow sender.
func limitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeError(w, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "request body too large")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n))
			if err != nil {
				writeError(w, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "request body too large")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
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
	writeJSON(w, code, api.ErrorResponse{Error: errCode, ErrorDescription: desc})
}

// statusOf is the HTTP status of an engine error of kind k.
func statusOf(k errorKind) int {
	switch k {
	case kindBadRequest:
		return http.StatusBadRequest
	case kindForbidden:
		return http.StatusForbidden
	case kindNotFound:
		return http.StatusNotFound
	case kindReauthorization:
		return http.StatusConflict
	case kindUnavailable:
		return http.StatusServiceUnavailable
	case kindTimeout:
		return http.StatusGatewayTimeout
	case kindProvider:
		return http.StatusBadGateway
	case kindInvalidConfiguration:
		return http.StatusUnprocessableEntity
	case kindNotSupported:
		return http.StatusNotImplemented
	case kindTooMany:
		return http.StatusTooManyRequests
	}
	return http.StatusInternalServerError
}

// answerOf is the answer to a request the engine failed with err: the HTTP
// status of its kind and its code and description. The engine returns
// *engineError only; anything else would be a bug, answered 500
// internal_error.
func answerOf(err error) (int, api.ErrorResponse) {
	var e *engineError
	if !errors.As(err, &e) {
		return http.StatusInternalServerError, api.ErrorResponse{Error: api.CodeInternalError, ErrorDescription: err.Error()}
	}
	return statusOf(e.kind), api.ErrorResponse{Error: e.code, ErrorDescription: e.desc}
}

// writeFailure answers a request the engine failed with err.
func writeFailure(w http.ResponseWriter, err error) {
	code, resp := answerOf(err)
	setRetryAfter(w, err)
	writeJSON(w, code, resp)
}

// setRetryAfter sends the Retry-After an engine error carries.
func setRetryAfter(w http.ResponseWriter, err error) {
	if e := (*engineError)(nil); errors.As(err, &e) && e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
}

// refuse answers a request refused before it reached a grant (access,
// operatorOnly). Refusals are counted under one label
// (metrics.UnknownGrant), never under the grant's name: /metrics would
// otherwise tell whoever reads it which names exist, which the identical
// 403 hides from the caller.
func (d *Daemon) refuse(w http.ResponseWriter, err error) {
	code, resp := answerOf(err)
	d.fetchMetric(nil, code)
	writeJSON(w, code, resp)
}

// lookup finds the named grant the caller may read (or act on, when write
// is set), or answers the refusal.
func (d *Daemon) lookup(w http.ResponseWriter, r *http.Request, write bool) (*grant, bool) {
	g, err := d.access(peerFrom(r.Context()), r.PathValue("name"), write)
	if err != nil {
		d.refuse(w, err)
		return nil, false
	}
	return g, true
}

func (d *Daemon) fetchMetric(g *grant, code int) {
	name := ""
	if g != nil {
		name = g.name
	}
	d.metrics.ObserveFetch(name, code)
}

// writeFetchFailure answers a request for g's token that failed with err,
// and counts it as a fetch.
func (d *Daemon) writeFetchFailure(w http.ResponseWriter, g *grant, err error) {
	code, resp := answerOf(err)
	d.fetchMetric(g, code)
	setRetryAfter(w, err)
	writeJSON(w, code, resp)
}

func (d *Daemon) handleToken(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, false)
	if !ok {
		return
	}
	t, err := d.fetch(r.Context(), g)
	if err != nil {
		d.writeFetchFailure(w, g, err)
		return
	}
	d.fetchMetric(g, http.StatusOK)
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
	// the same bytes encoding/json writes for an api.TokenResponse.
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

// appendTokenJSON appends the api.TokenResponse of t, with a newline, as
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

func (d *Daemon) handleList(w http.ResponseWriter, r *http.Request) {
	p := peerFrom(r.Context())
	gs := d.grantList()
	list := api.TokenList{Grants: []api.GrantStatus{}}
	for _, g := range gs {
		if d.mayRead(p, g) {
			list.Grants = append(list.Grants, d.status(g))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, false)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, d.statusWithHistory(g))
}

func (d *Daemon) handleRefresh(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	if err := d.refreshNow(r.Context(), g); err != nil {
		writeFailure(w, err)
		return
	}
	// A failed refresh is reported in the status (state, last_error).
	writeJSON(w, http.StatusOK, d.status(g))
}

func (d *Daemon) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	var req api.AuthorizeRequest
	if !decodeBody(w, r, &req, true) {
		return
	}
	var resp *api.AuthorizeResponse
	var err error
	if req.Paste {
		resp, err = d.authorizePaste(r.Context(), g, peerFrom(r.Context()))
	} else {
		resp, err = d.authorize(r.Context(), g)
	}
	if err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleComplete completes a paste-back authorization (paste.go), for
// the operator who started it.
func (d *Daemon) handleComplete(w http.ResponseWriter, r *http.Request) {
	statusAction(d, w, r, true, func(g *grant, req api.CompleteRequest) error {
		return d.completePaste(r.Context(), g, peerFrom(r.Context()), req)
	})
}

// handleRejected serves POST .../rejected (stepup.go) to the grant's readers.
func (d *Daemon) handleRejected(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, false)
	if !ok {
		return
	}
	var req api.RejectedRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	t, err := d.rejected(r.Context(), g, req)
	if err != nil {
		d.writeFetchFailure(w, g, err)
		return
	}
	d.fetchMetric(g, http.StatusOK)
	_, p := d.config()
	w.Header()["Cache-Control"] = noStore
	w.Header()["Content-Type"] = appJSON
	_, _ = w.Write(appendTokenJSON(nil, t, expiryOf(t, p), d.clock.Now()))
}

// handleStepUp serves POST .../step-up (stepup.go) to the grant's readers.
func (d *Daemon) handleStepUp(w http.ResponseWriter, r *http.Request) {
	statusAction(d, w, r, false, func(g *grant, req api.StepUpRequest) error {
		return d.recordStepUp(g, req)
	})
}

// statusAction serves a request whose JSON body, a T, act carries out on
// the named grant (which the caller may read, or act on when write is
// set), answering the grant's status.
func statusAction[T any](d *Daemon, w http.ResponseWriter, r *http.Request, write bool, act func(g *grant, req T) error) {
	g, ok := d.lookup(w, r, write)
	if !ok {
		return
	}
	var req T
	if !decodeBody(w, r, &req, false) {
		return
	}
	if err := act(g, req); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d.status(g))
}

// decodeBody decodes r's JSON body into v, or answers 400
// invalid_request; optional accepts an empty body.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) bool {
	b, err := io.ReadAll(r.Body)
	if err == nil && len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return true
		}
		err = errors.New("the request needs a JSON body")
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeInvalidRequest, "malformed request body: "+err.Error())
		return false
	}
	return true
}

func (d *Daemon) handleRevoke(w http.ResponseWriter, r *http.Request) {
	g, ok := d.lookup(w, r, true)
	if !ok {
		return
	}
	if err := d.revoke(r.Context(), g); err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, d.status(g))
}

// handleReload serves POST /v1/reload, for operators: it reloads the
// configuration file and answers once the new configuration is in effect,
// or with 422 and the file's error when the file is invalid (the running
// configuration stays).
func (d *Daemon) handleReload(w http.ResponseWriter, r *http.Request) {
	if err := d.operatorOnly(peerFrom(r.Context())); err != nil {
		d.refuse(w, err)
		return
	}
	resp, err := d.ReloadConfig()
	if err != nil {
		writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}
