package daemon

import (
	"encoding/binary"
	"hash/fnv"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// Policy is the refresh policy of config.Refresh, in the form the pure
// decision functions take.
type Policy struct {
	Fraction        float64
	Jitter          float64
	MinRemaining    time.Duration
	DefaultLifetime time.Duration
	MaxInterval     time.Duration
}

func policyOf(r config.Refresh) Policy {
	return Policy{
		Fraction:        r.Fraction,
		Jitter:          r.Jitter,
		MinRemaining:    r.MinRemaining,
		DefaultLifetime: r.DefaultLifetime,
		MaxInterval:     r.MaxInterval,
	}
}

// jitterOf maps a grant and its token generation to a number in [-1, 1].
// It is deterministic, so due() stays a pure function, and differs between
// grants, so a thousand tokens obtained in the same second spread their
// refreshes over ±Jitter of their lifetime instead of refreshing together.
func jitterOf(grant string, generation uint64) float64 {
	h := fnv.New64a()
	h.Write([]byte(grant))
	var gen [9]byte
	binary.LittleEndian.PutUint64(gen[1:], generation)
	h.Write(gen[:])
	return float64(h.Sum64()%20001)/10000 - 1
}

// expiryOf returns when a token stops being usable: its stated expiry, or
// obtained + the default lifetime when the provider said nothing.
func expiryOf(t *store.Token, p Policy) time.Time {
	if !t.Expiry.IsZero() {
		return t.Expiry
	}
	return t.Obtained.Add(p.DefaultLifetime)
}

// refreshAt is when a token becomes due: at its jittered fraction of the
// lifetime, or earlier when that would leave less than MinRemaining. A
// token that lives less than twice MinRemaining is refreshed at half its
// life, not at once: otherwise every tick would refresh it again.
func refreshAt(t *store.Token, p Policy, j float64) time.Time {
	exp := expiryOf(t, p)
	life := exp.Sub(t.Obtained)
	f := p.Fraction + p.Jitter*j
	at := t.Obtained.Add(time.Duration(float64(life) * f))
	late := exp.Add(-p.MinRemaining)
	if half := t.Obtained.Add(life / 2); late.Before(half) {
		late = half
	}
	if late.Before(at) {
		at = late
	}
	return at
}

// nextDue says when a grant's token comes due and why. It is a pure
// function of its arguments; why is "" when the token never comes due by
// itself (no way to renew it without a person, or a permanent failure),
// and a zero time with why "missing" means due at once. renewable says
// whether a new token can be had without a person (a refresh token, or a
// client_credentials or password grant).
func nextDue(t *store.Token, p Policy, j float64, renewable bool) (time.Time, string) {
	if !renewable {
		return time.Time{}, ""
	}
	switch t.State {
	case api.StateReauthorizationRequired, api.StateCredentialsError, api.StateConfigurationError:
		// Permanent: a retry cannot succeed until a person acts (authorize,
		// reload, tokend refresh).
		return time.Time{}, ""
	}
	if t.AccessToken == "" {
		return time.Time{}, "missing"
	}
	at, why := refreshAt(t, p, j), "lifetime"
	if !t.RefreshExpiry.IsZero() && t.RefreshToken != "" {
		// The refresh token's own lifetime: refresh at the same fraction of
		// it, once. When the provider does not rotate the refresh token a
		// second refresh would not extend the chain, so Obtained past the
		// trigger means it was already tried.
		issued := t.RefreshIssued
		if issued.IsZero() {
			issued = t.Obtained
		}
		trigger := issued.Add(time.Duration(float64(t.RefreshExpiry.Sub(issued)) * p.Fraction))
		if late := t.RefreshExpiry.Add(-p.MinRemaining); late.Before(trigger) {
			trigger = late
		}
		if t.Obtained.Before(trigger) && trigger.Before(at) {
			at, why = trigger, "refresh_token_lifetime"
		}
	}
	if p.MaxInterval > 0 {
		if mi := t.Obtained.Add(p.MaxInterval); mi.Before(at) {
			at, why = mi, "max_interval"
		}
	}
	return at, why
}

// due decides whether a grant's token should be refreshed now, and why.
func due(now time.Time, t *store.Token, p Policy, j float64, renewable bool) (bool, string) {
	at, why := nextDue(t, p, j, renewable)
	if why == "" || now.Before(at) {
		return false, ""
	}
	return true, why
}

// usable reports whether an access token may still be handed out at now.
func usable(now time.Time, t *store.Token, p Policy) bool {
	return t.AccessToken != "" && now.Before(expiryOf(t, p))
}
