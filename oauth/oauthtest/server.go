package oauthtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client authentication methods (RFC 7591 token_endpoint_auth_method).
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodNone  = "none"
)

// Grant types accepted by the token endpoint.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

const (
	defaultAccessTTL      = 30 * time.Second
	defaultDeviceInterval = time.Second
	codeTTL               = 60 * time.Second
	deviceTTL             = 10 * time.Minute
	authRequestTTL        = 10 * time.Minute
	maxBodyBytes          = 64 << 10
	// Subject is the user every browser approval (authorization code and
	// device flow) is made for: the server shows no login form.
	Subject = "oauthtest-user"
)

// Client is a client registered at the server.
//
// AuthMethod is client_secret_basic, client_secret_post or none. When it is
// empty, [Server.AddClient] picks none for a client without a secret and
// client_secret_basic (the RFC 6749 default) otherwise.
//
// RedirectURIs are matched exactly, except that an http URI on 127.0.0.1,
// [::1] or localhost matches any port (RFC 8252 §7.3). A client with no
// RedirectURIs accepts any http loopback redirect URI, which keeps tests
// short.
type Client struct {
	ID, Secret   string
	AuthMethod   string
	RedirectURIs []string
}

// Options configure a [Server]. The zero value is usable: it has no
// clients and no users.
type Options struct {
	// AccessTTL is the lifetime of access tokens; 0 means 30 s.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of a refresh token from its issue; 0 means
	// refresh tokens never expire. When it is positive, responses carry
	// refresh_token_expires_in (the remaining lifetime, in seconds).
	RefreshTTL time.Duration
	// Rotate issues a new refresh token on every refresh and invalidates the
	// old one. Reusing an old one answers invalid_grant and revokes the
	// whole family (every refresh and access token descending from the same
	// authorization), counted in Stats().Reuses. Without Rotate, a refresh
	// answers with the same refresh token.
	Rotate bool
	// RefreshForClientCredentials also issues refresh tokens for the
	// client_credentials grant.
	RefreshForClientCredentials bool
	// Clients are registered at start, as if by [Server.AddClient].
	Clients []Client
	// Users are username → password for the password grant.
	Users map[string]string
	// AllowRegistration enables dynamic client registration (RFC 7591) at
	// /register and advertises it in discovery.
	AllowRegistration bool
	// AutoApprove makes GET /authorize redirect straight back with a code,
	// and GET /device/verify?user_code=... approve at once, with no page.
	AutoApprove bool
	// DeviceInterval is the polling interval the device endpoint returns
	// (rounded up to whole seconds, at least 1 s); 0 means 1 s.
	DeviceInterval time.Duration
	// Now is the clock used to issue and expire codes and tokens; nil means
	// time.Now. Fault delays and latency use real time.
	Now func() time.Time
	// Logf, when set, receives one line per request: method, path without
	// query, status, client_id, grant type and error code. Never secrets.
	Logf func(format string, args ...any)
}

// Stats count what the server saw since it started.
type Stats struct {
	// TokenRequests counts every request to the token endpoint.
	TokenRequests int
	// ByGrant counts token requests with a well-formed body by grant_type.
	ByGrant map[string]int
	// Refreshes counts successful refresh_token grants.
	Refreshes int
	// Reuses counts uses of a rotated-away refresh token (each revoked a
	// family).
	Reuses int
	// Registrations counts successful dynamic registrations.
	Registrations int
	// Revocations counts successful (200) revocation requests, including
	// those for unknown tokens.
	Revocations int
	// Faulted counts requests answered (or altered) by an injected fault.
	Faulted int
}

// Server is an in-process OAuth 2.0 authorization server. All its methods
// are safe for concurrent use.
type Server struct {
	opts    Options
	key     []byte // HS256 key for id tokens
	handler http.Handler
	latency atomic.Int64 // time.Duration

	mu        sync.Mutex // guards everything below, down to lifecycle
	clients   map[string]*clientState
	users     map[string]string
	authReqs  map[string]*authRequest
	codes     map[string]*authCode
	access    map[string]*accessToken
	refresh   map[string]*refreshToken
	devices   map[string]*deviceAuth // by device code
	userCodes map[string]*deviceAuth // by normalized user code
	issued    []string
	fault     Fault
	faultLeft int // remaining uses when fault.Times > 0
	stats     Stats

	lmu      sync.Mutex // guards the lifecycle fields
	url      string
	srv      *http.Server
	closed   bool
	done     chan struct{} // closed by Close: ends fault delays and latency
	inflight sync.WaitGroup
}

type clientState struct {
	Client
	// set for dynamically registered clients
	regToken   string
	issuedAt   time.Time
	name       string
	grantTypes []string
	scope      string
}

// family links every token descending from one authorization, so that a
// reused refresh token, a replayed code or a revocation can kill them all.
type family struct{ revoked bool }

type accessToken struct {
	clientID string
	expires  time.Time
	fam      *family
	revoked  bool
}

type refreshToken struct {
	clientID, subject, scope string
	expires                  time.Time // zero: never
	fam                      *family
	used                     bool // rotated away
}

// New starts a server on 127.0.0.1 with a random port, like
// httptest.NewServer. It panics if it cannot listen. Call Close when done.
func New(o Options) *Server {
	s := NewUnstarted(o)
	if err := s.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	return s
}

// NewUnstarted returns a server that does not listen yet: call
// [Server.Start] (what `tokend dev` does, to choose the address), or mount
// [Server.Handler] on a server of your own.
func NewUnstarted(o Options) *Server {
	if o.AccessTTL <= 0 {
		o.AccessTTL = defaultAccessTTL
	}
	if o.DeviceInterval <= 0 {
		o.DeviceInterval = defaultDeviceInterval
	}
	s := &Server{
		opts:      o,
		key:       make([]byte, 32),
		clients:   map[string]*clientState{},
		users:     map[string]string{},
		authReqs:  map[string]*authRequest{},
		codes:     map[string]*authCode{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
		devices:   map[string]*deviceAuth{},
		userCodes: map[string]*deviceAuth{},
		stats:     Stats{ByGrant: map[string]int{}},
		done:      make(chan struct{}),
	}
	rand.Read(s.key)
	for _, c := range o.Clients {
		s.AddClient(c)
	}
	for u, p := range o.Users {
		s.users[u] = p
	}
	s.handler = s.routes()
	return s
}

// Start listens on addr (host:port; use a loopback host, port 0 for any)
// and serves in the background until Close. The issuer URL becomes
// http://addr, with an unspecified host (":8080") replaced by 127.0.0.1.
// Start fails if the server was already started or closed.
func (s *Server) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("oauthtest: listen on %s: %w", addr, err)
	}
	s.lmu.Lock()
	if s.srv != nil || s.closed {
		s.lmu.Unlock()
		ln.Close()
		return errors.New("oauthtest: server already started or closed")
	}
	hostport := ln.Addr().String()
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		hostport = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	s.url = "http://" + hostport
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second}
	s.srv = srv
	s.lmu.Unlock()
	go srv.Serve(ln)
	return nil
}

// URL returns the base URL, which is also the issuer, without a trailing
// slash; "" before Start. A server used only through Handler takes its
// issuer from each request's Host header.
func (s *Server) URL() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	return s.url
}

// Close stops the server: it ends fault delays and latency waits, closes
// every connection and waits for running handlers (so that no Logf call
// happens after Close returns). It is safe to call more than once.
func (s *Server) Close() {
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		s.inflight.Wait()
		return
	}
	s.closed = true
	close(s.done)
	srv := s.srv
	s.lmu.Unlock()
	if srv != nil {
		srv.Close()
	}
	s.inflight.Wait()
}

// Handler returns the server's HTTP handler, for mounting it elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// AddClient registers c, replacing any client with the same ID.
func (s *Server) AddClient(c Client) {
	if c.AuthMethod == "" {
		c.AuthMethod = AuthMethodBasic
		if c.Secret == "" {
			c.AuthMethod = AuthMethodNone
		}
	}
	c.RedirectURIs = append([]string(nil), c.RedirectURIs...)
	s.mu.Lock()
	s.clients[c.ID] = &clientState{Client: c}
	s.mu.Unlock()
}

// AddUser adds (or changes the password of) a user of the password grant.
func (s *Server) AddUser(name, password string) {
	s.mu.Lock()
	s.users[name] = password
	s.mu.Unlock()
}

// SetLatency makes every token endpoint request wait d before anything
// else (benchmarks: refresh storms against a 200 ms provider); 0 means no
// wait. The wait ends early when the request is cancelled or the server
// closed.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByGrant = make(map[string]int, len(s.stats.ByGrant))
	for k, v := range s.stats.ByGrant {
		st.ByGrant[k] = v
	}
	return st
}

// Issued returns every secret the server generated, in order: access,
// refresh and id tokens, authorization and device codes, and the client
// secrets and registration access tokens of registered clients. Tests scan
// logs for them. Secrets given in Options or AddClient/AddUser are not
// included: the test knows them.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// Valid reports whether accessToken was issued by this server and is
// neither expired (by Options.Now) nor revoked, directly or through its
// family.
func (s *Server) Valid(accessToken string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.access[accessToken]
	return ok && !at.revoked && !at.fam.revoked && now.Before(at.expires)
}

// RefreshValid reports whether refreshToken would be accepted now: issued,
// not rotated away, not expired, and its family not revoked.
func (s *Server) RefreshValid(refreshToken string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[refreshToken]
	return ok && s.refreshUsable(rt, now)
}

func (s *Server) refreshUsable(rt *refreshToken, now time.Time) bool {
	return !rt.used && !rt.fam.revoked && (rt.expires.IsZero() || now.Before(rt.expires))
}

// RevokeFamilyOf revokes the family of refreshToken, as a provider does
// when a user withdraws consent: the next refresh answers invalid_grant
// and the family's access tokens stop being Valid. Unknown tokens are
// ignored.
func (s *Server) RevokeFamilyOf(refreshToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.refresh[refreshToken]; ok {
		rt.fam.revoked = true
	}
}

func (s *Server) now() time.Time {
	if s.opts.Now != nil {
		return s.opts.Now()
	}
	return time.Now()
}

func (s *Server) issuer(r *http.Request) string {
	if u := s.URL(); u != "" {
		return u
	}
	return "http://" + r.Host
}

// newSecret returns prefix and 128 random bits. Callers record it with
// recordLocked.
func newSecret(prefix string) string { return prefix + rand.Text() }

func (s *Server) recordLocked(secrets ...string) {
	for _, v := range secrets {
		if v != "" {
			s.issued = append(s.issued, v)
		}
	}
}

// wait sleeps d, returning false if the request or the server ended first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleDiscovery)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /authorize", s.handleAuthorize)
	mux.HandleFunc("POST /authorize/approve", s.handleApprove)
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("POST /revoke", s.handleRevoke)
	mux.HandleFunc("POST /device", s.handleDevice)
	mux.HandleFunc("GET /device/verify", s.handleVerifyPage)
	mux.HandleFunc("POST /device/verify", s.handleVerify)
	mux.HandleFunc("POST /register", s.handleRegister)
	mux.HandleFunc("GET /register/{id}", s.handleRegistration)
	mux.HandleFunc("DELETE /register/{id}", s.handleRegistration)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.lmu.Lock()
		if s.closed {
			s.lmu.Unlock()
			http.Error(w, "oauthtest: server closed", http.StatusServiceUnavailable)
			return
		}
		s.inflight.Add(1)
		s.lmu.Unlock()
		defer s.inflight.Done()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		defer func() {
			if s.opts.Logf != nil {
				s.opts.Logf("oauthtest: %s %s -> %d%s (%s)", r.Method, r.URL.Path, rec.status, rec.note.String(), time.Since(start).Round(time.Microsecond))
			}
		}()
		mux.ServeHTTP(rec, r)
	})
}

// recorder captures the status and a log note; it unwraps for
// http.ResponseController (FaultDown hijacks through it).
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	note   strings.Builder
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// note adds key=value to the request's log line. Values must not be
// secrets.
func note(w http.ResponseWriter, key, value string) {
	if r, ok := w.(*recorder); ok && value != "" {
		fmt.Fprintf(&r.note, " %s=%s", key, value)
	}
}
