package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// introspector is a confidential client every test server has, used by the
// tests alone to ask the introspection endpoint about tokens tokend holds.
const (
	introspectorID     = "e2e-introspector"
	introspectorSecret = "e2e-introspector-secret-0123456789abcdef"
)

// OIDCConfig configures one oidc-provider server (see oidc/server.mjs).
// Zero fields take the server's defaults: 15 s access tokens, 1 day refresh
// tokens.
type OIDCConfig struct {
	AccessTokenTTL       int              `json:"accessTokenTTL,omitempty"`
	ClientCredentialsTTL int              `json:"clientCredentialsTTL,omitempty"`
	RefreshTokenTTL      int              `json:"refreshTokenTTL,omitempty"`
	Clients              []map[string]any `json:"clients"`

	// Interactive serves login and consent pages to fill in (the browser
	// tests) instead of finishing them on their own.
	Interactive bool `json:"interactive,omitempty"`
}

// OIDC is a running oidc-provider.
type OIDC struct {
	Issuer string
	t      testing.TB
	cmd    *exec.Cmd
	logs   *testutil.SyncBuffer
	done   chan struct{}
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
}

// RefreshTokenCounts are the states of every refresh token issued to one
// client, from GET /_test/refresh_tokens.
type RefreshTokenCounts struct {
	Active   int `json:"active"`
	Consumed int `json:"consumed"`
	Expired  int `json:"expired"`
	Gone     int `json:"gone"`
}

// Introspection is an RFC 7662 answer.
type Introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	Exp       int64  `json:"exp"`
	Sub       string `json:"sub"`
	TokenType string `json:"token_type"`
}

// StartOIDC starts oidc-provider on a random loopback port and stops it
// when the test ends. Its stderr (oidc-provider's error details) is logged
// if the test fails.
func StartOIDC(t testing.TB, cfg OIDCConfig) *OIDC {
	t.Helper()
	cfg.Clients = withIntrospector(cfg.Clients)
	o, _ := launchOIDC(t, cfg)
	return o
}

// withIntrospector adds the client the harness introspects tokens with.
func withIntrospector(clients []map[string]any) []map[string]any {
	return append(append([]map[string]any(nil), clients...), map[string]any{
		"client_id":                  introspectorID,
		"client_secret":              introspectorSecret,
		"grant_types":                []string{"client_credentials"},
		"response_types":             []string{},
		"redirect_uris":              []string{},
		"token_endpoint_auth_method": "client_secret_basic",
	})
}

// launchOIDC runs e2e/oidc/server.mjs with cfg (JSON), waits for its hello
// line (issuer, port, mtlsAlias) and stops it when the test ends; its
// stderr is logged if the test fails. 60 s: 30 s was once too short for
// node on a loaded machine.
func launchOIDC(t testing.TB, cfg any) (*OIDC, []byte) {
	t.Helper()
	requireNode(t)
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "oidc.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", filepath.Join(oidcDir, "server.mjs"), cfgFile)
	cmd.Dir = oidcDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	o := &OIDC{t: t, cmd: cmd, logs: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = o.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("e2e: start oidc-provider: %v", err)
	}
	go func() {
		cmd.Wait()
		close(o.done)
	}()
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			t.Logf("oidc-provider stderr:\n%s", o.logs.String())
		}
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		var hello struct {
			Issuer string `json:"issuer"`
		}
		if err := json.Unmarshal([]byte(line), &hello); err != nil || hello.Issuer == "" {
			t.Fatalf("e2e: oidc-provider did not start (%q): %v\n%s", line, err, o.logs.String())
		}
		o.Issuer = hello.Issuer
		return o, []byte(line)
	case <-time.After(60 * time.Second):
		t.Fatalf("e2e: oidc-provider did not start in 60s:\n%s", o.logs.String())
	}
	return nil, nil
}

// Stop ends the server (SIGKILL: it keeps nothing worth a graceful stop).
func (o *OIDC) Stop() {
	o.cmd.Process.Kill()
	<-o.done
}

// Logs returns what the server wrote to stderr so far.
func (o *OIDC) Logs() string { return o.logs.String() }

func (o *OIDC) getJSON(path string, v any) error {
	resp, err := http.Get(o.Issuer + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Stats returns the server's counts.
func (o *OIDC) Stats() Stats {
	o.t.Helper()
	var s Stats
	if err := o.getJSON("/_test/stats", &s); err != nil {
		o.t.Fatalf("e2e: stats: %v", err)
	}
	return s
}

// RefreshTokens returns the states of the refresh tokens issued to clientID.
func (o *OIDC) RefreshTokens(clientID string) RefreshTokenCounts {
	o.t.Helper()
	var c RefreshTokenCounts
	if err := o.getJSON("/_test/refresh_tokens?client_id="+url.QueryEscape(clientID), &c); err != nil {
		o.t.Fatalf("e2e: refresh tokens: %v", err)
	}
	return c
}

// Introspect asks the introspection endpoint about token.
func (o *OIDC) Introspect(token string) Introspection {
	o.t.Helper()
	req, err := http.NewRequest(http.MethodPost, o.Issuer+"/token/introspection",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(introspectorID, introspectorSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatalf("e2e: introspect: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		o.t.Fatalf("e2e: introspect: %s: %s", resp.Status, b)
	}
	var in Introspection
	if err := json.Unmarshal(b, &in); err != nil {
		o.t.Fatalf("e2e: introspect: %v: %s", err, b)
	}
	return in
}
