package mcp

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// soakPlan is how long TestMCPSharedGrant goes on: rotations of the
// grant's refresh token at oidc-provider, and a kill -9 of tokend every
// killEvery rotations.
func soakPlan(t testing.TB) (rotations, killEvery int) {
	if os.Getenv("TOKEND_MCP_SOAK") != "1" {
		return 5, 3
	}
	rotations = 30
	if v := os.Getenv("TOKEND_MCP_SOAK_ROTATIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TOKEND_MCP_SOAK_ROTATIONS=%q: want a positive number", v)
		}
		rotations = n
	}
	return rotations, 5
}

// startProxyCLI starts `tokend proxy NAME --listen ADDR`, the proxy as a
// client of the daemon's socket (it outlives a restart of the daemon) to
// the grant's protected_resource, and waits until it listens.
func startProxyCLI(t testing.TB, td *tokend, grant, addr string) *testutil.Proc {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(tokendBin, "proxy", grant, "--listen", addr)
	cmd.Env = append(os.Environ(), td.env()...)
	cmd.Stdout, cmd.Stderr = logs, logs
	p := testutil.StartProc(t, cmd)
	t.Cleanup(func() {
		if strings.Contains(logs.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in tokend proxy")
		}
		if t.Failed() {
			t.Logf("tokend proxy log:\n%s", logs.String())
		}
	})
	eventually(t, 30*time.Second, 50*time.Millisecond, "tokend proxy listening on "+addr, func() error {
		if !p.Running() {
			t.Fatalf("tokend proxy exited (%v):\n%s", p.Err(), logs.String())
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		c.Close()
		return nil
	})
	return p
}

// TestMCPSharedGrant: 8 bridges and a proxy on one grant call tools
// continuously while oidc-provider rotates the grant's refresh token at
// every refresh (12 s access tokens: tokend refreshes about every 9 s) and
// tokend is killed with SIGKILL and started again. oidc-provider revokes
// the whole grant when a refresh token is presented twice; it must never
// see that, and no tool call may fail (a call made while tokend restarts
// may wait).
func TestMCPSharedGrant(t *testing.T) {
	t.Parallel()
	rotations, killEvery := soakPlan(t)
	st := startStack(t)
	td := newTokend(t, grantConfig{Name: "notes", Resource: st.MCP.URL})
	td.authorizePaste("notes", st.AS.Issuer)
	proxyAddr := fmt.Sprintf("127.0.0.1:%d", testutil.LowPort(t))
	startProxyCLI(t, td, "notes", proxyAddr)

	sessions := []clientSession{{Name: "proxy", URL: proxyURL(proxyAddr)}}
	for i := 1; i <= 8; i++ {
		sessions = append(sessions, bridge(td, fmt.Sprintf("bridge%d", i), "notes"))
	}
	start := time.Now()
	c := startClients(t, 250*time.Millisecond, sessions...)
	connected := time.Since(start)

	refreshes := func() int { return st.AS.Stats().TokenSuccess["refresh_token"] }
	base := refreshes()
	kills, lastKill := 0, 0
	deadline := time.Now().Add(time.Duration(rotations+2)*2*accessTTL*time.Second + 60*time.Second)
	for {
		done := refreshes() - base
		if done >= rotations && kills > 0 && done > lastKill {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rotations and %d kills in %v, want %d rotations and a kill", done, kills, time.Since(start), rotations)
		}
		if done > 0 && done%killEvery == 0 && done != lastKill {
			// SIGKILL in the middle of the run, then a start: the
			// clients go on through it.
			td.kill()
			time.Sleep(time.Second)
			td.start()
			kills++
			lastKill = done
			t.Logf("kill -9 and restart of tokend after %d rotations (%v)", done, time.Since(start).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	sum := c.stop()
	elapsed := time.Since(start)

	rotated := refreshes() - base
	as := st.AS.Stats()
	srv := st.MCP.stats()["/mcp"]
	t.Logf("figures: %d rotations, %d kill -9 of tokend, %d tool calls by 9 sessions (8 bridges, 1 proxy), %d failed, %d access tokens seen by the server, %d requests it refused 401, %v (connecting %v)",
		rotated, kills, sum.Calls, sum.Failures, srv.Tokens, srv.Unauthorized, elapsed.Round(time.Second), connected.Round(time.Millisecond))
	for name, s := range sum.Sessions {
		t.Logf("  %-8s %4d calls, %d failed, %d tokens, slowest %d ms", name, s.Calls, s.Failures, s.Tokens, s.MaxMs)
		if s.Calls < 10 || s.Tokens < 2 {
			t.Errorf("session %s made %d calls with %d tokens: want calls throughout, across rotations", name, s.Calls, s.Tokens)
		}
	}
	for _, f := range c.failures() {
		t.Errorf("failed call: %s %s: %s", f.Session, f.Tool, f.Error)
	}
	if sum.Failures != 0 {
		t.Errorf("%d of %d tool calls failed, want none", sum.Failures, sum.Calls)
	}
	if as.RefreshTokenReuse != 0 || as.InvalidGrant != 0 {
		t.Errorf("oidc-provider saw %d refresh tokens reused and %d invalid_grant answers, want none (token errors: %v)", as.RefreshTokenReuse, as.InvalidGrant, as.TokenErrors)
	}
	if as.Registrations != 1 || as.Authorizations != 1 {
		t.Errorf("oidc-provider saw %d registrations and %d authorizations, want one each: the restarts keep the client and the grant", as.Registrations, as.Authorizations)
	}
	if srv.Clients != 1 {
		t.Errorf("MCP server saw %d clients, want tokend's one", srv.Clients)
	}
	// The grant is alive: one refresh token active, and one more refresh
	// succeeds.
	if rt := st.AS.RefreshTokens(""); rt.Active != 1 {
		t.Errorf("refresh tokens at oidc-provider %+v: want exactly one active (the grant not revoked)", rt)
	}
	if out, errs, code := td.cli("", "refresh", "notes"); code != 0 {
		t.Errorf("a final tokend refresh notes: exit %d\n%s%s", code, out, errs)
	}
	if as := st.AS.Stats(); as.RefreshTokenReuse != 0 || as.TokenSuccess["refresh_token"] <= base+rotated {
		t.Errorf("after the final refresh: %d reused, %d refreshes: want no reuse and one more refresh", as.RefreshTokenReuse, as.TokenSuccess["refresh_token"]-base)
	}
}
