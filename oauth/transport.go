package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// maxBody is the most of a response body that is read, as in x/oauth2.
const maxBody = 1 << 20

// defaultHTTP is used when no client is given. net/http re-sends only an
// idempotent request whose reused connection broke before any answer (never
// a token POST), so the caller's backoff stays the only retry.
var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

func orDefault(hc *http.Client) *http.Client {
	if hc != nil {
		return hc
	}
	return defaultHTTP
}

func (p *Provider) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// probe is an http.RoundTripper around the caller's transport, made for
// one operation. It records when the last request was sent (by the
// injected clock) and what came back, and keeps a copy of the body as it
// is read, so that failures x/oauth2 reports only as text ("cannot parse
// json") can be described by status, content type and size, and so that
// fields x/oauth2 converts with time.Now can be read again. It is also
// where client assertions and DPoP proofs join requests that x/oauth2
// builds: one code path for every grant, made fresh for each HTTP request.
type probe struct {
	base http.RoundTripper
	now  func() time.Time
	// auth, when set, adds client authentication to each request (x/oauth2
	// sends none to the device authorization endpoint).
	auth func(*http.Request)
	// assertion, when set, adds client_assertion_type and a fresh
	// client_assertion to each request's form body.
	assertion *clientAssertion
	// dpop, when set, adds a DPoP proof to each request and answers the
	// server's use_dpop_nonce once.
	dpop *DPoPKey

	mu   sync.Mutex
	sent time.Time
	resp *http.Response
	body *recordingBody
	// made are the assertions and proofs sent, scrubbed from messages.
	made []string
	// nonceRetried is set when a request was re-sent with a new DPoP nonce.
	nonceRetried bool
}

// newProbe returns a probe and a client that sends through it, with the
// settings of hc (nil: the default client) but never following a redirect
// (see noRedirects). endpoint names the endpoint in messages ("token
// endpoint").
func newProbe(hc *http.Client, now func() time.Time, endpoint string) (*probe, *http.Client) {
	hc = orDefault(hc)
	pr := &probe{base: noRedirects{base: transportOf(hc), endpoint: endpoint}, now: now}
	return pr, clientWith(hc, pr)
}

func transportOf(hc *http.Client) http.RoundTripper {
	if hc.Transport != nil {
		return hc.Transport
	}
	return http.DefaultTransport
}

// clientWith returns a client with hc's settings that sends through rt and
// never follows a redirect, whatever hc's CheckRedirect says. rt refuses
// redirects itself (noRedirects); the CheckRedirect here is a second lock,
// handing back any redirect that got past it as an answer.
func clientWith(hc *http.Client, rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, CheckRedirect: useLastResponse, Jar: hc.Jar, Timeout: hc.Timeout}
}

func useLastResponse(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ErrRedirect is the cause (test with errors.Is) of every failure where an
// OAuth endpoint answered with a redirect. Redirects are never followed: a
// token request re-sent to wherever Location points would take the client
// secret, password or refresh token with it, past the rule that secrets go
// only over https or to loopback (CheckEndpointURL). Such a failure is of
// Class Configuration: the configured (or discovered) URL is not the final
// one.
var ErrRedirect = errors.New("redirect not followed")

// noRedirects is a RoundTripper that turns every redirect answer (301, 302,
// 303, 307, 308 with a Location) into a *redirectError before http.Client
// can act on it: nothing is ever sent to the Location, and no Location
// (which may hold secrets in its query) reaches a message unredacted.
type noRedirects struct {
	base     http.RoundTripper
	endpoint string
}

func (rt noRedirects) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return resp, nil
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return resp, nil // not a redirect anyone could follow
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // let the connection be reused
	resp.Body.Close()
	re := &redirectError{endpoint: rt.endpoint, from: safeURL(req.URL), status: resp.StatusCode, to: "an invalid Location"}
	if to, err := req.URL.Parse(loc); err == nil {
		re.to = safeURL(to)
	}
	return nil, re
}

// redirectError is a redirect that was not followed.
type redirectError struct {
	endpoint, from, to string // from and to are safeURL's
	status             int
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("%s %s redirects to %s: tokend does not follow redirects of OAuth endpoints; configure the final URL", e.endpoint, e.from, e.to)
}

func (e *redirectError) Is(target error) bool { return target == ErrRedirect }

// asRedirect returns the *Error for err when it is a refused redirect.
func asRedirect(op string, err error) (*Error, bool) {
	var re *redirectError
	if !errors.As(err, &re) {
		return nil, false
	}
	return &Error{Op: op, Status: re.status, Class: Configuration, Err: re}, true
}

// withClient returns ctx carrying hc for x/oauth2, which takes its HTTP
// client only from a context value. This stays inside the package.
func withClient(ctx context.Context, hc *http.Client) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

func (pr *probe) RoundTrip(req *http.Request) (*http.Response, error) {
	if pr.auth == nil && pr.assertion == nil && pr.dpop == nil {
		return pr.roundTrip(req)
	}
	req = req.Clone(req.Context()) // a RoundTripper must not modify its request
	if pr.auth != nil {
		pr.auth(req)
	}
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		// Read whole: it is re-sent (DPoP nonce) or re-encoded
		// (assertion). x/oauth2's bodies are small forms.
		b, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(b) > maxBody {
			return nil, &Error{Class: Configuration, Err: errors.New("request body over 1 MiB")}
		}
		body = b
	}
	resp, err := pr.send(req, body)
	if err != nil || pr.dpop == nil || !pr.nonceChallenge(resp) {
		return resp, err
	}
	// RFC 9449 §8: the server wants a proof with the nonce it has just
	// given. Re-sending with it is the protocol's own step, not a retry of
	// a failure (the caller's backoff stays the only one of those), and
	// it is done once: a server that asks again is in a nonce loop, which
	// the caller sees as ErrDPoPNonceLoop.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if n := len(resp.Header.Get("DPoP-Nonce")); n > MaxDPoPNonce {
		// Signed into every proof to this origin: a bound keeps a server
		// from making each request of the grant as large as it likes.
		return nil, &Error{Status: resp.StatusCode, Class: Configuration,
			Err: fmt.Errorf("%w: the server demands a DPoP nonce of %d bytes", ErrDPoPNonceTooLong, n)}
	}
	pr.mu.Lock()
	pr.nonceRetried = true
	pr.mu.Unlock()
	return pr.send(req, body)
}

// send sends one copy of req with body, adding a fresh client assertion
// and DPoP proof when the probe makes them.
func (pr *probe) send(req *http.Request, body []byte) (*http.Response, error) {
	r := req.Clone(req.Context())
	if pr.assertion != nil {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, &Error{Class: Configuration, Err: errors.New("request body is not a form")}
		}
		a, err := pr.assertion.make(pr.now())
		if err != nil {
			return nil, err
		}
		pr.remember(a)
		form.Set("client_assertion_type", assertionTypeJWT)
		form.Set("client_assertion", a)
		body = []byte(form.Encode())
	}
	if body != nil {
		b := body
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		r.ContentLength = int64(len(b))
	}
	if pr.dpop != nil {
		target := r.URL.String()
		proof, err := pr.dpop.Proof(r.Method, target, Secret{}, pr.dpop.Nonce(target), pr.now())
		if err != nil {
			return nil, err
		}
		pr.remember(proof.Reveal())
		r.Header.Set("DPoP", proof.Reveal())
	}
	resp, err := pr.roundTrip(r)
	if err == nil && pr.dpop != nil {
		// RFC 9449 §8: a nonce may come with any answer, success included.
		pr.dpop.SetNonce(r.URL.String(), resp.Header.Get("DPoP-Nonce"))
	}
	return resp, err
}

// remember keeps s for scrubbing: the last few only, since a message is
// about the last exchange and the device flow polls for minutes.
func (pr *probe) remember(s string) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if len(pr.made) >= 8 {
		pr.made = append(pr.made[:0], pr.made[len(pr.made)-4:]...)
	}
	pr.made = append(pr.made, s)
}

// sentSecrets returns the assertions and proofs the probe made.
func (pr *probe) sentSecrets() []string {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]string(nil), pr.made...)
}

// nonceChallenge reports whether resp is RFC 9449 §8's demand for a proof
// with a new nonce: 400 (token endpoint) or 401 (WWW-Authenticate) with
// error use_dpop_nonce and a DPoP-Nonce header. It reads a 400's body and
// puts it back for whoever reads the answer next.
func (pr *probe) nonceChallenge(resp *http.Response) bool {
	if resp.Header.Get("DPoP-Nonce") == "" {
		return false
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return strings.Contains(resp.Header.Get("WWW-Authenticate"), "use_dpop_nonce")
	case http.StatusBadRequest:
	default:
		return false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	var e struct {
		Code string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		q, _ := url.ParseQuery(string(b))
		e.Code = q.Get("error")
	}
	return e.Code == "use_dpop_nonce"
}

// roundTrip sends r through the caller's transport and records the answer.
func (pr *probe) roundTrip(req *http.Request) (*http.Response, error) {
	sent := pr.now()
	pr.mu.Lock()
	pr.sent, pr.resp, pr.body = sent, nil, nil
	pr.mu.Unlock()
	resp, err := pr.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rb := &recordingBody{rc: resp.Body}
	resp.Body = rb
	pr.mu.Lock()
	pr.resp, pr.body = resp, rb
	pr.mu.Unlock()
	return resp, nil
}

// reply is what the probe saw of the last exchange.
type reply struct {
	sent   time.Time
	status int // 0: no response
	header http.Header
	body   []byte // up to maxBody bytes, as read by x/oauth2
	// complete is false when the body was cut at maxBody or its reading failed.
	complete bool
	readErr  error
}

func (pr *probe) last() reply {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r := reply{sent: pr.sent}
	if pr.resp == nil {
		return r
	}
	r.status, r.header = pr.resp.StatusCode, pr.resp.Header
	r.body = pr.body.buf.Bytes()
	r.readErr = pr.body.err
	r.complete = pr.body.eof || (pr.body.err == nil && len(r.body) < maxBody)
	return r
}

// close closes the last response body; x/oauth2's device authorization
// request leaves it open.
func (pr *probe) close() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.resp != nil {
		pr.resp.Body.Close()
	}
}

// recordingBody copies what is read from a response body, up to maxBody.
type recordingBody struct {
	rc  io.ReadCloser
	buf bytes.Buffer
	eof bool
	err error
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if room := maxBody - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(n, room)])
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

func (b *recordingBody) Close() error { return b.rc.Close() }

// response is a hand-written request's answer (discovery, revocation,
// registration).
type response struct {
	status int
	header http.Header
	body   []byte
	// complete is false when the body was longer than maxBody.
	complete bool
}

// send does req with hc, never following a redirect (which is an *Error
// of class Configuration, wrapping ErrRedirect; endpoint names the endpoint
// in its message), and reads the body through the maxBody limit. A failure
// to send or read is returned as an *Error of class Transient.
func send(op, endpoint string, hc *http.Client, req *http.Request) (response, error) {
	hc = orDefault(hc)
	resp, err := clientWith(hc, noRedirects{base: transportOf(hc), endpoint: endpoint}).Do(req)
	if err != nil {
		if e, ok := asRedirect(op, err); ok {
			return response{}, e
		}
		return response{}, transportError(op, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		e := transportError(op, err)
		e.Status = resp.StatusCode
		return response{}, e
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: body, complete: true}
	if len(body) > maxBody {
		r.body, r.complete = body[:maxBody], false
	}
	return r, nil
}

// transportError is a failure without an HTTP answer: network, timeout,
// cancellation. Its message is the cause's, which names the URL but holds
// no body or secret (url.Error redacts a password in the URL).
func transportError(op string, err error) *Error {
	return &Error{Op: op, Class: Transient, Err: err}
}
