package devprovider

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// authRequest is an authorization request waiting on the approval page.
type authRequest struct {
	clientID, redirectURI, scope, state, challenge, nonce string
	expires                                               time.Time
}

type authCode struct {
	clientID, redirectURI, scope, challenge, nonce, subject string
	expires                                                 time.Time
	used                                                    bool
	fam                                                     *family // set when redeemed
}

var approvePage = template.Must(template.New("approve").Parse(`<!doctype html>
<html><head><title>devprovider: authorize {{.ClientID}}</title></head>
<body>
<h1>Authorize {{.ClientID}}?</h1>
<p>Scope: <code>{{.Scope}}</code></p>
<p>This is the tokend development provider: approving signs you in as <code>{{.Subject}}</code>.</p>
<form method="post" action="/authorize/approve">
<input type="hidden" name="request" value="{{.ID}}">
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>
`))

// handleAuthorize validates an authorization request. Errors about the
// client or the redirect URI are shown to the user (never redirected, RFC
// 6749 §4.1.2.1); the others are redirected back.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID := q.Get("client_id")
	note(w, "client_id", clientID)
	s.mu.Lock()
	c, ok := s.clients[clientID]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "devprovider: unknown client_id", http.StatusBadRequest)
		return
	}
	redirectURI := q.Get("redirect_uri")
	target := redirectURI
	if target == "" && len(c.RedirectURIs) == 1 {
		target = c.RedirectURIs[0]
	}
	if target == "" || !redirectAllowed(c.RedirectURIs, target) {
		http.Error(w, "devprovider: redirect_uri is not registered for this client", http.StatusBadRequest)
		return
	}
	iss := s.issuer(r)
	state := q.Get("state")
	fail := func(code, desc string) {
		note(w, "error", code)
		redirect(w, r, target, url.Values{"error": {code}, "error_description": {desc}, "state": {state}, "iss": {iss}})
	}
	if rt := q.Get("response_type"); rt != "code" {
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "" && c.AuthMethod == AuthMethodNone:
		fail("invalid_request", "public clients must send a PKCE code_challenge")
		return
	case challenge != "" && method != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	if res := q["resource"]; len(res) > 0 {
		s.mu.Lock()
		s.stats.Resources = append(s.stats.Resources, "authorize "+strings.Join(res, " "))
		s.mu.Unlock()
	}
	ar := &authRequest{
		clientID: c.ID, redirectURI: redirectURI, scope: q.Get("scope"), state: state,
		challenge: challenge, nonce: q.Get("nonce"), expires: s.now().Add(authRequestTTL),
	}
	if s.opts.AutoApprove {
		s.approve(w, r, ar, target)
		return
	}
	id := newSecret("ar_")
	s.mu.Lock()
	s.authReqs[id] = ar
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	approvePage.Execute(w, map[string]string{"ClientID": c.ID, "Scope": ar.scope, "Subject": Subject, "ID": id})
}

// handleApprove is the approval page's form: approve or deny the stored
// request, once.
func (s *Server) handleApprove(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "devprovider: malformed form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("request")
	s.mu.Lock()
	ar, ok := s.authReqs[id]
	delete(s.authReqs, id)
	s.mu.Unlock()
	if !ok || !s.now().Before(ar.expires) {
		http.Error(w, "devprovider: unknown or expired authorization request", http.StatusBadRequest)
		return
	}
	note(w, "client_id", ar.clientID)
	s.mu.Lock()
	c, ok := s.clients[ar.clientID]
	s.mu.Unlock()
	target := ar.redirectURI
	if target == "" && ok && len(c.RedirectURIs) == 1 {
		target = c.RedirectURIs[0]
	}
	if r.PostForm.Get("action") != "approve" {
		note(w, "error", "access_denied")
		redirect(w, r, target, url.Values{"error": {"access_denied"}, "state": {ar.state}, "iss": {s.issuer(r)}})
		return
	}
	s.approve(w, r, ar, target)
}

func (s *Server) approve(w http.ResponseWriter, r *http.Request, ar *authRequest, target string) {
	value := newSecret("ac_")
	s.mu.Lock()
	s.codes[value] = &authCode{
		clientID: ar.clientID, redirectURI: ar.redirectURI, scope: ar.scope,
		challenge: ar.challenge, nonce: ar.nonce, subject: Subject,
		expires: s.now().Add(codeTTL),
	}
	s.recordLocked(value)
	s.mu.Unlock()
	redirect(w, r, target, url.Values{"code": {value}, "state": {ar.state}, "iss": {s.issuer(r)}})
}

// redirect sends a 302 to target with params added to its query (empty
// values left out).
func redirect(w http.ResponseWriter, r *http.Request, target string, params url.Values) {
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "devprovider: bad redirect_uri", http.StatusBadRequest)
		return
	}
	q := u.Query()
	for k, v := range params {
		if len(v) > 0 && v[0] != "" {
			q.Set(k, v[0])
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// redirectAllowed matches got against the registered URIs: exactly, or on
// any port for an http loopback URI (RFC 8252 §7.3). With none registered,
// any http loopback URI is allowed.
func redirectAllowed(registered []string, got string) bool {
	gu, err := url.Parse(got)
	if err != nil || gu.Fragment != "" || gu.User != nil {
		return false
	}
	if len(registered) == 0 {
		return gu.Scheme == "http" && isLoopback(gu.Hostname())
	}
	for _, reg := range registered {
		if reg == got {
			return true
		}
		ru, err := url.Parse(reg)
		if err != nil {
			continue
		}
		if ru.Scheme == "http" && gu.Scheme == "http" && isLoopback(ru.Hostname()) &&
			ru.Hostname() == gu.Hostname() && ru.Path == gu.Path && ru.RawQuery == gu.RawQuery {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	return host == "127.0.0.1" || host == "::1" || host == "localhost"
}
