package mcp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tokend/tokend/internal/testutil"
)

// fake is an httptest server in Go playing a resource or an
// authorization server, recording every request.
type fake struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "METHOD /path [auth]"
}

func newFake(t testing.TB, h func(f *fake, w http.ResponseWriter, r *http.Request)) *fake {
	t.Helper()
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		line := r.Method + " " + r.URL.Path
		if r.Header.Get("Authorization") != "" {
			line += " [auth]"
		}
		f.mu.Lock()
		f.seen = append(f.seen, line)
		f.mu.Unlock()
		h(f, w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// sent are the requests that would carry something to an authorization
// server or a resource: a registration, a token request, an authorization
// request, a request with credentials. Discovery (GETs of metadata and
// the unauthenticated probe of the resource) is not among them.
var sent = regexp.MustCompile(`(?i)^(POST|PUT|PATCH)\s+/(reg|register|token|oauth/token)|/(auth|authorize)(\s|$)|\[auth\]`)

// attack is one hostile set-up of a resource (and an authorization
// server): challenge is the 401's WWW-Authenticate (base is the resource
// server's URL, as is the authorization server's as), prm the
// protected-resource metadata (nil: 404), asMeta the authorization server's
// metadata (nil: 404).
type attack struct {
	name      string
	challenge func(base string) string
	prm       func(base, as string) any
	asMeta    func(as string) any
	// clearError must match what tokend says.
	clearError *regexp.Regexp
	// forbidden must not appear in what tokend says or logs (e.g. a
	// lookup of a name it must not fetch).
	forbidden *regexp.Regexp
	// control marks the honest set-up, which shows that the fakes see
	// what tokend sends: there the registration must reach the
	// authorization server.
	control bool
}

func goodPRM(base, as string) any {
	return map[string]any{"resource": base + "/mcp", "authorization_servers": []string{as}, "scopes_supported": []string{"mcp:tools"}}
}

func goodASMeta(as string) any {
	return map[string]any{
		"issuer": as, "authorization_endpoint": as + "/authorize", "token_endpoint": as + "/token",
		"registration_endpoint": as + "/register", "response_types_supported": []string{"code"},
		"code_challenge_methods_supported": []string{"S256"}, "token_endpoint_auth_methods_supported": []string{"none"},
	}
}

func challengeTo(base string) string {
	return fmt.Sprintf(`Bearer resource_metadata="%s/.well-known/oauth-protected-resource/mcp", scope="mcp:tools"`, base)
}

var attacks = []attack{{
	name:       "control: an honest resource",
	challenge:  challengeTo,
	prm:        goodPRM,
	asMeta:     goodASMeta,
	clearError: regexp.MustCompile(`(?i)past`), // it waits for the pasted address, which never comes
	control:    true,
}, {
	name:      "metadata naming another resource",
	challenge: challengeTo,
	prm: func(base, as string) any {
		return map[string]any{"resource": "https://elsewhere.example/mcp", "authorization_servers": []string{as}}
	},
	asMeta:     goodASMeta,
	clearError: regexp.MustCompile(`(?i)resource.*(elsewhere\.example|match|differ|not)`),
}, {
	name:      "authorization server metadata with another issuer",
	challenge: challengeTo,
	prm:       goodPRM,
	asMeta: func(as string) any {
		m := goodASMeta(as).(map[string]any)
		m["issuer"] = "https://issuer.elsewhere.example"
		return m
	},
	clearError: regexp.MustCompile(`(?i)issuer`),
}, {
	name: "challenge naming http metadata on a host that is not loopback",
	challenge: func(string) string {
		return `Bearer resource_metadata="http://tokend-e2e-attacker.invalid/.well-known/oauth-protected-resource/mcp"`
	},
	clearError: regexp.MustCompile(`(?i)(https|loopback|insecure)`),
	forbidden:  regexp.MustCompile(`(?i)no such host|lookup tokend-e2e-attacker|server misbehaving`),
}, {
	name: "64 KiB WWW-Authenticate",
	challenge: func(base string) string {
		return challengeTo(base) + `, pad="` + strings.Repeat("A", 64<<10) + `"`
	},
	clearError: regexp.MustCompile(`(?i)(www-authenticate|challenge|header|too (large|long|big))`),
}, {
	name: "malformed WWW-Authenticate",
	challenge: func(base string) string {
		return `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp, scope="mcp:tools`
	},
	clearError: regexp.MustCompile(`(?i)(www-authenticate|challenge|malformed|invalid|parse)`),
}}

// TestMCPAttacks: for each hostile resource, `tokend authorize NAME
// --paste` on a grant naming it fails with an error that says what is
// wrong, and nothing is sent: no registration, no token or authorization
// request, no credentials, to the resource or the authorization server.
func TestMCPAttacks(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, a := range attacks {
		t.Run(strings.ReplaceAll(a.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			as := newFake(t, func(f *fake, w http.ResponseWriter, r *http.Request) {
				switch {
				case a.asMeta != nil && (strings.HasPrefix(r.URL.Path, "/.well-known/oauth-authorization-server") || strings.HasPrefix(r.URL.Path, "/.well-known/openid-configuration")):
					writeJSON(w, a.asMeta(f.URL))
				case r.URL.Path == "/register":
					w.WriteHeader(http.StatusCreated)
					writeJSON(w, map[string]any{"client_id": "attacker-client"})
				default:
					http.NotFound(w, r)
				}
			})
			res := newFake(t, func(f *fake, w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/mcp":
					w.Header().Set("WWW-Authenticate", a.challenge(f.URL))
					w.WriteHeader(http.StatusUnauthorized)
				case a.prm != nil && strings.HasPrefix(r.URL.Path, "/.well-known/oauth-protected-resource"):
					writeJSON(w, a.prm(f.URL, as.URL))
				default:
					http.NotFound(w, r)
				}
			})
			td := newTokend(t, grantConfig{Name: "evil", Resource: res.URL + "/mcp"})
			out, errs, code := td.cli("", "authorize", "evil", "--paste")
			said := out + errs
			if st, err := td.status("evil"); err == nil {
				said += "\n" + st.LastError
			}
			if code == 0 {
				t.Errorf("tokend authorize --paste succeeded against %s:\n%s", a.name, said)
			}
			t.Logf("tokend said: %s; resource saw %v; authorization server saw %v", strings.TrimSpace(out+errs), res.requests(), as.requests())
			if a.control {
				if !slices.ContainsFunc(as.requests(), sent.MatchString) {
					t.Errorf("the honest set-up: the authorization server saw no registration (%v): the fakes do not see what tokend sends", as.requests())
				}
				return
			}
			if !a.clearError.MatchString(out + errs) {
				t.Errorf("tokend authorize says %q: want an error matching %v", strings.TrimSpace(out+errs), a.clearError)
			}
			if len(said) > 8<<10 {
				t.Errorf("tokend says %d bytes: an attacker's header must not be echoed", len(said))
			}
			if a.forbidden != nil {
				if m := a.forbidden.FindString(said + td.logs.String()); m != "" {
					t.Errorf("tokend tried the address it must not fetch (%q)", m)
				}
			}
			for _, f := range []struct {
				who string
				f   *fake
			}{{"resource", res}, {"authorization server", as}} {
				for _, r := range f.f.requests() {
					if sent.MatchString(r) {
						t.Errorf("sent to the %s: %s (all: %v)", f.who, r, f.f.requests())
					}
				}
			}
		})
	}
}

// curlAs runs curl as uid with args; it returns curl's output (the answer's
// body, then the HTTP status on a line of its own; or curl's error) and
// exit code.
func curlAs(t testing.TB, uid uint32, args ...string) (string, int) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		missing(t, fmt.Errorf("e2e/mcp: curl plays the other local user: %v (scripts/test-deps installs it)", err))
	}
	cmd := exec.Command(curl, append([]string{"-sS", "-w", "\n%{http_code}", "-m", "20",
		"-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream", "--data", initialize}, args...)...)
	testutil.AsUser(cmd, uid)
	b, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)), code
}

// TestMCPProxyRefusesNonReaders: a local user who is not among the
// grant's readers (uid 65534) is refused by the grant's proxy over TCP
// loopback and over a unix socket, and nothing reaches the MCP server;
// the reader (this test's uid) gets through both.
func TestMCPProxyRefusesNonReaders(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("e2e/mcp: playing another local user (uid 65534) needs root")
	}
	st := startStack(t)
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.LowPort(t))
	sockDir := testutil.StickyDir(t)
	sock := filepath.Join(sockDir, "notes-proxy.sock")
	td := newTokend(t,
		grantConfig{Name: "tcp", Resource: st.MCP.URL, Proxy: tcpAddr},
		grantConfig{Name: "unix", Resource: st.MCP.URL, Proxy: sock},
	)
	td.authorizePaste("tcp", st.AS.Issuer)
	td.authorizePaste("unix", st.AS.Issuer)

	for _, via := range []struct {
		name string
		args []string
	}{
		{"tcp", []string{proxyURL(tcpAddr)}},
		{"unix", []string{"--unix-socket", sock, "http://proxy/"}},
	} {
		t.Run(via.name, func(t *testing.T) {
			before := st.MCP.stats()["/mcp"].Requests
			if out, code := curlAs(t, uint32(os.Getuid()), via.args...); code != 0 || !strings.HasSuffix(out, "\n200") {
				t.Fatalf("the reader through the %s proxy: curl exit %d, %s: want 200", via.name, code, out)
			}
			if got := st.MCP.stats()["/mcp"].Requests; got != before+1 {
				t.Fatalf("the reader's request: the MCP server saw %d requests, want 1", got-before)
			}
			out, code := curlAs(t, 65534, via.args...)
			// Refused: 403 from the proxy with an error that says so, or
			// the connection refused before any answer.
			i := strings.LastIndex(out, "\n")
			body, status := strings.TrimSpace(out[:max(i, 0)]), out[i+1:]
			if code == 0 {
				var e struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if status != "403" || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || e.Description == "" {
					t.Errorf("uid 65534 through the %s proxy: %s %s, want 403 with an error saying why", via.name, status, body)
				}
			}
			if got := st.MCP.stats()["/mcp"].Requests; got != before+1 {
				t.Errorf("uid 65534's request reached the MCP server (%d requests)", got-before-1)
			}
			t.Logf("uid 65534 through the %s proxy: curl exit %d, %s", via.name, code, out)
		})
	}
}
