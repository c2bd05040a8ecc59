package fleet

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// accessTTL is the provider's access token lifetime: with fraction 0.75 a
// grant is due every 11.25 s.
const accessTTL = 15

// tick is the refresh schedule of the instances.
const tick = time.Second

// startFleet starts etcd, oidc-provider and three instances together.
func startFleet(t *testing.T, edit func(f *fleet)) (*fleet, []*instance) {
	t.Helper()
	etcd := startCluster(t)
	op := startOIDC(t, accessTTL)
	f := newFleet(t, etcd, op)
	if edit != nil {
		edit(f)
	}
	return f, f.startInstances(3)
}

// waitServed waits until every instance serves grant, and returns the
// status of one.
func waitServed(t *testing.T, grant string, ins ...*instance) {
	t.Helper()
	for _, in := range ins {
		eventually(t, 30*time.Second, 100*time.Millisecond, grant+" served by "+in.Name, func() error {
			_, code, err := in.token(grant)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("answer %d", code)
			}
			return nil
		})
	}
}

// refresher returns the instance refreshing grant, as the instances'
// status says (all up ones agree and it says refresher_self).
func refresher(t *testing.T, grant string, ins []*instance) *instance {
	t.Helper()
	var r *instance
	eventually(t, 30*time.Second, 100*time.Millisecond, "one refresher of "+grant, func() error {
		names := map[string]bool{}
		for _, in := range ins {
			if !in.up() {
				continue
			}
			st, err := in.status(grant)
			if err != nil {
				return err
			}
			names[st.Refresher] = true
			if st.RefresherSelf {
				r = in
			}
		}
		if len(names) != 1 || names[""] || r == nil || !names[r.Name] {
			r = nil
			return fmt.Errorf("refreshers seen: %v", names)
		}
		return nil
	})
	return r
}

func others(ins []*instance, not *instance) []*instance {
	var o []*instance
	for _, in := range ins {
		if in != not {
			o = append(o, in)
		}
	}
	return o
}

// TestFleetFailover: kill -9 the instance refreshing a grant just before
// the grant is due, restart it, FLEET_KILLS times. Another instance must
// refresh within lease_ttl + one tick (+ slack for a loaded machine), the
// provider never sees a refresh token twice, and no reader is ever served
// an expired token.
func TestFleetFailover(t *testing.T) {
	kills := testutil.EnvInt(t, "FLEET_KILLS", 5)
	f, ins := startFleet(t, nil)
	f.authorize(ins[0], ins[1], "web")
	waitServed(t, "web", ins...)
	readers := startReaders(t, "web", ins...)

	const slack = 2 * time.Second
	limit := leaseTTL + tick + slack
	var failovers []time.Duration
	for k := range kills {
		r := refresher(t, "web", ins)
		st := r.mustStatus("web")
		life := st.ExpiresAt.Sub(st.Obtained)
		due := st.Obtained.Add(life * 3 / 4)
		// Kill before the grant is due (refresh.jitter moves the due time
		// by up to 5 % of 15 s): no refresh is in flight, so none is lost
		// with the process (the window no fleet can close: see
		// TestFleetPausedRefresher and the crash tests).
		if d := time.Until(due.Add(-1500 * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		if st2 := r.mustStatus("web"); st2.Generation != st.Generation || !st2.RefresherSelf {
			t.Fatalf("kill %d: %s refreshed or lost the grant early (generation %d -> %d)", k, r.Name, st.Generation, st2.Generation)
		}
		r.kill()
		killedAt := time.Now()
		survivor := others(ins, r)[0]
		var failover time.Duration
		var by string
		eventually(t, 30*time.Second, 50*time.Millisecond, fmt.Sprintf("kill %d: a refresh after %s was killed", k, r.Name), func() error {
			now, err := survivor.status("web")
			if err != nil {
				return err
			}
			if now.Generation <= st.Generation {
				return fmt.Errorf("generation still %d (refresher %q)", now.Generation, now.Refresher)
			}
			failover = time.Since(killedAt)
			if !now.LastSuccess.IsZero() && now.LastSuccess.After(killedAt) {
				failover = now.LastSuccess.Sub(killedAt)
			}
			by = now.Refresher
			return nil
		})
		t.Logf("kill %d: %s killed, %s refreshed %v later", k+1, r.Name, by, failover.Round(time.Millisecond))
		if by == r.Name {
			t.Errorf("kill %d: the killed instance %s is still named the refresher", k+1, r.Name)
		}
		if failover > limit {
			t.Errorf("kill %d: failover took %v, want <= lease_ttl + tick + %v = %v", k+1, failover, slack, limit)
		}
		failovers = append(failovers, failover)
		r.start()
		r.wait()
	}
	slices.Sort(failovers)
	median, worst := failovers[len(failovers)/2], failovers[len(failovers)-1]
	t.Logf("failover over %d kills: median %v, max %v (lease_ttl %v, tick %v)", kills, median.Round(time.Millisecond), worst.Round(time.Millisecond), leaseTTL, tick)
	if out := os.Getenv("FLEET_FAILOVER_OUT"); out != "" {
		var b strings.Builder
		for _, d := range failovers {
			fmt.Fprintf(&b, "%d\n", d.Nanoseconds())
		}
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	s := f.op.Stats()
	if s.InvalidGrant != 0 || s.RefreshTokenReuse != 0 {
		t.Errorf("provider saw invalid_grant %d, refresh token reuse %d; want none (errors %v)", s.InvalidGrant, s.RefreshTokenReuse, s.TokenErrors)
	}
	if n := s.TokenSuccess["refresh_token"]; n < kills {
		t.Errorf("provider answered %d refreshes, want at least %d", n, kills)
	}
	checkReaders(t, readers, false)
}

// quorum returns the tokend_fleet_quorum gauge of an instance ("" when
// the metrics do not answer).
var quorumRe = regexp.MustCompile(`(?m)^tokend_fleet_quorum(?:\{[^}]*\})? (\S+)$`)

func quorum(in *instance) string {
	m := quorumRe.FindStringSubmatch(in.metrics())
	if m == nil {
		return ""
	}
	return m[1]
}

// TestFleetEtcdMemberLoss: one etcd member stopped changes nothing
// visible; two stopped (quorum lost): tokens are served until they expire,
// refreshes pause, status and metrics say so; the members restarted,
// refreshes resume on their own.
func TestFleetEtcdMemberLoss(t *testing.T) {
	f, ins := startFleet(t, nil)
	waitServed(t, "svc", ins...)
	readers := startReaders(t, "svc", ins...)
	for _, in := range ins {
		if q := quorum(in); q != "1" {
			t.Fatalf("%s: tokend_fleet_quorum %q, want 1", in.Name, q)
		}
	}

	// One member down: refreshes go on, nobody is refused.
	gen := ins[0].mustStatus("svc").Generation
	f.etcd.stopMember(0)
	eventually(t, 2*accessTTL*time.Second, 200*time.Millisecond, "a refresh with one etcd member down", func() error {
		if g := ins[0].mustStatus("svc").Generation; g <= gen {
			return fmt.Errorf("generation still %d", g)
		}
		return nil
	})
	for _, in := range ins {
		if q := quorum(in); q != "1" {
			t.Errorf("one member down: %s: tokend_fleet_quorum %q, want 1", in.Name, q)
		}
	}
	checkReaders(t, readers, true)

	// Two members down: quorum lost.
	f.etcd.stopMember(1)
	lostAt := time.Now()
	for _, in := range ins {
		eventually(t, 20*time.Second, 200*time.Millisecond, in.Name+" reports quorum lost", func() error {
			if q := quorum(in); q != "0" {
				return fmt.Errorf("tokend_fleet_quorum %q", q)
			}
			return nil
		})
	}
	t.Logf("quorum loss reported by every instance within %v", time.Since(lostAt).Round(time.Millisecond))
	frozen := ins[0].mustStatus("svc")
	expiry := frozen.ExpiresAt
	// Served until expiry, never after, never refreshed meanwhile: also in
	// the token's last 5 s (the daemon's nearExpiry), where a fetch on a
	// host with a quorum would wait for the refresh; without one nothing
	// can arrive, so the still-valid token is answered at once.
	until := expiry.Add(-500 * time.Millisecond)
	for time.Now().Before(until) {
		for _, in := range ins {
			tok, code, err := in.token("svc")
			if err != nil || code != http.StatusOK {
				t.Fatalf("quorum lost, token still valid until %v: %s answered %d, %v", expiry, in.Name, code, err)
			}
			if !tok.ExpiresAt.After(time.Now()) {
				t.Fatalf("%s served an expired token", in.Name)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	for _, in := range ins {
		st := in.mustStatus("svc")
		if st.Generation != frozen.Generation {
			t.Errorf("quorum lost: %s refreshed (generation %d -> %d)", in.Name, frozen.Generation, st.Generation)
		}
		// Cut off, the instance knows nothing can come: it answers at
		// once (a wait for the watch would last fetch_wait, 30 s).
		code, retryAfter, took, err := in.fetchTimed("svc")
		t.Logf("quorum lost, token expired: %s answered %d (Retry-After %q) in %v", in.Name, code, retryAfter, took.Round(time.Millisecond))
		if err != nil || code != http.StatusServiceUnavailable || retryAfter == "" {
			t.Errorf("quorum lost: %s answered a fetch of the expired token with %d, Retry-After %q, %v; want 503 with Retry-After", in.Name, code, retryAfter, err)
		}
		if took > 5*time.Second {
			t.Errorf("quorum lost: %s answered a fetch of the expired token after %v", in.Name, took)
		}
		t.Logf("quorum lost, token expired: %s state %q, last error %q", in.Name, st.State, st.LastError)
		if st.State != "expired" {
			t.Errorf("quorum lost, token expired: %s reports state %q", in.Name, st.State)
		}
	}

	// Quorum back: refreshes resume by themselves.
	f.etcd.start(0, 1)
	backAt := time.Now()
	for _, in := range ins {
		eventually(t, 30*time.Second, 200*time.Millisecond, in.Name+" serves svc again", func() error {
			tok, code, err := in.token("svc")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("answer %d, %v", code, err)
			}
			if !tok.ExpiresAt.After(expiry) {
				return fmt.Errorf("still the old token")
			}
			if q := quorum(in); q != "1" {
				return fmt.Errorf("tokend_fleet_quorum %q", q)
			}
			return nil
		})
	}
	t.Logf("service back on every instance %v after quorum returned", time.Since(backAt).Round(time.Millisecond))
	for _, r := range readers {
		if r.expired.Load() > 0 {
			t.Errorf("reader on %s was served %d expired tokens", r.in.Name, r.expired.Load())
		}
	}
}

// TestFleetPausedRefresher is the fencing case: the refresher of a grant
// is stopped (SIGSTOP) in the middle of a refresh, longer than its lease;
// another instance takes the grant over and refreshes it; the paused one,
// continued, must not overwrite the newer token. The grant is a
// client_credentials one: with a rotating refresh token the provider would
// have consumed the paused instance's refresh token, and the takeover's
// refresh would be reuse however the stale write is handled (the residual
// window docs/fleet.md describes).
func TestFleetPausedRefresher(t *testing.T) {
	f, ins := startFleet(t, nil)
	waitServed(t, "svc", ins...)
	r := refresher(t, "svc", ins)
	fencedBefore := fenced(r)
	held := f.op.Held()
	f.op.Hold(1500)
	go r.cli("refresh", "svc")
	eventually(t, 10*time.Second, 2*time.Millisecond, "the refresh reaches the provider", func() error {
		if f.op.Held() == held {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	r.signal(syscall.SIGSTOP)
	stoppedAt := time.Now()
	defer r.signal(syscall.SIGCONT)

	var b *instance
	eventually(t, leaseTTL+10*time.Second, 100*time.Millisecond, "another instance takes the grant", func() error {
		for _, in := range others(ins, r) {
			if st, err := in.status("svc"); err == nil && st.RefresherSelf {
				b = in
				return nil
			}
		}
		return fmt.Errorf("no other refresher")
	})
	t.Logf("%s took svc over %v after %s stopped", b.Name, time.Since(stoppedAt).Round(time.Millisecond), r.Name)
	if out, code := b.cli("refresh", "svc"); code != 0 {
		t.Fatalf("refresh on %s: exit %d: %s", b.Name, code, out)
	}
	newer, code, err := b.token("svc")
	if err != nil || code != http.StatusOK {
		t.Fatalf("token on %s: %d %v", b.Name, code, err)
	}
	if d := leaseTTL + time.Second - time.Since(stoppedAt); d > 0 {
		time.Sleep(d)
	}
	r.signal(syscall.SIGCONT)
	t.Logf("%s continued after %v stopped", r.Name, time.Since(stoppedAt).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	for _, in := range ins {
		tok, code, err := in.token("svc")
		if err != nil || code != http.StatusOK || tok.AccessToken != newer.AccessToken {
			t.Errorf("%s serves another token than %s's refresh (%d, %v): the stale write went through", in.Name, b.Name, code, err)
		}
	}
	if !f.op.Introspect(newer.AccessToken).Active {
		t.Errorf("the token %s obtained is not active", b.Name)
	}
	logs := r.logs.String()
	switch {
	case fenced(r) > fencedBefore || strings.Contains(strings.ToLower(logs), "fenced"):
		t.Logf("%s's stale write was fenced (tokend_fleet_fenced_writes_total %v)", r.Name, fenced(r))
	default:
		// The request's deadline passed while the process was stopped:
		// Go may see it before the answer waiting in the socket, and then
		// nothing is written at all.
		t.Logf("%s's refresh ended without a write (its timeout fired first on SIGCONT)", r.Name)
	}
	if _, after, ok := strings.Cut(logs, "e2e: continued to"); ok {
		for _, l := range strings.Split(after, "\n") {
			if strings.Contains(l, "svc") && (strings.Contains(l, "WARN") || strings.Contains(l, "ERROR")) {
				t.Logf("%s after SIGCONT: %s", r.Name, l)
			}
		}
	}
	if s := f.op.Stats(); s.InvalidGrant != 0 || s.RefreshTokenReuse != 0 {
		t.Errorf("provider saw invalid_grant %d, reuse %d", s.InvalidGrant, s.RefreshTokenReuse)
	}
}

var fencedRe = regexp.MustCompile(`(?m)^tokend_fleet_fenced_writes_total (\S+)$`)

func fenced(in *instance) float64 {
	m := fencedRe.FindStringSubmatch(in.metrics())
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestFleetAuthorizationElsewhere: an authorization started on i0 whose
// callback the balancer sends to i1 completes, every instance serves the
// grant, and the callback replayed to any instance is refused.
func TestFleetAuthorizationElsewhere(t *testing.T) {
	f, ins := startFleet(t, nil)
	cb := f.authorize(ins[0], ins[1], "web")
	waitServed(t, "web", ins...)
	gen := ins[2].mustStatus("web").Generation
	for _, in := range ins {
		f.lb.to(in)
		resp, err := http.Get(cb) // no cookies: a replay from elsewhere
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("callback replayed to %s: %d, want 400", in.Name, resp.StatusCode)
		}
	}
	time.Sleep(500 * time.Millisecond)
	for _, in := range ins {
		if g := in.mustStatus("web").Generation; g != gen {
			t.Errorf("%s: generation %d after the replays, want %d", in.Name, g, gen)
		}
	}
	s := f.op.Stats()
	if n := s.TokenRequests["authorization_code"]; n != 1 {
		t.Errorf("provider saw %d code exchanges, want 1", n)
	}
	if s.InvalidGrant != 0 {
		t.Errorf("provider saw %d invalid_grant", s.InvalidGrant)
	}
}

// TestFleetStartPageElsewhere: the start URL `tokend authorize` prints is
// on the redirect URI's host, the balancer, which may send it to any
// instance. Started on i0, its start page is served by i1 (from the fleet:
// i0 keeps it in memory), the provider's redirect goes to i2, and every
// instance serves the grant. The start page is then used up everywhere,
// i0's memory included.
func TestFleetStartPageElsewhere(t *testing.T) {
	f, ins := startFleet(t, nil)
	f.lb.to(ins[2])
	f.lb.startTo(ins[1])
	start, _ := f.authorizeVia(ins[0], "web")
	waitServed(t, "web", ins...)
	u, err := url.Parse(start)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range ins {
		req, _ := http.NewRequest(http.MethodGet, "http://"+in.Callback+u.Path, nil)
		req.Host = u.Host
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
			t.Errorf("used start page opened again on %s: %d, cookies %v; want 400, none", in.Name, resp.StatusCode, resp.Cookies())
		}
	}
}

// TestFleetRegistrationOnce: three instances started together on a client
// registered dynamically register it once.
func TestFleetRegistrationOnce(t *testing.T) {
	f, ins := startFleet(t, func(f *fleet) {
		f.clients = "  dyn:\n    provider: op\n    client_name: tokend fleet e2e\n"
		f.grants = "  api:\n    client: dyn\n    type: client_credentials\n    scopes: [api:read]\n    READERS\n"
	})
	waitServed(t, "api", ins...)
	if n := f.op.Stats().Registrations; n != 1 {
		t.Errorf("registrations = %d, want 1 for the fleet", n)
	}
	// A restart uses the fleet's registration too.
	ins[2].kill()
	ins[2].start()
	ins[2].wait()
	waitServed(t, "api", ins[2])
	if n := f.op.Stats().Registrations; n != 1 {
		t.Errorf("registrations after a restart = %d, want 1", n)
	}
}
