package devprovider

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Client authentication methods (RFC 7591 token_endpoint_auth_method).
const (
	AuthMethodBasic = "client_secret_basic"
	AuthMethodPost  = "client_secret_post"
	AuthMethodNone  = "none"
	// AuthMethodPrivateKeyJWT signs a client assertion with a private key
	// whose public key is in Client.JWKS (RFC 7523 §2.2).
	AuthMethodPrivateKeyJWT = "private_key_jwt"
	// AuthMethodSecretJWT signs a client assertion with HMAC keyed by the
	// client secret.
	AuthMethodSecretJWT = "client_secret_jwt"
	// AuthMethodTLS presents a CA-issued client certificate whose subject
	// is Client.TLSSubjectDN (RFC 8705 §2.1).
	AuthMethodTLS = "tls_client_auth"
	// AuthMethodSelfSignedTLS presents a self-signed client certificate
	// pinned in Client.JWKS (RFC 8705 §2.2).
	AuthMethodSelfSignedTLS = "self_signed_tls_client_auth"
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
//
// JWKS (a JWK set, {"keys":[...]}, of public keys: see [JWKS] and
// [CertJWKS]) verifies private_key_jwt assertions and pins
// self_signed_tls_client_auth certificates; a JWKS that does not parse or
// holds a private key makes each use fail with invalid_client. A
// client_secret_jwt Secret must be at least as long as its alg's hash (32
// bytes for HS256, RFC 7518 §3.2). SigningAlg,
// when set, is the only alg its assertions may use
// (token_endpoint_auth_signing_alg). DPoPBound makes every token request of
// the client carry a DPoP proof (RFC 9449 §5.2 dpop_bound_access_tokens).
type Client struct {
	ID, Secret   string
	AuthMethod   string
	RedirectURIs []string
	JWKS         json.RawMessage
	SigningAlg   string
	// TLSSubjectDN is the subject of a tls_client_auth client's
	// certificate, as crypto/x509/pkix.Name.String renders it (RFC 4514
	// order, e.g. "CN=app,O=Example").
	TLSSubjectDN string
	DPoPBound    bool
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
	// MetadataDocuments advertises client_id_metadata_document_supported.
	// The server fetches no document: a test registers the client whose
	// client_id is the document's URL (AuthMethod none) in Clients.
	MetadataDocuments bool
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

	// ClientCAs verify tls_client_auth certificates; nil means the
	// server's own CA ([Server.IssueClientCert]).
	ClientCAs *x509.CertPool
	// AssertionIssuers are trusted to sign JWT-bearer grant assertions.
	AssertionIssuers []AssertionIssuer
	// ClockSkew is how far in the future an iat or nbf may be; 0 means
	// 30 s.
	ClockSkew time.Duration
	// DPoPAlgs are the proof algs accepted (and advertised in
	// dpop_signing_alg_values_supported); nil means ES256, ES384, ES512,
	// RS256, PS256 and EdDSA. Symmetric algs and "none" are never
	// accepted.
	DPoPAlgs []string
	// DPoPWindow is how far a proof's iat may be from the server's clock,
	// either way; 0 means 60 s.
	DPoPWindow time.Duration
	// DPoPNonce makes the token endpoint demand a server nonce in DPoP
	// proofs (RFC 9449 §8): a proof without the current one is answered
	// 400 use_dpop_nonce with a DPoP-Nonce header.
	DPoPNonce bool
	// ResourceNonce makes the resource server ([Server.ResourceHandler])
	// demand its own nonce (RFC 9449 §9): 401 use_dpop_nonce.
	ResourceNonce bool
}

// AssertionIssuer is an issuer trusted for the JWT-bearer grant (RFC 7523
// §2.1), such as a service account.
type AssertionIssuer struct {
	// Issuer is the iss its assertions carry.
	Issuer string
	// JWKS is a JWK set of its public keys.
	JWKS json.RawMessage
	// Audiences the assertion's aud may name besides the token endpoint URL
	// and the issuer URL, which are always accepted.
	Audiences []string
	// Subjects restricts the sub its assertions may name; empty means any.
	Subjects []string
	// SubjectOptional accepts an assertion without sub as one for the
	// issuer itself, as Google does for a service account; RFC 7523 §3
	// requires sub, and so does the server by default.
	SubjectOptional bool
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

	// ClientAuthFailures counts invalid_client answers of client
	// authentication.
	ClientAuthFailures int
	// AssertionFailures counts refused client assertions and JWT-bearer
	// assertions (replays included); AssertionReplays those refused for a
	// jti already used.
	AssertionFailures, AssertionReplays int
	// ProofFailures counts refused DPoP proofs at the token endpoint and
	// the resource server (replays included, nonce challenges not);
	// ProofReplays those refused for a jti already used.
	ProofFailures, ProofReplays int
	// NonceChallenges counts use_dpop_nonce answers.
	NonceChallenges int
	// Exchanges counts successful token exchanges.
	Exchanges int
	// ResourceRequests counts requests to the resource server;
	// ResourceRefused those answered 401.
	ResourceRequests, ResourceRefused int
	// Resources records the RFC 8707 resource parameters received, one
	// entry per request that sent any: "authorize <resource>" for an
	// authorization request, "<grant_type> <resource>" for a token
	// request (repeated values joined with spaces).
	Resources []string
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

// TokenInfo is what the server knows of an access token it issued.
type TokenInfo struct {
	ClientID  string // "" for an anonymous JWT-bearer request
	GrantType string
	Subject   string
	Scope     string
	// JKT is the RFC 7638 thumbprint of the DPoP key the token is bound
	// to; "" for a Bearer token.
	JKT string
	// Actor is the subject of a token exchange's actor token.
	Actor string
	// Audience and Resource are a token exchange's requested targets.
	Audience, Resource []string
	Expires            time.Time
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

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByGrant = make(map[string]int, len(s.stats.ByGrant))
	for k, v := range s.stats.ByGrant {
		st.ByGrant[k] = v
	}
	st.Resources = append([]string(nil), s.stats.Resources...)
	return st
}

// Issued returns every secret the server generated, in order: access,
// refresh and id tokens, authorization and device codes, the client
// secrets and registration access tokens of registered clients, the
// private keys of the certificates it made (PEM); and every
// secret it received: client assertions, JWT-bearer assertions, DPoP proofs,
// subject and actor tokens. Tests scan logs for them. Secrets given in
// Options or AddClient/AddUser are not included: the test knows them.
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

// TokenInfo returns what the server recorded of accessToken (its subject,
// DPoP binding, exchange actor and audience...), and false if it did not
// issue it. It says nothing of validity: see [Server.Valid].
func (s *Server) TokenInfo(accessToken string) (TokenInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.access[accessToken]
	if !ok {
		return TokenInfo{}, false
	}
	info := at.info
	info.Audience, info.Resource = slices.Clone(info.Audience), slices.Clone(info.Resource)
	return info, true
}

// RefreshJKT returns the thumbprint of the DPoP key refreshToken is bound
// to ("" when unbound), and false if the server did not issue it.
func (s *Server) RefreshJKT(refreshToken string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[refreshToken]
	if !ok {
		return "", false
	}
	return rt.jkt, true
}

func (o *Options) skew() time.Duration {
	if o.ClockSkew > 0 {
		return o.ClockSkew
	}
	return defaultSkew
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
	mux.HandleFunc("POST "+mtlsPrefix+"/token", s.handleToken)
	mux.HandleFunc("POST "+mtlsPrefix+"/revoke", s.handleRevoke)
	mux.HandleFunc("POST "+mtlsPrefix+"/device", s.handleDevice)
	mux.HandleFunc("/resource/", s.handleResource)
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
	return s.wrap(mux)
}

// wrap serves h while the server is open and logs each request.
func (s *Server) wrap(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.lmu.Lock()
		if s.closed {
			s.lmu.Unlock()
			http.Error(w, "devprovider: server closed", http.StatusServiceUnavailable)
			return
		}
		s.inflight.Add(1)
		s.lmu.Unlock()
		defer s.inflight.Done()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		defer func() {
			if s.opts.Logf != nil {
				s.opts.Logf("devprovider: %s %s -> %d%s (%s)", r.Method, r.URL.Path, rec.status, rec.note.String(), time.Since(start).Round(time.Microsecond))
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
