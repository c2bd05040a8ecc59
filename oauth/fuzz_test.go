package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// cannedServer answers each request with the answer registered under the
// "case" query parameter: one server per fuzz target, many answers.
type cannedServer struct {
	*httptest.Server
	answers sync.Map // string -> canned
	next    atomic.Int64
}

type canned struct {
	status int
	ct     string
	body   []byte
}

func newCannedServer(f *testing.F) *cannedServer {
	cs := &cannedServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := cs.answers.Load(r.URL.Query().Get("case"))
		if !ok {
			http.Error(w, "unknown case", 599)
			return
		}
		a := v.(canned)
		if a.ct != "" {
			w.Header().Set("Content-Type", a.ct)
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(cs.Close)
	return cs
}

// add registers an answer and returns the query value that selects it.
func (cs *cannedServer) add(status int, ct string, body []byte) string {
	id := strconv.FormatInt(cs.next.Add(1), 10)
	cs.answers.Store(id, canned{status: 200 + abs(status)%400, ct: headerSafe(ct), body: body})
	return id
}

func abs(n int) int {
	if n < 0 {
		return -(n + 1) // no overflow at MinInt
	}
	return n
}

func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f {
			return -1
		}
		return r
	}, s)
}

func FuzzTokenResponse(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"bearer","expires_in":"3600","refresh_token_expires_in":86400,"scope":"x"}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant","error_description":"gone"}`))
	f.Add(200, "application/x-www-form-urlencoded", []byte(`access_token=a&expires_in=1e9&refresh_expires_in=-1`))
	f.Add(502, "text/html", []byte(`<html>bad gateway</html>`))
	f.Add(200, "", []byte(``))
	f.Add(429, "text/plain", []byte(`{"error":"slow_down"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"a","access_token":"b","token_type":"Bearer"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"a\r\nX: y","token_type":"Bearer\u001b","scope":"\u202ex\u0085"}`))
	f.Add(200, "application/json", []byte(`{"access_token":"a","refresh_token":"r\n","id_token":"\u00e4"}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_grant\u001b","error_description":"\u202e\u001b[2J"}`))
	cs := newCannedServer(f)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		id := cs.add(status, ct, body)
		defer cs.answers.Delete(id)
		p := &Provider{
			Endpoints: Endpoints{Token: cs.URL + "/token?case=" + id},
			Client:    Client{ID: "c", Secret: NewSecret("client-secret-value"), AuthMethod: AuthPost},
			HTTP:      cs.Client(),
		}
		tok, err := p.Refresh(context.Background(), NewSecret("refresh-secret-value"), []string{"s"}, nil)
		if err == nil {
			if tok.AccessToken.IsZero() {
				t.Fatalf("token without access token: %+v", tok)
			}
			if tok.ExpiresIn < 0 || (tok.ExpiresIn == 0) != tok.Expiry.IsZero() {
				t.Fatalf("ExpiresIn %v, Expiry %v", tok.ExpiresIn, tok.Expiry)
			}
			// What is served in an Authorization header, printed or sent
			// back in a form has its syntax.
			if !isB64token(tok.AccessToken.Reveal()) || !isHTTPToken(tok.TokenType) || Printable(tok.Scope) != tok.Scope ||
				!isVisibleASCII(tok.RefreshToken.Reveal()) || !isVisibleASCII(tok.IDToken.Reveal()) {
				t.Fatalf("accepted access %q, type %q, scope %q, refresh %q, id %q",
					tok.AccessToken.Reveal(), tok.TokenType, tok.Scope, tok.RefreshToken.Reveal(), tok.IDToken.Reveal())
			}
			if duplicateKey(body, isFormAnswer(http.Header{"Content-Type": {headerSafe(ct)}})) != "" {
				t.Fatalf("accepted an answer with a repeated key")
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not *Error: %v", err, err)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "oauth: refresh: ") || Printable(msg) != msg {
			t.Fatalf("message %q", msg)
		}
		for _, s := range []string{"client-secret-value", "refresh-secret-value"} {
			if strings.Contains(msg, s) {
				t.Fatalf("message holds a secret: %q", msg)
			}
		}
		if len(body) >= 24 && strings.Contains(msg, string(body)) {
			t.Fatalf("message holds the body: %q", msg)
		}
	})
}

func FuzzDiscovery(f *testing.F) {
	// ISSUER in a body is replaced by the issuer being discovered.
	f.Add(200, "application/json", []byte(`{"issuer":"ISSUER","token_endpoint":"ISSUER/token","authorization_endpoint":"ISSUER/auth"}`))
	f.Add(200, "application/json", []byte(`{"issuer":"https://evil.example.com","token_endpoint":"https://evil.example.com/t"}`))
	f.Add(404, "text/html", []byte(`<html>not found</html>`))
	f.Add(200, "application/json", []byte(`{"issuer":"ISSUER","token_endpoint":"::"}`))
	f.Add(200, "application/json", []byte(`[]`))
	f.Add(200, "application/json", []byte(`{"issuer":"ISSUER","token_endpoint":"http://id.example.com/token"}`))
	f.Add(200, "application/json", []byte(`{"issuer":"ISSUER","token_endpoint":"http://localhost/t","revocation_endpoint":"https://x/\u202e"}`))
	cs := newCannedServer(f)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		// An issuer cannot carry a query, so the case is the issuer's
		// path, and routeByPath sends both well-known locations to it.
		id := strconv.FormatInt(cs.next.Add(1), 10)
		issuer := cs.URL + "/i" + id
		b := []byte(strings.ReplaceAll(string(body), "ISSUER", issuer))
		cs.answers.Store("i"+id, canned{status: 200 + abs(status)%400, ct: headerSafe(ct), body: b})
		defer cs.answers.Delete("i" + id)
		ep, err := Discover(context.Background(), routeByPath(cs), issuer)
		if err == nil {
			if ep.Token == "" || ep.Issuer != issuer {
				t.Fatalf("Endpoints %+v", ep)
			}
			for _, u := range []string{ep.Authorization, ep.Token, ep.Revocation, ep.DeviceAuthorization, ep.Registration} {
				if u != "" && (CheckEndpointURL(u) != nil || Printable(u) != u) {
					t.Fatalf("accepted endpoint %q", u)
				}
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "oauth: discovery: ") || Printable(err.Error()) != err.Error() {
			t.Fatalf("error %T: %v", err, err)
		}
	})
}

// routeByPath returns a client for cs that moves the last path segment
// naming a case ("/i7" at the end of an issuer path) into the case query
// parameter, so that both well-known locations reach the same answer.
func routeByPath(cs *cannedServer) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		for _, seg := range strings.Split(r.URL.Path, "/") {
			if strings.HasPrefix(seg, "i") && len(seg) > 1 {
				q := url.Values{"case": {seg}}
				r.URL.RawQuery = q.Encode()
			}
		}
		return cs.Client().Transport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func FuzzRegistration(f *testing.F) {
	f.Add(201, "application/json", []byte(`{"client_id":"c","client_secret":"s","client_secret_expires_at":0}`))
	f.Add(200, "application/json", []byte(`{"client_id":"c","client_secret_expires_at":"1999999999"}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_redirect_uri"}`))
	f.Add(201, "application/json", []byte(`{"client_id":"c","client_secret_expires_at":1e400}`))
	f.Add(500, "text/html", []byte(`<html>`))
	f.Add(201, "application/json", []byte(`{"client_id":"c","client_id":"d"}`))
	f.Add(201, "application/json", []byte(`{"client_id":"c\u001b","registration_client_uri":"http://id.example.com/r"}`))
	cs := newCannedServer(f)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		id := cs.add(status, ct, body)
		defer cs.answers.Delete(id)
		reg, err := Register(context.Background(), cs.Client(), cs.URL+"/register?case="+id, RegistrationRequest{ClientName: "x"})
		if err == nil {
			if reg.ClientID == "" || reg.AuthMethod == "" || !isVSCHARs(reg.ClientID) || Printable(string(reg.AuthMethod)) != string(reg.AuthMethod) ||
				(reg.RegistrationClientURI != "" && CheckEndpointURL(reg.RegistrationClientURI) != nil) {
				t.Fatalf("Registration %+v", reg)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "oauth: register: ") || Printable(err.Error()) != err.Error() {
			t.Fatalf("error %T: %v", err, err)
		}
	})
}

func FuzzDeviceAuth(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"device_code":"d","user_code":"U","verification_uri":"https://v/d","verification_uri_complete":"https://v/d?u=U","expires_in":600,"interval":5}`))
	f.Add(200, "application/json", []byte(`{"device_code":"d","user_code":"U\u001b[2J","verification_uri":"file:///etc/passwd"}`))
	f.Add(200, "application/json", []byte(`{"device_code":"d","user_code":"U","user_code":"V","verification_url":"https://v/\u202ed"}`))
	f.Add(400, "application/json", []byte(`{"error":"invalid_client","error_description":"\u009b"}`))
	cs := newCannedServer(f)
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		id := cs.add(status, ct, body)
		defer cs.answers.Delete(id)
		p := &Provider{
			Endpoints: Endpoints{DeviceAuthorization: cs.URL + "/device?case=" + id},
			Client:    Client{ID: "c", Secret: NewSecret("client-secret-value"), AuthMethod: AuthPost},
			HTTP:      cs.Client(),
		}
		da, err := p.StartDevice(context.Background(), nil, nil)
		if err == nil {
			if da.DeviceCode.IsZero() || !isVisibleASCII(da.DeviceCode.Reveal()) || da.UserCode == "" || Printable(da.UserCode) != da.UserCode ||
				!isHTTPURL(da.VerificationURI) || Printable(da.VerificationURI) != da.VerificationURI ||
				(da.VerificationURIComplete != "" && !isHTTPURL(da.VerificationURIComplete)) || Printable(da.VerificationURIComplete) != da.VerificationURIComplete {
				t.Fatalf("DeviceAuth %+v", da)
			}
			if duplicateKey(body, false) != "" {
				t.Fatalf("accepted an answer with a repeated key")
			}
			return
		}
		msg := err.Error()
		var e *Error
		if !errors.As(err, &e) || !strings.HasPrefix(msg, "oauth: device: ") || Printable(msg) != msg || strings.Contains(msg, "client-secret-value") {
			t.Fatalf("error %T: %v", err, err)
		}
	})
}

func FuzzParseCallback(f *testing.F) {
	f.Add("code=c&state=s&iss=https%3A%2F%2Fid.example.com", "https://id.example.com", true)
	f.Add("error=access_denied&error_description=no&state=s", "https://id.example.com", false)
	f.Add("code=c&code=d&state=s", "", false)
	f.Add("error=%00%ff&error_uri=javascript:x", "https://id.example.com", false)
	f.Fuzz(func(t *testing.T, query, issuer string, requireIss bool) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		code, state, err := ParseCallback(q, issuer, requireIss)
		if err == nil {
			if code == "" || state == "" || q.Has("error") {
				t.Fatalf("accepted %q: code %q, state %q", query, code, state)
			}
			if requireIss && q.Get("iss") == "" {
				t.Fatalf("accepted without iss: %q", query)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) || e.Op != "callback" || code != "" || state != "" {
			t.Fatalf("error %T: %v", err, err)
		}
		if strings.ContainsAny(e.Description+e.Code+e.URI, "\x00\n\r") {
			t.Fatalf("control characters in %q", err)
		}
	})
}

func FuzzParseBearerChallenge(f *testing.F) {
	f.Add(`Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="a b"`, "")
	f.Add(`Basic realm="x", Bearer error="insufficient_scope", scope="a", error_description="say \"no\""`, `Bearer scope="b"`)
	f.Add(`Negotiate abc==, Bearer`, `DPoP algs="ES256"`)
	f.Add(`Bearer scope="a\`, `,,,`)
	f.Add("Bearer a=\"\xff\u202e\\\x01\"", "=")
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		c, err := ParseBearerChallenge([]string{h1, h2})
		if err != nil {
			if !errors.Is(err, ErrMalformedChallenge) || c.Found || c.Params != nil {
				t.Fatalf("error %v with challenge %#v", err, c)
			}
			if strings.ContainsAny(err.Error(), "\x00\n\r\x1b") {
				t.Fatalf("control characters in %q", err)
			}
			return
		}
		if len(h1)+len(h2) > MaxChallengeBytes {
			t.Fatalf("accepted %d bytes", len(h1)+len(h2))
		}
		if !c.Found {
			if c.Params != nil || c.Scope != "" {
				t.Fatalf("values without a challenge: %#v", c)
			}
			return
		}
		// What was parsed, written back as quoted strings, parses to the
		// same values: escapes are undone exactly once.
		var b strings.Builder
		b.WriteString(c.Scheme)
		sep := " "
		for k, v := range c.Params {
			if Printable(v) != v {
				t.Fatalf("%s=%q not printable", k, v)
			}
			b.WriteString(sep + k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`)
			sep = ", "
		}
		again, err := ParseBearerChallenge([]string{b.String()})
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("%q parsed to %#v, written back as %q to %#v (%v)", h1+" / "+h2, c, b.String(), again, err)
		}
	})
}

func FuzzDiscoverResource(f *testing.F) {
	// RESOURCE and AS in the inputs are replaced by the resource's URL and
	// the authorization server's.
	f.Add(401, `Bearer resource_metadata="https://mcp.example.com/prm", scope="a b"`, []byte(`{"resource":"RESOURCE","authorization_servers":["AS"],"scopes_supported":["a"]}`))
	f.Add(401, `Bearer`, []byte(`{"resource":"https://evil.example.com/mcp","authorization_servers":["AS"]}`))
	f.Add(403, `Bearer error="insufficient_scope", resource_metadata="http://mcp.example.com/prm"`, []byte(`{}`))
	f.Add(401, `Bearer resource_metadata="https://mcp.example.com/prm`, []byte(`{"resource":"RESOURCE","authorization_servers":["http://as.example.com"]}`))
	f.Add(200, ``, []byte(`{"resource":"https://mcp.example.com","authorization_servers":["AS","AS/t"],"Resource":"x"}`))
	f.Add(404, `Basic realm="x"`, []byte(`<html>`))
	f.Fuzz(func(t *testing.T, status int, challenge string, prm []byte) {
		const resource, as = "https://mcp.example.com/mcp", "https://as.example.com"
		prm = []byte(strings.NewReplacer("RESOURCE", resource, "AS", as).Replace(string(prm)))
		challenge = strings.ReplaceAll(headerSafe(challenge), "RESOURCE", resource)
		status = 200 + abs(status)%400
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if err := CheckEndpointURL(r.URL.String()); err != nil {
				t.Fatalf("request sent to %s: %v", r.URL, err)
			}
			answer := func(status int, h http.Header, body []byte) (*http.Response, error) {
				if h == nil {
					h = http.Header{}
				}
				return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
			}
			switch {
			case r.URL.Host == "mcp.example.com" && r.URL.Path == "/mcp":
				return answer(status, http.Header{"Www-Authenticate": {challenge}}, nil)
			case r.URL.Host == "mcp.example.com":
				return answer(200, http.Header{"Content-Type": {"application/json"}}, prm)
			case r.URL.Host == "as.example.com" && strings.HasPrefix(r.URL.Path, "/.well-known/oauth-authorization-server"):
				issuer := as + strings.TrimPrefix(r.URL.Path, "/.well-known/oauth-authorization-server")
				b, _ := json.Marshal(serverMetadata(issuer))
				return answer(200, nil, b)
			}
			return answer(404, nil, nil)
		})}
		d, err := DiscoverResource(context.Background(), hc, resource, ResourceOptions{})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !strings.HasPrefix(err.Error(), "oauth: discovery: ") || Printable(err.Error()) != err.Error() || d != nil {
				t.Fatalf("error %T: %v", err, err)
			}
			return
		}
		if err := d.Check(); err != nil {
			t.Fatalf("discovered %+v, which Check refuses: %v", d, err)
		}
		if d.Legacy == LegacyNone && !strings.HasPrefix(d.Resource, "https://mcp.example.com") {
			t.Fatalf("resource %q accepted", d.Resource)
		}
	})
}
