package daemon

import (
	"hash/fnv"
	"strconv"
	"time"

	"github.com/tokend/tokend/store"
)

// Grant states. The first five are the words of DESIGN.md; the others name
// permanent failures that need a person to change something.
const (
	StateValid                = "valid"
	StateRefreshing           = "refreshing"
	StateFailing              = "failing"
	StateExpired              = "expired"
	StateReauthorization      = "reauthorization_required"
	StateCredentialsError     = "credentials_error"
	StateConfigurationError   = "configuration_error"
	StatePendingAuthorization = "pending_authorization"
)

// Policy is the refresh policy of RefreshConfig, in the form the pure
// decision functions take.
type Policy struct {
	Fraction        float64
	Jitter          float64
	MinRemaining    time.Duration
	DefaultLifetime time.Duration
	MaxInterval     time.Duration
}

func policyOf(r RefreshConfig) Policy {
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
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(generation, 10)))
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

// due decides whether a grant's token should be refreshed now, and why. It
// is a pure function of its arguments; the scheduler only calls it.
// renewable says whether a new token can be had without a person (a refresh
// token, or a client_credentials or password grant).
func due(now time.Time, t *store.Token, p Policy, j float64, renewable bool) (bool, string) {
	if !renewable {
		return false, ""
	}
	switch t.State {
	case StateReauthorization, StateCredentialsError, StateConfigurationError:
		// Permanent: a retry cannot succeed until a person acts (authorize,
		// reload, tokend refresh).
		return false, ""
	}
	if t.AccessToken == "" {
		return true, "missing"
	}
	if !now.Before(refreshAt(t, p, j)) {
		return true, "lifetime"
	}
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
		if !now.Before(trigger) && t.Obtained.Before(trigger) {
			return true, "refresh_token_lifetime"
		}
	}
	if p.MaxInterval > 0 && now.Sub(t.Obtained) >= p.MaxInterval {
		return true, "max_interval"
	}
	return false, ""
}

// usable reports whether an access token may still be handed out at now.
func usable(now time.Time, t *store.Token, p Policy) bool {
	return t.AccessToken != "" && now.Before(expiryOf(t, p))
}
