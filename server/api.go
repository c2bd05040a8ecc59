package server

// The socket API's HTTP layer: routes, limits and answers. What the
// handlers ask of the engine is the Engine interface (engine.go); an
// engine error becomes a status code in errors.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
)

// FetchMetrics counts the socket API's answers to fetches (a token, a
// proof, a token after a rejected one) by grant and status, and every
// refusal under no grant's name. *metrics.Metrics implements it.
type FetchMetrics interface {
	ObserveFetch(grant string, code int)
}

// apiHandlers serve the socket API (package api) from an Engine.
type apiHandlers struct {
	e Engine
	m FetchMetrics
}

// newAPIServer is the server of the local API (package api) on the unix
// socket. Limits keep a slow or oversized request from holding a
// connection; a fetch of a valid token takes no lock and does no I/O.
func newAPIServer(e Engine, m FetchMetrics, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           APIHandler(e, m),
		ConnContext:       peerContext,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      e.FetchWait() + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog(log, "api"),
	}
}

// APIHandler routes the socket API's requests to e, their bodies
// bounded. Each request's context must carry its Caller (WithCaller);
// one without is judged as engine.Unknown.
func APIHandler(e Engine, m FetchMetrics) http.Handler {
	if m == nil {
		m = nopFetchMetrics{}
	}
	h := &apiHandlers{e: e, m: m}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tokens", h.handleList)
	mux.HandleFunc("GET /v1/tokens/{name}", h.handleToken)
	mux.HandleFunc("GET /v1/tokens/{name}/status", h.handleStatus)
	mux.HandleFunc("POST /v1/tokens/{name}/dpop", h.handleDPoP)
	mux.HandleFunc("POST /v1/tokens/{name}/refresh", h.handleRefresh)
	mux.HandleFunc("POST /v1/tokens/{name}/authorize", h.handleAuthorize)
	mux.HandleFunc("POST /v1/tokens/{name}/authorize/complete", h.handleComplete)
	mux.HandleFunc("POST /v1/tokens/{name}/rejected", h.handleRejected)
	mux.HandleFunc("POST /v1/tokens/{name}/step-up", h.handleStepUp)
	mux.HandleFunc("POST /v1/tokens/{name}/revoke", h.handleRevoke)
	mux.HandleFunc("POST /v1/reload", h.handleReload)
	return limitBody(mux, 64<<10)
}

type nopFetchMetrics struct{}

func (nopFetchMetrics) ObserveFetch(string, int) {}

// limitBody refuses a request whose body is over n bytes before any
// handler acts on it: an oversized one must not be answered as if it were
// fine. The body is read whole first (only POST .../dpop takes one), so
// a handler never waits on a slow sender.
func limitBody(h http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeAPIError(w, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "request body too large")
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, n))
			if err != nil {
				writeAPIError(w, http.StatusRequestEntityTooLarge, api.CodeRequestTooLarge, "request body too large")
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

func writeAPIError(w http.ResponseWriter, code int, errCode, desc string) {
	writeJSON(w, code, api.ErrorResponse{Error: errCode, ErrorDescription: desc})
}

// fail answers a request about grant that the engine failed with err.
// A refusal (the caller reached no grant) is counted under no grant's
// name, whatever the request: /metrics would otherwise tell whoever reads
// it which names exist, which the identical 403 hides from the caller.
// Other failures of fetches are counted under the grant.
func (h *apiHandlers) fail(w http.ResponseWriter, grant string, fetch bool, err error) {
	code, resp := answerOf(err)
	switch {
	case isRefusal(err):
		h.m.ObserveFetch("", code)
	case fetch:
		h.m.ObserveFetch(grant, code)
	}
	setRetryAfter(w, err)
	writeJSON(w, code, resp)
}

// access answers the refusal when the caller may not read the request's
// grant (or act on it, when write is set), before its body is read.
func (h *apiHandlers) access(w http.ResponseWriter, r *http.Request, write bool) bool {
	if err := h.e.Access(callerOf(r.Context()), r.PathValue("name"), write); err != nil {
		h.fail(w, "", false, err)
		return false
	}
	return true
}

func (h *apiHandlers) handleToken(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	t, err := h.e.Token(r.Context(), callerOf(r.Context()), name)
	if err != nil {
		h.fail(w, name, true, err)
		return
	}
	h.m.ObserveFetch(name, http.StatusOK)
	hd := w.Header()
	hd["Cache-Control"] = noStore
	if (r.URL.RawQuery != "" && r.URL.Query().Get("format") == "raw") || wantsText(r) {
		hd["Content-Type"] = textPlain
		_, _ = io.WriteString(w, t.AccessToken+"\n")
		return
	}
	// The hot path: the body is appended by hand into a pooled buffer,
	// the same bytes encoding/json writes for an api.TokenResponse.
	bp := bodyPool.Get().(*[]byte)
	b := appendTokenJSON((*bp)[:0], &t)
	hd["Content-Type"] = appJSON
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

// appendTokenJSON appends t, with a newline, as json.Encoder would.
func appendTokenJSON(b []byte, t *api.TokenResponse) []byte {
	b = append(b, `{"access_token":`...)
	b = appendJSONString(b, t.AccessToken)
	b = append(b, `,"token_type":`...)
	b = appendJSONString(b, t.TokenType)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, t.ExpiresIn, 10)
	b = append(b, `,"expires_at":"`...)
	b = t.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
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

func (h *apiHandlers) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.e.List(callerOf(r.Context())))
}

func (h *apiHandlers) handleStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, err := h.e.Status(callerOf(r.Context()), name)
	if err != nil {
		h.fail(w, name, false, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *apiHandlers) handleRefresh(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	// A failed refresh is reported in the status (state, last_error).
	st, err := h.e.Refresh(r.Context(), callerOf(r.Context()), name)
	if err != nil {
		h.fail(w, name, false, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (h *apiHandlers) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if !h.access(w, r, true) {
		return
	}
	var req api.AuthorizeRequest
	if !decodeBody(w, r, &req, true) {
		return
	}
	name := r.PathValue("name")
	resp, err := h.e.Authorize(r.Context(), callerOf(r.Context()), name, req)
	if err != nil {
		h.fail(w, name, false, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleComplete completes a paste-back authorization, for the operator
// who started it.
func (h *apiHandlers) handleComplete(w http.ResponseWriter, r *http.Request) {
	statusAction(h, w, r, true, func(c Caller, name string, req api.CompleteRequest) (api.GrantStatus, error) {
		return h.e.CompletePaste(r.Context(), c, name, req)
	})
}

// handleRejected serves POST .../rejected to the grant's readers: a token
// other than the one a resource refused.
func (h *apiHandlers) handleRejected(w http.ResponseWriter, r *http.Request) {
	if !h.access(w, r, false) {
		return
	}
	var req api.RejectedRequest
	if !decodeBody(w, r, &req, false) {
		return
	}
	name := r.PathValue("name")
	t, err := h.e.Rejected(r.Context(), callerOf(r.Context()), name, req)
	if err != nil {
		h.fail(w, name, true, err)
		return
	}
	h.m.ObserveFetch(name, http.StatusOK)
	w.Header()["Cache-Control"] = noStore
	w.Header()["Content-Type"] = appJSON
	_, _ = w.Write(appendTokenJSON(nil, &t))
}

// handleStepUp serves POST .../step-up to the grant's readers.
func (h *apiHandlers) handleStepUp(w http.ResponseWriter, r *http.Request) {
	statusAction(h, w, r, false, func(c Caller, name string, req api.StepUpRequest) (api.GrantStatus, error) {
		return h.e.StepUp(c, name, req)
	})
}

// statusAction serves a request whose JSON body, a T, act carries out on
// the named grant (which the caller may read, or act on when write is
// set), answering the grant's status.
func statusAction[T any](h *apiHandlers, w http.ResponseWriter, r *http.Request, write bool, act func(c Caller, name string, req T) (api.GrantStatus, error)) {
	if !h.access(w, r, write) {
		return
	}
	var req T
	if !decodeBody(w, r, &req, false) {
		return
	}
	name := r.PathValue("name")
	st, err := act(callerOf(r.Context()), name, req)
	if err != nil {
		h.fail(w, name, false, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
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
		writeAPIError(w, http.StatusBadRequest, api.CodeInvalidRequest, "malformed request body: "+err.Error())
		return false
	}
	return true
}

func (h *apiHandlers) handleRevoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, err := h.e.Revoke(r.Context(), callerOf(r.Context()), name)
	if err != nil {
		h.fail(w, name, false, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// handleReload serves POST /v1/reload, for operators: it reloads the
// configuration file and answers once the new configuration is in effect,
// or with 422 and the file's error when the file is invalid (the running
// configuration stays).
func (h *apiHandlers) handleReload(w http.ResponseWriter, r *http.Request) {
	resp, err := h.e.ReloadFor(callerOf(r.Context()))
	if err != nil {
		h.fail(w, "", false, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// errorLog routes net/http's internal errors (bad requests, TLS noise)
// to the structured log at debug level.
func errorLog(l *slog.Logger, server string) *log.Logger {
	return slog.NewLogLogger(l.With("server", server).Handler(), slog.LevelDebug)
}
