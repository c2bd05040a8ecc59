// Package oidcop runs oidc-provider (e2e/oidc/server.mjs), the independent
// authorization server of the end-to-end tests, for one test: [Start]
// writes a [Config] as the JSON file server.mjs reads, starts it with
// node, waits for the line it prints once listening, and stops it when
// the test ends. The [Server] reads the counts and states server.mjs
// keeps for the tests (the /_test routes), asks its introspection
// endpoint about tokens, and makes it hold a token request.
//
// Only tests import it.
package oidcop

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// Config is the JSON configuration server.mjs reads; zero fields take the
// server's defaults (15 s access tokens, 1 day refresh tokens: see the
// list at the top of server.mjs). The fields tagged json:"-" are the
// launcher's own.
type Config struct {
	// Node is the node program that runs server.mjs: "" is the one on
	// $PATH.
	Node string `json:"-"`
	// RootCAs, when not nil, are trusted by the Server's own requests to
	// an https server (TLS).
	RootCAs *x509.CertPool `json:"-"`

	AccessTokenTTL       int `json:"accessTokenTTL,omitempty"`
	ClientCredentialsTTL int `json:"clientCredentialsTTL,omitempty"`
	RefreshTokenTTL      int `json:"refreshTokenTTL,omitempty"`
	// Scopes are the scopes the server knows; ResourceScope those of every
	// resource server; JWTResources the resource indicators whose access
	// tokens are JWTs a resource server verifies itself.
	Scopes        []string `json:"scopes,omitempty"`
	ResourceScope string   `json:"resourceScope,omitempty"`
	JWTResources  []string `json:"jwtResources,omitempty"`
	// Clients is oidc-provider client metadata. Start adds the client the
	// Server introspects tokens with.
	Clients []map[string]any `json:"clients,omitempty"`
	// Interactive serves login and consent pages to fill in (the browser
	// tests) instead of finishing them on their own.
	Interactive bool `json:"interactive,omitempty"`

	TLS                   *TLS     `json:"tls,omitempty"`
	MTLS                  *MTLS    `json:"mtls,omitempty"`
	DPoP                  *bool    `json:"dpop,omitempty"` // nil: on (oidc-provider's default)
	DPoPNonce             bool     `json:"dpopNonce,omitempty"`
	DPoPNonceLoop         bool     `json:"dpopNonceLoop,omitempty"`
	ClientAuthSigningAlgs []string `json:"clientAuthSigningAlgs,omitempty"`
}

// TLS are the PEM files of an https server.
type TLS struct {
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	ClientCA string `json:"clientCA,omitempty"`
}

// MTLS is oidc-provider's features.mTLS (RFC 8705).
type MTLS struct {
	TLSClientAuth                bool `json:"tlsClientAuth,omitempty"`
	SelfSignedTLSClientAuth      bool `json:"selfSignedTlsClientAuth,omitempty"`
	CertificateBoundAccessTokens bool `json:"certificateBoundAccessTokens,omitempty"`
	Alias                        bool `json:"alias,omitempty"`
}

// The introspector is a confidential client every server has, used by the
// tests alone to ask the introspection endpoint about tokens.
const (
	introspectorID     = "e2e-introspector"
	introspectorSecret = "e2e-introspector-secret-0123456789abcdef"
)

// Server is a running oidc-provider.
type Server struct {
	// Issuer is the server's issuer URL (http://127.0.0.1:PORT, https
	// with TLS).
	Issuer string
	// MTLSAlias is the origin of the mtls_endpoint_aliases ("" without).
	MTLSAlias string

	t      testing.TB
	proc   *testutil.Proc
	logs   *testutil.SyncBuffer
	client *http.Client
}

// Dir returns the directory of server.mjs (e2e/oidc of the module), found
// from the working directory up to the module's go.mod.
func Dir() (string, error) {
	dirOnce.Do(func() { dir, dirErr = findDir() })
	return dir, dirErr
}

var (
	dirOnce sync.Once
	dir     string
	dirErr  error
)

func findDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, "e2e", "oidc"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or above it", wd)
		}
	}
}

// Check says why oidc-provider cannot run here with node (a program name
// or path; "" is node on $PATH), or returns nil.
func Check(node string) error {
	if node == "" {
		node = "node"
	}
	if _, err := exec.LookPath(node); err != nil {
		return fmt.Errorf("node is not installed (Node.js >= 20.19 runs oidc-provider): %w", err)
	}
	d, err := Dir()
	if err != nil {
		return fmt.Errorf("e2e/oidc not found: %w", err)
	}
	if _, err := os.Stat(filepath.Join(d, "node_modules", "oidc-provider", "package.json")); err != nil {
		return errors.New("oidc-provider is not installed in e2e/oidc/node_modules: run `make test` or scripts/test-deps (npm ci --prefix e2e/oidc) first")
	}
	return nil
}

// Start starts oidc-provider with cfg on a loopback port it picks and
// stops it when the test ends; the server's stderr (oidc-provider's error
// details, which clients see only as "grant request is invalid") is
// logged if the test failed. When oidc-provider cannot run here the test
// fails with Check's reason: a test that reaches Start needs it, and the
// caller decides before whether a missing dependency skips instead.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if err := Check(cfg.Node); err != nil {
		t.Fatalf("oidcop: %v", err)
	}
	d, _ := Dir()
	cfg.Clients = append(append([]map[string]any(nil), cfg.Clients...), map[string]any{
		"client_id":                  introspectorID,
		"client_secret":              introspectorSecret,
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"redirect_uris":              []string{},
		"token_endpoint_auth_method": "client_secret_basic",
	})
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "oidc.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	node := cfg.Node
	if node == "" {
		node = "node"
	}
	cmd := exec.Command(node, filepath.Join(d, "server.mjs"), cfgFile)
	cmd.Dir = d
	s := &Server{t: t, logs: &testutil.SyncBuffer{}, client: &http.Client{Timeout: 30 * time.Second}}
	if cfg.RootCAs != nil {
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs}}
	}
	cmd.Stderr = s.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.proc = testutil.StartProc(t, cmd)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("oidc-provider stderr:\n%s", s.logs.String())
		}
	})
	ready := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, _ := r.ReadString('\n')
		ready <- line
		io.Copy(s.logs, r)
	}()
	select {
	case line := <-ready:
		var hello struct {
			Issuer    string `json:"issuer"`
			MTLSAlias string `json:"mtlsAlias"`
		}
		if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Issuer == "" {
			t.Fatalf("oidcop: oidc-provider did not start (%q): %v\n%s", line, err, s.logs.String())
		}
		s.Issuer, s.MTLSAlias = hello.Issuer, hello.MTLSAlias
	case <-time.After(60 * time.Second):
		// Node has been seen to take over 30 s to start on a loaded
		// machine, once.
		t.Fatalf("oidcop: oidc-provider did not start in 60s:\n%s", s.logs.String())
	}
	return s
}

// Stop ends the server (SIGKILL: it keeps nothing worth a graceful stop)
// and waits for it to exit.
func (s *Server) Stop() { s.proc.Kill() }

// Logs returns what the server wrote to stderr so far.
func (s *Server) Logs() string { return s.logs.String() }

// getJSON decodes the answer to GET path, failing the test unless it is
// 200 with JSON.
func (s *Server) getJSON(path string, v any) {
	s.t.Helper()
	resp, err := s.client.Get(s.Issuer + path)
	if err != nil {
		s.t.Fatalf("oidcop: GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("oidcop: GET %s: %s: %s", path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		s.t.Fatalf("oidcop: GET %s: %v: %s", path, err, b)
	}
}

// Stats are the counts GET /_test/stats returns.
type Stats struct {
	TokenRequests        map[string]int `json:"token_requests"`
	TokenSuccess         map[string]int `json:"token_success"`
	TokenErrors          map[string]int `json:"token_errors"`
	InvalidGrant         int            `json:"invalid_grant"`
	RefreshTokenReuse    int            `json:"refresh_token_reuse"`
	Registrations        int            `json:"registrations"`
	Revocations          int            `json:"revocations"`
	RevocationErrors     int            `json:"revocation_errors"`
	Introspections       int            `json:"introspections"`
	DeviceAuthorizations int            `json:"device_authorizations"`
	Authorizations       int            `json:"authorizations"`
	ServerErrors         int            `json:"server_errors"`

	// Client authentication beyond secrets, and DPoP.
	ClientAuthErrors   map[string]int `json:"client_auth_errors"`
	ClientAssertions   map[string]int `json:"client_assertions"`
	ClientCertificates int            `json:"client_certificates"`
	AliasRequests      int            `json:"alias_requests"`
	DPoPProofs         int            `json:"dpop_proofs"`
	DPoPTokens         int            `json:"dpop_tokens"`
	DPoPErrors         map[string]int `json:"dpop_errors"`
	UseDPoPNonce       int            `json:"use_dpop_nonce"`
}

// Stats returns the server's counts.
func (s *Server) Stats() Stats {
	s.t.Helper()
	var st Stats
	s.getJSON("/_test/stats", &st)
	return st
}

// RefreshTokenCounts are the states of refresh tokens the server issued,
// from GET /_test/refresh_tokens.
type RefreshTokenCounts struct {
	Active   int `json:"active"`
	Consumed int `json:"consumed"`
	Expired  int `json:"expired"`
	Gone     int `json:"gone"`
}

// RefreshTokens returns the states of the refresh tokens issued to
// clientID, or to every client when clientID is "".
func (s *Server) RefreshTokens(clientID string) RefreshTokenCounts {
	s.t.Helper()
	path := "/_test/refresh_tokens"
	if clientID != "" {
		path += "?client_id=" + url.QueryEscape(clientID)
	}
	var c RefreshTokenCounts
	s.getJSON(path, &c)
	return c
}

// Seen are the client assertions and DPoP proofs the server saw, from GET
// /_test/seen.
type Seen struct {
	ClientAssertions []string `json:"client_assertions"`
	DPoPProofs       []string `json:"dpop_proofs"`
}

// Seen returns the client assertions and DPoP proofs the server saw.
func (s *Server) Seen() Seen {
	s.t.Helper()
	var v Seen
	s.getJSON("/_test/seen", &v)
	return v
}

// Discovery returns the server's metadata.
func (s *Server) Discovery() map[string]any {
	s.t.Helper()
	var m map[string]any
	s.getJSON("/.well-known/openid-configuration", &m)
	return m
}

// Hold makes the server hold the next token request ms milliseconds
// before it reads and answers it (once), to catch a client in the middle
// of a request.
func (s *Server) Hold(ms int) {
	s.t.Helper()
	s.getJSON(fmt.Sprintf("/_test/hold?ms=%d", ms), &struct{}{})
}

// Held returns how many token requests the server held so far.
func (s *Server) Held() int {
	s.t.Helper()
	var h struct {
		Held int `json:"held"`
	}
	s.getJSON("/_test/hold", &h)
	return h.Held
}

// Introspection is an RFC 7662 answer with its confirmation claim.
type Introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Exp       int64  `json:"exp"`
	Sub       string `json:"sub"`
	TokenType string `json:"token_type"`
	Cnf       struct {
		JKT     string `json:"jkt"`
		X5TS256 string `json:"x5t#S256"`
	} `json:"cnf"`
}

// Introspect asks the introspection endpoint about token.
func (s *Server) Introspect(token string) Introspection {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.Issuer+"/token/introspection",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(introspectorID, introspectorSecret)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("oidcop: introspect: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("oidcop: introspect: %s: %s", resp.Status, b)
	}
	var in Introspection
	if err := json.Unmarshal(b, &in); err != nil {
		s.t.Fatalf("oidcop: introspect: %v: %s", err, b)
	}
	return in
}

// Client returns the HTTP client the Server makes its own requests with:
// it trusts Config.RootCAs.
func (s *Server) Client() *http.Client { return s.client }
