package daemon

import (
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/store"
)

var testPolicy = Policy{Fraction: 0.75, Jitter: 0.05, MinRemaining: time.Minute, DefaultLifetime: time.Hour, MaxInterval: 24 * time.Hour}

func TestDue(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	hour := func(mut func(*store.Token)) *store.Token {
		tok := &store.Token{Grant: "g", AccessToken: "a", RefreshToken: "r", Obtained: t0, Expiry: t0.Add(time.Hour), State: api.StateValid}
		if mut != nil {
			mut(tok)
		}
		return tok
	}
	cases := []struct {
		name      string
		now       time.Time
		tok       *store.Token
		jitter    float64
		renewable bool
		want      string
	}{
		{"fresh", t0.Add(10 * time.Minute), hour(nil), 0, true, ""},
		{"at fraction", t0.Add(45 * time.Minute), hour(nil), 0, true, "lifetime"},
		{"jitter later", t0.Add(45 * time.Minute), hour(nil), 1, true, ""},
		{"jitter later due", t0.Add(48 * time.Minute), hour(nil), 1, true, "lifetime"},
		{"jitter earlier", t0.Add(42 * time.Minute), hour(nil), -1, true, "lifetime"},
		{"not renewable", t0.Add(59 * time.Minute), hour(nil), 0, false, ""},
		{"missing token", t0, &store.Token{Grant: "g"}, 0, true, "missing"},
		{"no expires_in uses default lifetime", t0.Add(46 * time.Minute), hour(func(t *store.Token) { t.Expiry = time.Time{} }), 0, true, "lifetime"},
		{"short token: min_remaining wins", t0.Add(3 * time.Minute), hour(func(t *store.Token) { t.Expiry = t0.Add(4 * time.Minute) }), 0, true, "lifetime"},
		{"short token: min_remaining not yet", t0.Add(2*time.Minute + 50*time.Second), hour(func(t *store.Token) { t.Expiry = t0.Add(4 * time.Minute) }), 0, true, ""},
		{"token shorter than min_remaining: half life, not at once", t0.Add(14 * time.Second), hour(func(t *store.Token) { t.Expiry = t0.Add(30 * time.Second) }), 0, true, ""},
		{"token shorter than min_remaining: due at half life", t0.Add(15 * time.Second), hour(func(t *store.Token) { t.Expiry = t0.Add(30 * time.Second) }), 0, true, "lifetime"},
		{"reauthorization stops", t0.Add(2 * time.Hour), hour(func(t *store.Token) { t.State = api.StateReauthorizationRequired }), 0, true, ""},
		{"credentials error stops", t0.Add(2 * time.Hour), hour(func(t *store.Token) { t.State = api.StateCredentialsError }), 0, true, ""},
		{"failing retries", t0.Add(50 * time.Minute), hour(func(t *store.Token) { t.State = api.StateFailing }), 0, true, "lifetime"},
		{"refresh token near its end", t0.Add(20 * time.Minute), hour(func(t *store.Token) {
			t.Expiry = t0.Add(48 * time.Hour)
			t.RefreshIssued = t0
			t.RefreshExpiry = t0.Add(24 * time.Minute)
		}), 0, true, "refresh_token_lifetime"},
		{"refresh token not rotated: no storm", t0.Add(20 * time.Minute), hour(func(t *store.Token) {
			t.Expiry = t0.Add(48 * time.Hour)
			// Refreshed at t0+5m, after the trigger at t0+3m, and the
			// provider kept the refresh token: refreshing again cannot help.
			t.Obtained = t0.Add(5 * time.Minute)
			t.RefreshIssued = t0.Add(-time.Hour)
			t.RefreshExpiry = t0.Add(24 * time.Minute)
		}), 0, true, ""},
		{"max interval", t0.Add(25 * time.Hour), hour(func(t *store.Token) { t.Expiry = t0.Add(100 * time.Hour) }), 0, true, "max_interval"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, got := due(c.now, c.tok, testPolicy, c.jitter, c.renewable)
			if got != c.want {
				t.Fatalf("due = %q, want %q", got, c.want)
			}
		})
	}
}

// A thousand grants obtained in the same second must not all come due in
// the same second.
func TestJitterSpreadsRefreshes(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	seconds := map[int64]int{}
	min, max := time.Duration(1<<62), time.Duration(0)
	for i := range 1000 {
		name := "grant-" + string(rune('a'+i%26)) + time.Duration(i).String()
		tok := &store.Token{Grant: name, AccessToken: "a", Obtained: t0, Expiry: t0.Add(time.Hour)}
		at := refreshAt(tok, testPolicy, jitterOf(name, 1)).Sub(t0)
		seconds[int64(at/time.Second)]++
		if at < min {
			min = at
		}
		if at > max {
			max = at
		}
	}
	if max-min < 5*time.Minute {
		t.Fatalf("refreshes spread over only %v, want about ±5%% of an hour", max-min)
	}
	if min < 42*time.Minute || max > 48*time.Minute {
		t.Fatalf("spread [%v, %v] outside 0.75±0.05 of an hour", min, max)
	}
	for s, n := range seconds {
		if n > 20 {
			t.Fatalf("%d grants due in second %d", n, s)
		}
	}
}

func TestJitterDeterministic(t *testing.T) {
	if jitterOf("a", 1) != jitterOf("a", 1) {
		t.Fatal("jitter not deterministic")
	}
	if jitterOf("a", 1) == jitterOf("a", 2) && jitterOf("a", 2) == jitterOf("a", 3) {
		t.Fatal("jitter ignores the generation")
	}
	for i := range 1000 {
		j := jitterOf("g", uint64(i))
		if j < -1 || j > 1 {
			t.Fatalf("jitter %v out of [-1,1]", j)
		}
	}
}

// A refresh token's own lifetime (Personium: 24 h) is kept from lapsing
// even when the access token would outlive it.
func TestRefreshTokenLifetimeKeptAlive(t *testing.T) {
	h := newHarness(t, harnessOpts{
		step: time.Hour,
		prov: devprovider.Options{Rotate: true, AccessTTL: 48 * time.Hour, RefreshTTL: 24 * time.Hour, AutoApprove: true},
		config: func(c *config.Config) {
			userGrant(c)
			c.Refresh.Schedule = config.MustParseSchedule("@every 1h")
			c.Refresh.MaxInterval = 1000 * time.Hour
		},
	})
	h.authorizeViaCallback("user")
	first := h.stored("user")
	if !first.RefreshExpiry.Equal(t0.Add(24 * time.Hour)) {
		t.Fatalf("refresh expiry %v", first.RefreshExpiry)
	}
	h.advance(17 * time.Hour)
	if h.stored("user").Generation != first.Generation {
		t.Fatal("refreshed too early")
	}
	h.advance(2 * time.Hour)
	got := h.stored("user")
	if got.Generation != first.Generation+1 || !got.RefreshExpiry.After(first.RefreshExpiry) {
		t.Fatalf("refresh token not renewed before its expiry: %+v", got)
	}
	for range 3 { // and so on, day after day
		h.advance(24 * time.Hour)
	}
	if st := h.status("user"); st.State != api.StateValid || h.prov.Stats().Reuses != 0 {
		t.Fatalf("chain lapsed: %+v", st)
	}
}
