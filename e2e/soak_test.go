package e2e

import (
	"os"
	"testing"
	"time"
)

// soakDuration is $E2E_SOAK (a Go duration), default 3m: several minutes
// of 15 s tokens, so the chain rotates a dozen times and survives kills.
func soakDuration(t *testing.T) time.Duration {
	d := 3 * time.Minute
	if v := os.Getenv("E2E_SOAK"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 30*time.Second {
			t.Fatalf("E2E_SOAK=%q: want a Go duration of at least 30s", v)
		}
	}
	return d
}

// TestRotationSoak: 15 s access tokens, refresh tokens rotated on every use
// (a reused one revokes the whole family), tokend waking every second. For
// $E2E_SOAK tokend must keep the chain alive: no invalid_grant ever, a
// token always valid; and after kill -9 between two refreshes it carries on
// with the stored refresh token.
func TestRotationSoak(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	soak := soakDuration(t)
	c := authClients[0] // client_secret_basic
	o, _, td := startCodeTokend(t, c, 15)
	authorizeInBrowser(t, o, td, "web")
	td.WaitToken("web", 10*time.Second)

	w := newTokenWatch(t, o, td, "web")
	start := time.Now()
	killed := false
	renewalsAfterKill := 0
	for time.Since(start) < soak {
		if w.observe() && len(w.order) > 1 {
			if killed {
				renewalsAfterKill++
			} else if time.Since(start) > soak/3 {
				// Just after a refresh: kill -9, start again at once.
				td.Kill()
				td.Start()
				killed = true
				if got := td.MustToken("web"); got.AccessToken != w.last() {
					t.Errorf("after kill -9 tokend served another token than the stored one")
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !killed {
		t.Fatalf("no refresh in %v after %v: never killed", soak-soak/3, soak/3)
	}
	if renewalsAfterKill == 0 {
		t.Errorf("no refresh after the restart that followed kill -9")
	}
	st := o.Stats()
	t.Logf("soak %v: %d tokens served, %d refreshes, %d after kill -9; provider stats %+v",
		soak, len(w.order), st.TokenSuccess["refresh_token"], renewalsAfterKill, st)
	if st.InvalidGrant != 0 || st.RefreshTokenReuse != 0 || st.ServerErrors != 0 {
		t.Errorf("provider saw invalid_grant %d, reuse %d, server errors %d; want none",
			st.InvalidGrant, st.RefreshTokenReuse, st.ServerErrors)
	}
	// About one refresh per 0.75 × 15 s; at least one per token lifetime.
	if min := int(soak/(15*time.Second)) - 1; st.TokenSuccess["refresh_token"] < min {
		t.Errorf("%d refreshes in %v, want at least %d", st.TokenSuccess["refresh_token"], soak, min)
	}
	if rt := o.RefreshTokens("app"); rt.Active != 1 {
		t.Errorf("refresh tokens = %+v, want exactly one active (one unbroken chain)", rt)
	}
	if stat := td.Status("web"); stat.State != "valid" || stat.Failures != 0 {
		t.Errorf("status = %+v, want valid with no failures", stat)
	}
}
