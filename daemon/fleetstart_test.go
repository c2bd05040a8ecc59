package daemon

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

// fleetPair runs two daemons of one fake fleet, a and b: one store, one
// provider (a's), each its own listeners and clock.
func fleetPair(t *testing.T) (a, b *harness, fa *fakeFleet) {
	t.Helper()
	fa = newFakeFleet()
	a = newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: userGrant, noRun: true})
	a.startWith(Options{OpenStore: fa.open})
	waitFor(t, "a's watch up", func() bool { return fa.watchOK.Load() })
	fb := fa.peer("host-b")
	b = newHarness(t, harnessOpts{config: func(c *config.Config) {
		userGrant(c)
		c.Providers["test"] = config.Provider{Issuer: a.prov.URL()}
	}, noRun: true})
	b.prov = a.prov
	b.startWith(Options{OpenStore: fb.open})
	waitFor(t, "b's watch up", func() bool { return fb.watchOK.Load() })
	return a, b, fa
}

// The start URL that a printed reaches b (the load balancer's choice): b
// takes the start page from the fleet, binds the browser and redirects to
// the provider; the callback, on b too, completes the authorization. The
// page is then used up everywhere, a's memory included.
func TestFleetStartPageServedByAnotherInstance(t *testing.T) {
	a, b, fa := fleetPair(t)
	start := a.startAuthorization("user")
	if n := fa.startsLen(); n != 1 {
		t.Fatalf("the fleet holds %d start pages after authorize, want 1", n)
	}
	br := newBrowser(t)
	auth := b.openStart(br, start)
	if n := fa.startsLen(); n != 0 {
		t.Fatalf("the fleet still holds %d start pages after one was used", n)
	}
	resp, body := get(t, br, b.codeFor(br, auth), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback on b: %d\n%s", resp.StatusCode, body)
	}
	b.settle()
	if tok := b.token("user"); !a.prov.Valid(tok.AccessToken) {
		t.Fatal("b's token is not valid")
	}
	for name, h := range map[string]*harness{"a": a, "b": b} {
		resp, body := get(t, noCookies, h.onListener(start), "")
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
			t.Fatalf("start page used on b, opened again on %s: %d, cookies %v\n%s", name, resp.StatusCode, resp.Cookies(), body)
		}
	}
	a.logMustNotContain(auth.Query().Get("state"), strings.TrimPrefix(start.Path, "/start/"))
	b.logMustNotContain(auth.Query().Get("state"), strings.TrimPrefix(start.Path, "/start/"))
}

// A start page served from the memory of the instance that started it is
// removed from the fleet too: it works once fleet-wide.
func TestFleetStartPageLocalRemovedFleetWide(t *testing.T) {
	a, b, fa := fleetPair(t)
	start := a.startAuthorization("user")
	a.openStart(newBrowser(t), start)
	if n := fa.startsLen(); n != 0 {
		t.Fatalf("the fleet still holds %d start pages after a served it from memory", n)
	}
	resp, body := get(t, noCookies, b.onListener(start), "")
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 {
		t.Fatalf("start page used on a, opened on b: %d, cookies %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
}

// A start page past its deadline, opened on an instance that does not
// hold it in memory, says it expired and binds nothing.
func TestFleetStartPageExpired(t *testing.T) {
	a, b, fa := fleetPair(t)
	start := a.startAuthorization("user")
	b.clock.Advance(pendingLifetime + time.Second)
	resp, body := get(t, noCookies, b.onListener(start), "")
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 || !strings.Contains(body, "expired") {
		t.Fatalf("expired start page on b: %d, cookies %v\n%s", resp.StatusCode, resp.Cookies(), body)
	}
	if n := fa.startsLen(); n != 0 {
		t.Fatalf("the fleet still holds %d start pages", n)
	}
	if st := a.status("user"); st.State == api.StateValid {
		t.Fatal("authorized")
	}
}
