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

// nearExpiry caps the fetch margin (fetchMargin).
const nearExpiry = 5 * time.Second

// Bounds of the least time between two refreshes that fetches start for
// one grant (onDemandGap).
const (
	onDemandMinGap = time.Second
	onDemandMaxGap = time.Minute
)

// lifetimeOf is how long t was valid for when obtained: its expiry less
// Obtained, or the default lifetime for a record without a token.
func lifetimeOf(t *store.Token, p Policy) time.Duration {
	if t.AccessToken == "" {
		return p.DefaultLifetime
	}
	return max(expiryOf(t, p).Sub(t.Obtained), 0)
}

// fetchMargin is how long a token must stay valid for a fetch to leave its
// renewal to the schedule: nearExpiry, but never more than a tenth of the
// token's lifetime, so a token just obtained is never "near its end" (a
// 5 s margin made every fetch of a 5 s token a refresh).
func fetchMargin(t *store.Token, p Policy) time.Duration {
	return min(nearExpiry, lifetimeOf(t, p)/10)
}

// onDemandGap is the least time between two refreshes that fetches start
// for a grant whose tokens live life: half of it, within
// [onDemandMinGap, onDemandMaxGap].
func onDemandGap(life time.Duration) time.Duration {
	return min(max(life/2, onDemandMinGap), onDemandMaxGap)
}

// mayRefreshOnDemand reports whether a fetch may start a refresh at now
// of a grant whose token is t, when fetches last started one at last (the
// zero time: never). fits says whether t is of the kind the grant hands
// out. However many fetches arrive, a grant is refreshed on demand at most
// once per onDemandGap, and never while a token it may serve is in the
// first half of its life: the schedule renews it before then. A wall
// clock that stepped back (last after now) lifts the bound.
func mayRefreshOnDemand(now, last time.Time, t *store.Token, fits bool, p Policy) bool {
	life := lifetimeOf(t, p)
	if fits && t.AccessToken != "" && now.Before(t.Obtained.Add(life/2)) {
		return false
	}
	return last.IsZero() || now.Before(last) || !now.Before(last.Add(onDemandGap(life)))
}

// usable reports whether an access token may still be handed out at now.
func usable(now time.Time, t *store.Token, p Policy) bool {
	return t.AccessToken != "" && now.Before(expiryOf(t, p))
}
