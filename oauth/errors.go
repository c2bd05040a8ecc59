package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Operation names, the Op of an *Error.
const (
	opRefresh           = "refresh"
	opExchange          = "exchange"
	opClientCredentials = "client_credentials"
	opPassword          = "password"
	opDevice            = "device"
	opRevoke            = "revoke"
	opDiscovery         = "discovery"
	opRegister          = "register"
	opCallback          = "callback"
	opJWTBearer         = "jwt_bearer"
	opTokenExchange     = "token_exchange"
)

// ErrMalformed is the cause (Error.Err) of every failure where the provider
// answered something that is not a valid answer: an HTML page, an empty
// body, a body over 1 MiB, JSON without the required fields. Test with
// errors.Is.
var ErrMalformed = errors.New("malformed response")

// Error formats as "oauth: <op>: <code>: <description> (HTTP <status>)",
// or "oauth: <op>: <cause> (HTTP <status>)" when the provider sent no error
// code. The description is the provider's, with control characters removed,
// cut at 300 characters and any secret of the request replaced. The whole
// message goes through Printable: a cause's text (a TLS error quoting a
// certificate's names, say) is provider-controlled too.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("oauth: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Code != "":
		b.WriteString(e.Code)
		if e.Description != "" {
			b.WriteString(": ")
			b.WriteString(e.Description)
		}
	case e.Description != "":
		b.WriteString(e.Description)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("request failed")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	return Printable(b.String())
}

// Unwrap returns the cause: a network error, a context error, ErrMalformed.
func (e *Error) Unwrap() error { return e.Err }

// LogValue logs the error as a group of its fields, for log/slog.
func (e *Error) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("op", Printable(e.Op))}
	if e.Code != "" {
		attrs = append(attrs, slog.String("code", Printable(e.Code)))
	}
	if e.Description != "" {
		attrs = append(attrs, slog.String("description", Printable(e.Description)))
	}
	if e.URI != "" {
		attrs = append(attrs, slog.String("uri", Printable(e.URI)))
	}
	if e.Status != 0 {
		attrs = append(attrs, slog.Int("status", e.Status))
	}
	attrs = append(attrs, slog.String("class", e.Class.String()))
	if e.RetryAfter > 0 {
		attrs = append(attrs, slog.Duration("retry_after", e.RetryAfter))
	}
	if e.Code == "" && e.Err != nil {
		attrs = append(attrs, slog.String("cause", Printable(e.Err.Error())))
	}
	return slog.GroupValue(attrs...)
}

// ClassOf classifies any error returned by this package; errors that are not
// *Error (network failures, context deadline) are Transient. It is the only
// place the caller needs to look.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Transient
}

// RetryAfter returns the provider's Retry-After for err, or 0.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// codeClass maps an RFC 6749 §5.2 error code (and the codes of RFC 7009,
// RFC 7591 and RFC 8628) to a Class.
func codeClass(op, code, description string, status int) Class {
	if status == http.StatusTooManyRequests {
		return Transient // rate limiting is transient whatever the code says
	}
	switch code {
	case "invalid_grant", "expired_token":
		return Reauthorize
	case "access_denied":
		return Denied
	case "invalid_client", "unauthorized_client":
		return Credentials
	case "temporarily_unavailable", "server_error", "slow_down", "authorization_pending", "use_dpop_nonce":
		return Transient
	case "invalid_request":
		// Dex answers a reused or expired refresh token with
		// invalid_request ("Refresh token is invalid or has already been
		// claimed by another client."): the grant is dead.
		if op == opRefresh && mentionsRefreshToken(description) {
			return Reauthorize
		}
		return Configuration
	case "invalid_scope", "unsupported_grant_type", "unsupported_response_type",
		"invalid_target", "unsupported_token_type",
		"invalid_redirect_uri", "invalid_client_metadata",
		"invalid_software_statement", "unapproved_software_statement":
		return Configuration
	}
	if status >= 500 {
		return Transient
	}
	return Configuration
}

func mentionsRefreshToken(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "refresh token") || strings.Contains(s, "refresh_token")
}

// statusClass classifies an answer that carries no error code.
func statusClass(status int) Class {
	switch {
	case status == http.StatusUnauthorized:
		// RFC 6749 §5.2: invalid_client "MAY" be a bare 401 with
		// WWW-Authenticate.
		return Credentials
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return Transient
	case status >= 400 && status < 500:
		// 404 and friends: the endpoint is wrong. Retrying will not help.
		return Configuration
	}
	// 5xx, and 2xx/3xx answers that were not what they should be.
	return Transient
}

// parseRetryAfter reads Retry-After (RFC 9110 §10.2.3: delta-seconds or an
// HTTP-date, the latter relative to now). It returns 0 when absent, invalid
// or in the past.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		const most = int64(365 * 24 * time.Hour / time.Second)
		return time.Duration(min(n, most)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// httpError builds the *Error for an HTTP answer. code, description and uri
// are the provider's RFC 6749 §5.2 fields (empty when it sent none); body
// and complete describe the answer when it carried no code; secrets are the
// values sent in the request, scrubbed from whatever the provider echoes.
func httpError(op string, now time.Time, status int, header http.Header, code, description, uri string, body []byte, complete bool, want string, secrets []string) *Error {
	e := &Error{
		Op:          op,
		Code:        clean(code, 100, secrets),
		Description: clean(description, 300, secrets),
		URI:         clean(uri, 300, secrets),
		Status:      status,
	}
	if e.Code != "" {
		e.Class = codeClass(op, e.Code, e.Description, status)
	} else {
		e.Description, e.URI = "", "" // without a code they mean nothing
		e.Class = statusClass(status)
		e.Err = fmt.Errorf("%w: %s", ErrMalformed, describeBody(header.Get("Content-Type"), body, complete, status, want))
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(header, now)
	}
	return e
}

// describeBody says what is wrong with an answer without quoting it.
func describeBody(contentType string, body []byte, complete bool, status int, want string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "" {
		mt = "no content type"
	}
	size := fmt.Sprintf("%s, %d bytes", mt, len(body))
	ok := status >= 200 && status < 300
	switch {
	case !complete:
		return fmt.Sprintf("body over %d bytes (%s)", maxBody, mt)
	case len(body) == 0:
		return "empty body"
	case mt == "application/x-www-form-urlencoded" || mt == "text/plain":
		if _, err := url.ParseQuery(string(body)); err != nil {
			return "not form-encoded (" + size + ")"
		}
		if ok {
			return "form without " + want + " (" + size + ")"
		}
		return "form without error (" + size + ")"
	case !json.Valid(body):
		return "not JSON (" + size + ")"
	}
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return "JSON not an object (" + size + ")"
	}
	if !ok {
		return "JSON without error (" + size + ")"
	}
	if s, _ := m[want].(string); s == "" {
		return "JSON without " + want + " (" + size + ")"
	}
	return "unexpected JSON (" + size + ")"
}

// clean makes a provider-supplied string safe for messages and logs: the
// request's secrets replaced, what Printable removes dropped (no log or
// terminal injection), cut at most runes.
func clean(s string, most int, secrets []string) string {
	if s == "" {
		return ""
	}
	for _, sec := range secrets {
		if len(sec) >= 4 { // shorter values would redact ordinary words
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		if !printableRune(r) {
			continue
		}
		if n == most {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// fromXOAuth2 turns an error from x/oauth2 into an *Error, using what the
// probe saw of the exchange. want names the field a successful answer must
// carry ("access_token", "device_code").
func fromXOAuth2(op string, now time.Time, pr *probe, err error, want string, secrets []string) *Error {
	if e, ok := asRedirect(op, err); ok {
		return e
	}
	var own *Error
	if errors.As(err, &own) {
		// The probe's own failure to make an assertion or proof.
		e := *own
		e.Op = op
		return &e
	}
	e := fromAnswer(op, now, pr, err, want, append(secrets, pr.sentSecrets()...))
	if r := pr.last(); e.Code == "" && r.status == http.StatusUnauthorized && strings.Contains(r.header.Get("WWW-Authenticate"), "use_dpop_nonce") {
		e.Code = "use_dpop_nonce" // said in the header, as resource servers do
	}
	if e.Code == "use_dpop_nonce" && pr.dpop != nil {
		// Still asked for a nonce after the one re-send with it, or asked
		// without being given one: either way the server would never be
		// satisfied now; perhaps later.
		e.Class = Transient
		e.Err = ErrDPoPNonceLoop
		pr.mu.Lock()
		retried := pr.nonceRetried
		pr.mu.Unlock()
		if retried {
			e.Description = ErrDPoPNonceLoop.Error() + ": it demanded another after the retry with the nonce it gave"
		} else {
			e.Description = "the server demands a DPoP nonce but sent no DPoP-Nonce header"
		}
	}
	return e
}

// fromAnswer is fromXOAuth2 for an error that is not the probe's own.
func fromAnswer(op string, now time.Time, pr *probe, err error, want string, secrets []string) *Error {
	r := pr.last()
	var re *oauth2.RetrieveError
	switch {
	case errors.As(err, &re) && re.Response != nil:
		// re.Error() holds the body: only its parsed fields are used.
		body, complete := r.body, r.complete
		if r.status == 0 {
			body, complete = re.Body, len(re.Body) < maxBody
		}
		code, desc, uri := re.ErrorCode, re.ErrorDescription, re.ErrorURI
		if code == "" {
			// x/oauth2 reads a text/plain body as a form; some providers
			// send their JSON error as text/plain.
			var j struct {
				Code        string `json:"error"`
				Description string `json:"error_description"`
				URI         string `json:"error_uri"`
			}
			if json.Unmarshal(body, &j) == nil {
				code, desc, uri = j.Code, j.Description, j.URI
			}
		}
		return httpError(op, now, re.Response.StatusCode, re.Response.Header, code, desc, uri, body, complete, want, secrets)
	case r.status == 0, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return transportError(op, err)
	case r.readErr != nil:
		e := transportError(op, fmt.Errorf("reading response: %w", r.readErr))
		e.Status = r.status
		return e
	}
	// x/oauth2 reported a malformed 2xx answer ("cannot parse json",
	// "server response missing access_token") as plain text.
	return httpError(op, now, r.status, r.header, "", "", "", r.body, r.complete, want, secrets)
}
