package e2e

import (
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// tokenWatch follows the token tokend serves for one grant, as a program
// polling it would, and checks each value against the provider: every new
// value must introspect active, and no value may be served at or after the
// expiry the provider gave it.
type tokenWatch struct {
	t     testing.TB
	o     *oidcop.Server
	td    *Tokend
	grant string
	exp   map[string]time.Time // token -> the provider's exp
	order []string             // distinct tokens, in the order first served
	// changed lists when each token after the first was first served.
	changed []time.Time
}

func newTokenWatch(t testing.TB, o *oidcop.Server, td *Tokend, grant string) *tokenWatch {
	return &tokenWatch{t: t, o: o, td: td, grant: grant, exp: map[string]time.Time{}}
}

// observe fetches the token once; it reports whether the value is new.
func (w *tokenWatch) observe() bool {
	w.t.Helper()
	tok := w.td.MustToken(w.grant)
	now := time.Now()
	exp, seen := w.exp[tok.AccessToken]
	if !seen {
		in := w.o.Introspect(tok.AccessToken)
		if !in.Active {
			w.t.Fatalf("token #%d served by tokend is not active at the provider", len(w.order)+1)
		}
		exp = time.Unix(in.Exp, 0)
		w.exp[tok.AccessToken] = exp
		if len(w.order) > 0 {
			prev := w.order[len(w.order)-1]
			if pexp := w.exp[prev]; !now.Before(pexp) {
				w.t.Errorf("token #%d renewed at %v, after its expiry %v", len(w.order), now.Format(time.StampMilli), pexp.Format(time.StampMilli))
			}
			w.changed = append(w.changed, now)
		}
		w.order = append(w.order, tok.AccessToken)
		if d := tok.ExpiresAt.Sub(exp); d > 2*time.Second || d < -2*time.Second {
			w.t.Errorf("expires_at %v, the provider says %v", tok.ExpiresAt, exp)
		}
	}
	// exp has one-second resolution; a token is valid through exp-1s.
	if !now.Before(exp) {
		w.t.Errorf("token #%d served at %v, at or after its expiry %v", len(w.order), now.Format(time.StampMilli), exp.Format(time.StampMilli))
	}
	return !seen
}

// until observes every interval until n distinct tokens were served or
// timeout passes (then the test fails).
func (w *tokenWatch) until(n int, timeout, interval time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(w.order) < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("only %d distinct tokens served in %v, want %d", len(w.order), timeout, n)
		}
		w.observe()
		if len(w.order) < n {
			time.Sleep(interval)
		}
	}
}

// last returns the most recently first-served token.
func (w *tokenWatch) last() string {
	if len(w.order) == 0 {
		return ""
	}
	return w.order[len(w.order)-1]
}
