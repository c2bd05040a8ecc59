package devprovider

import (
	"bytes"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// FaultKind is a way for the server to misbehave.
type FaultKind int

const (
	// FaultNone is no fault.
	FaultNone FaultKind = iota
	// FaultDown hijacks and closes the connection without answering.
	FaultDown
	// FaultSlow sleeps Fault.Delay (ending early if the request is
	// cancelled) and then answers normally.
	FaultSlow
	// Fault500 answers 500 with a JSON server_error body.
	Fault500
	// Fault503 answers 503 temporarily_unavailable, with Retry-After when
	// Fault.RetryAfter is set.
	Fault503
	// Fault429 answers 429 with a plain text body and Retry-After
	// (Fault.RetryAfter, or 1 s when unset).
	Fault429
	// FaultHTML answers 200 with a text/html page (a captive portal).
	FaultHTML
	// FaultHTML502 answers 502 with a text/html page (a proxy's).
	FaultHTML502
	// FaultEmpty answers 200 application/json with an empty body.
	FaultEmpty
	// FaultHuge answers 200 application/json with a 10 MB body whose
	// first megabyte is padding, so a client reading through a 1 MiB limit
	// sees truncated JSON.
	FaultHuge
	// FaultNoAccessToken answers 200 JSON without access_token.
	FaultNoAccessToken
	// FaultErrorIn200 answers 200 {"error":"server_error"}.
	FaultErrorIn200
	// FaultInvalidGrant answers 400 invalid_grant (and changes nothing).
	FaultInvalidGrant
	// FaultInvalidClient answers 401 invalid_client with WWW-Authenticate.
	FaultInvalidClient
	// FaultInvalidRequestRefresh answers 400 invalid_request "Refresh
	// token is invalid or has already been claimed by another client", as
	// Dex does for a dead refresh token.
	FaultInvalidRequestRefresh
	// FaultStringExpiresIn succeeds with expires_in as a JSON string.
	FaultStringExpiresIn
	// FaultNoExpiresIn succeeds without expires_in (the token still
	// expires after AccessTTL).
	FaultNoExpiresIn
	// FaultNoRefreshToken succeeds without a refresh token: none is issued,
	// and a refresh grant neither rotates nor returns one even when
	// Options.Rotate is set, so the old one stays valid (RFC 6749 §6).
	FaultNoRefreshToken
	// FaultLowercaseBearer succeeds with token_type "bearer".
	FaultLowercaseBearer
	// FaultDPoPDowngrade ignores DPoP proofs: tokens are issued unbound,
	// with token_type Bearer, as by a provider that does not know DPoP.
	FaultDPoPDowngrade
	// FaultDPoPNonceLoop answers every request carrying a DPoP proof 400
	// use_dpop_nonce with a new DPoP-Nonce, whatever nonce the proof has.
	FaultDPoPNonceLoop
)

var faultNames = [...]string{
	"none", "down", "slow", "500", "503", "429", "html", "html502", "empty",
	"huge", "no_access_token", "error_in_200", "invalid_grant",
	"invalid_client", "invalid_request_refresh", "string_expires_in",
	"no_expires_in", "no_refresh_token", "lowercase_bearer",
	"dpop_downgrade", "dpop_nonce_loop",
}

// String returns a short name such as "503" or "invalid_grant".
func (k FaultKind) String() string {
	if k >= 0 && int(k) < len(faultNames) {
		return faultNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// Endpoint names for Fault.Endpoints.
const (
	EndpointToken    = "token"
	EndpointRevoke   = "revoke"
	EndpointDevice   = "device"
	EndpointRegister = "register"
)

// Fault describes an injected failure.
type Fault struct {
	Kind FaultKind
	// Times is how many matching requests the fault applies to; 0 means
	// until ClearFault or SetFault.
	Times int
	// RetryAfter is sent as Retry-After (whole seconds, rounded up) by
	// Fault503 and Fault429.
	RetryAfter time.Duration
	// Delay is how long FaultSlow waits.
	Delay time.Duration
	// GrantTypes restricts a token endpoint fault to these grant types;
	// empty means all.
	GrantTypes []string
	// Endpoints lists where the fault applies: EndpointToken,
	// EndpointRevoke, EndpointDevice, EndpointRegister. Empty means the
	// token endpoint only. The success-altering kinds (FaultStringExpiresIn
	// and after) only alter token responses.
	Endpoints []string
}

// SetFault replaces the current fault with f.
func (s *Server) SetFault(f Fault) {
	f.GrantTypes = slices.Clone(f.GrantTypes)
	f.Endpoints = slices.Clone(f.Endpoints)
	s.mu.Lock()
	s.fault, s.faultLeft = f, f.Times
	s.mu.Unlock()
}

// ClearFault removes the current fault.
func (s *Server) ClearFault() { s.SetFault(Fault{}) }

// takeFault returns the fault that applies to this request, if any, and
// uses up one of its Times.
func (s *Server) takeFault(endpoint, grantType string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if f.Kind == FaultNone {
		return Fault{}, false
	}
	eps := f.Endpoints
	if len(eps) == 0 {
		eps = []string{EndpointToken}
	}
	if !slices.Contains(eps, endpoint) {
		return Fault{}, false
	}
	if endpoint == EndpointToken && len(f.GrantTypes) > 0 && !slices.Contains(f.GrantTypes, grantType) {
		return Fault{}, false
	}
	if f.Times > 0 {
		s.faultLeft--
		if s.faultLeft <= 0 {
			s.fault = Fault{}
		}
	}
	s.stats.Faulted++
	return f, true
}

// applyFault answers the request per f and reports true, or reports false
// when the request must go on normally (FaultSlow after its delay, and the
// kinds that alter a successful answer).
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	note(w, "fault", f.Kind.String())
	switch f.Kind {
	case FaultDown:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler) // closes the connection unanswered too
		}
		conn.Close()
	case FaultSlow:
		return !s.wait(r, f.Delay)
	case Fault500:
		writeError(w, errorf(http.StatusInternalServerError, "server_error", "injected fault"))
	case Fault503:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", seconds(f.RetryAfter))
		}
		writeError(w, errorf(http.StatusServiceUnavailable, "temporarily_unavailable", "injected fault"))
	case Fault429:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = time.Second
		}
		w.Header().Set("Retry-After", seconds(ra))
		http.Error(w, "too many requests", http.StatusTooManyRequests)
	case FaultHTML, FaultHTML502:
		status, title := http.StatusOK, "Sign in to the network"
		if f.Kind == FaultHTML502 {
			status, title = http.StatusBadGateway, "502 Bad Gateway"
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", title, title)
	case FaultEmpty:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
	case FaultHuge:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		writeHuge(w)
	case FaultNoAccessToken:
		writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3600})
	case FaultErrorIn200:
		writeJSON(w, http.StatusOK, map[string]string{"error": "server_error"})
	case FaultInvalidGrant:
		writeError(w, invalidGrant("injected fault: the grant is invalid"))
	case FaultInvalidClient:
		writeError(w, invalidClient())
	case FaultInvalidRequestRefresh:
		writeError(w, invalidRequest("Refresh token is invalid or has already been claimed by another client"))
	default:
		return false
	}
	return true
}

const hugeSize = 10 << 20

func writeHuge(w http.ResponseWriter) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := w.Write([]byte(`{"padding":"`)); err != nil {
		return
	}
	for n := 0; n < hugeSize; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return // the client stopped reading
		}
	}
	w.Write([]byte(`","access_token":"at_huge","token_type":"Bearer","expires_in":3600}`))
}

// seconds renders d as whole seconds, rounded up, at least 1.
func seconds(d time.Duration) string {
	return strconv.FormatInt(ceilSeconds(d), 10)
}

func ceilSeconds(d time.Duration) int64 {
	n := int64(math.Ceil(d.Seconds()))
	if n < 1 {
		n = 1
	}
	return n
}
