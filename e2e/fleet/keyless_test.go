package fleet

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// keyless is a client of the fleet's etcd without the store key: what an
// etcd user, a member's operator or a restored backup can write.
func keyless(t *testing.T, f *fleet) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range f.etcd.plan {
		eps = append(eps, m.ClientURL)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestFleetUndecodableRecord: junk is written over the record of a grant
// whose provider (oidc-provider) rotates refresh tokens and detects reuse.
// The refresher's next refreshes still land (written over the junk, on
// the revision it saw), the provider never sees a rotated-away refresh
// token, and every instance serves the grant.
func TestFleetUndecodableRecord(t *testing.T) {
	f, ins := startFleet(t, nil)
	f.authorize(ins[0], ins[1], "web")
	waitServed(t, "web", ins...)
	r := refresher(t, "web", ins)
	gen := r.mustStatus("web").Generation
	cli := keyless(t, f)
	if _, err := cli.Put(context.Background(), f.prefix+"tokens/web", "junk"); err != nil {
		t.Fatal(err)
	}
	// Two refreshes (one every 11.25 s).
	eventually(t, 60*time.Second, 200*time.Millisecond, "two refreshes after the junk", func() error {
		for _, in := range ins {
			st, err := in.status("web")
			if err != nil {
				return err
			}
			if st.Generation < gen+2 || st.State != "valid" {
				return fmt.Errorf("%s: generation %d (want %d), state %s, last error %q", in.Name, st.Generation, gen+2, st.State, st.LastError)
			}
		}
		return nil
	})
	s := f.op.Stats()
	if s.InvalidGrant != 0 || s.RefreshTokenReuse != 0 {
		t.Errorf("provider saw invalid_grant %d, refresh token reuse %d; want none (errors %v)", s.InvalidGrant, s.RefreshTokenReuse, s.TokenErrors)
	}
	waitServed(t, "web", ins...)
}

// TestFleetFakeInstanceKeys: 30 keys under instances/ without a lease do
// not shrink the real instances' shares: every grant keeps a refresher and
// no reader is served an expired token or refused over a token lifetime
// and more.
func TestFleetFakeInstanceKeys(t *testing.T) {
	var grants []string
	f, ins := startFleet(t, func(f *fleet) {
		for i := range 8 {
			g := fmt.Sprintf("cc%d", i)
			grants = append(grants, g)
			f.grants += fmt.Sprintf("  %s:\n    client: cc\n    type: client_credentials\n    scopes: [api:read]\n    READERS\n", g)
		}
	})
	cli := keyless(t, f)
	for i := range 30 {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("%sinstances/fake-%d", f.prefix, i), `{"started":"2026-01-01T00:00:00Z"}`); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range grants {
		waitServed(t, g, ins...)
	}
	// Past a token's life (15 s): every grant served, refreshed by one of
	// the instances.
	var bad []string
	for end := time.Now().Add(2 * accessTTL * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for _, g := range grants {
			tok, code, err := ins[0].token(g)
			if err != nil || code != http.StatusOK || !tok.ExpiresAt.After(time.Now()) {
				bad = append(bad, fmt.Sprintf("%s: %d %v", g, code, err))
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d refused or expired fetches, e.g. %s", len(bad), strings.Join(bad[:min(len(bad), 5)], "; "))
	}
	for _, g := range grants {
		refresher(t, g, ins)
	}
}
