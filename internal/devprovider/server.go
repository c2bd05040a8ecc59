package devprovider

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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
	idTokens  map[string]*accessToken // what an id token says, for token exchange
	issuers   map[string]*trustedIssuer
	jtis      map[string]time.Time // namespace, NUL, jti → forget after
	jtiSweep  int                  // prune jtis when it grows to this
	nonces    [2]string            // token endpoint DPoP nonces: current, previous
	rsNonces  [2]string            // the resource server's
	ca        authority

	lmu      sync.Mutex // guards the lifecycle fields
	url      string
	tls      bool
	srv      *http.Server
	closed   bool
	done     chan struct{} // closed by Close: ends fault delays and latency
	inflight sync.WaitGroup
}

type clientState struct {
	Client
	jwks    *jose.JSONWebKeySet
	jwksErr error // Client.JWKS does not parse: every use fails
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
	info     TokenInfo
}

type refreshToken struct {
	clientID, subject, scope string
	expires                  time.Time // zero: never
	fam                      *family
	used                     bool   // rotated away
	jkt                      string // bound to this DPoP key (public clients)
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
		idTokens:  map[string]*accessToken{},
		issuers:   map[string]*trustedIssuer{},
		jtis:      map[string]time.Time{},
		jtiSweep:  1024,
		nonces:    [2]string{newSecret("n_")},
		rsNonces:  [2]string{newSecret("rn_")},
	}
	for _, ai := range o.AssertionIssuers {
		s.addIssuer(ai)
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
func (s *Server) Start(addr string) error { return s.start(addr, nil) }

func (s *Server) start(addr string, tlsConfig *tls.Config) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("devprovider: listen on %s: %w", addr, err)
	}
	s.lmu.Lock()
	if s.srv != nil || s.closed {
		s.lmu.Unlock()
		ln.Close()
		return errStarted
	}
	hostport := ln.Addr().String()
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		hostport = net.JoinHostPort("127.0.0.1", fmt.Sprint(ta.Port))
	}
	s.url = "http://" + hostport
	if tlsConfig != nil {
		s.url, s.tls = "https://"+hostport, true
		ln = tls.NewListener(ln, tlsConfig)
	}
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
	c.JWKS = slices.Clone(c.JWKS)
	cs := &clientState{Client: c}
	cs.jwks, cs.jwksErr = parseJWKS(c.JWKS)
	s.mu.Lock()
	s.clients[c.ID] = cs
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
