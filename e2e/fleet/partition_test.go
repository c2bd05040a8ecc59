package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("$%s=%q: want a duration", name, v)
	}
	return d
}

// TestFleetIsolatedMember: the etcd member every instance lists first is
// cut off from its peers (alive, answering clients, with no leader) for
// $FLEET_ISOLATION (default 20 s; the figure is 30s). Meanwhile
// the refresher of a grant with rotating refresh tokens (living 8 s) is
// killed -9 at random moments and restarted, $FLEET_ISOLATION_KILLS times
// (default 3). A reader may be refused after a kill (the token's last
// seconds are shorter than the takeover), never served an expired token.
// No instance may log a token obtained but not saved, a lost quorum, a
// broken watch or an unrenewed lease; the provider never sees a refresh
// token twice; the grant stays valid everywhere.
func TestFleetIsolatedMember(t *testing.T) {
	isolation := envDuration(t, "FLEET_ISOLATION", 20*time.Second)
	kills := testutil.EnvInt(t, "FLEET_ISOLATION_KILLS", 3)
	// Tokens living 8 s: refreshed every 5 s or so, a few times between
	// kills.
	f := newFleet(t, startCluster(t), startOIDC(t, 8))
	ins := f.startInstances(3)
	f.authorize(ins[0], ins[1], "web")
	waitServed(t, "web", ins...)
	readers := startReaders(t, "web", ins...)
	before := f.op.Stats()
	gen := ins[0].mustStatus("web").Generation
	marks := map[*instance]int{}
	for _, in := range ins {
		marks[in] = len(in.logs.String())
	}

	f.etcd.isolate(0)
	start := time.Now()
	for k := range kills {
		at := start.Add(time.Duration((float64(k) + rand.Float64()) * float64(isolation) / float64(kills)))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		r := refresher(t, "web", ins)
		r.kill()
		t.Logf("kill %d: %s killed %v into the isolation", k+1, r.Name, time.Since(start).Round(time.Millisecond))
		time.Sleep(rand.N(time.Second))
		r.start()
		r.wait()
	}
	if d := time.Until(start.Add(isolation)); d > 0 {
		time.Sleep(d)
	}
	f.etcd.heal(0)
	eventually(t, 2*accessTTL*time.Second, 200*time.Millisecond, "web refreshed and valid everywhere", func() error {
		for _, in := range ins {
			st, err := in.status("web")
			if err != nil {
				return err
			}
			if st.State != "valid" || st.Generation <= gen {
				return fmt.Errorf("%s: state %s, generation %d", in.Name, st.State, st.Generation)
			}
		}
		return nil
	})
	s := f.op.Stats()
	refreshes := s.TokenSuccess["refresh_token"] - before.TokenSuccess["refresh_token"]
	t.Logf("%v of isolation, %d kills: %d refreshes, refresh token reuse %d, invalid_grant %d", isolation, kills, refreshes, s.RefreshTokenReuse, s.InvalidGrant)
	if s.RefreshTokenReuse != 0 || s.InvalidGrant != 0 {
		t.Errorf("provider saw refresh token reuse %d, invalid_grant %d; want none", s.RefreshTokenReuse, s.InvalidGrant)
	}
	saved := 0
	for _, in := range ins {
		saved += strings.Count(in.logs.String()[marks[in]:], "token refreshed")
	}
	t.Logf("refreshes written by the instances during and after the isolation: %d", saved)
	if min := int(isolation / (8 * time.Second)); refreshes < min {
		t.Errorf("%d refreshes in %v, want at least %d", refreshes, isolation, min)
	}
	for _, in := range ins {
		logs := in.logs.String()[marks[in]:]
		for _, bad := range []string{"not saved", "quorum lost", "watch is broken", "lease not renewed", "lease is lost"} {
			if n := strings.Count(logs, bad); n > 0 {
				t.Errorf("%s logged %q %d times with one etcd member of three isolated", in.Name, bad, n)
			}
		}
	}
	checkReaders(t, readers, false)
}

// freeRun returns a base port such that base+k is free for every k in ks.
// The ports lie below the kernel's ephemeral range (32768 and up by
// default), where the outgoing connections and port-0 listeners of the
// tests running meanwhile cannot take them between this check and the
// script's bind.
func freeRun(t *testing.T, ks ...int) int {
	t.Helper()
	top := 0
	for _, k := range ks {
		top = max(top, k)
	}
	for range 100 {
		base := 10000 + rand.IntN(32768-10000-top)
		ok := true
		var ls []net.Listener
		for _, k := range ks {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+k))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free run of ports")
	return 0
}

// TestFleetQuickstart runs scripts/fleet-quickstart, docs/fleet.md's quick
// start end to end: three etcd members, oidc-provider, three instances,
// one authorization, a kill -9 of the refresher and a fetch from a
// survivor.
func TestFleetQuickstart(t *testing.T) {
	requireAll(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("fleet: curl is not installed (the quick start's browser)")
	}
	etcdPort := freeRun(t, 0, 1, 2, 3, 4, 5)
	tokendPort := freeRun(t, 0, 1, 2, 1000, 1001, 1002)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../../scripts/fleet-quickstart")
	cmd.Env = append(os.Environ(), "FLEET_DIR="+t.TempDir(), "TOKEND="+tokendBin, "ETCDMEMBER="+memberBin,
		fmt.Sprintf("ETCD_PORT=%d", etcdPort), fmt.Sprintf("TOKEND_PORT=%d", tokendPort))
	// Its own process group, killed whole if it overruns (the script's
	// trap stops its children otherwise).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fleet quick start: ok") {
		t.Fatalf("scripts/fleet-quickstart: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
