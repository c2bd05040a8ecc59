package daemon

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

// tickTestConfig is a configuration of client_credentials grants with the
// given names.
func tickTestConfig(t *testing.T, names ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{
		Store:     config.Store{Path: filepath.Join(dir, "tokend.db"), Key: make([]byte, 32)},
		Listen:    config.Listen{Socket: filepath.Join(dir, "t.sock"), Callback: "127.0.0.1:0", Metrics: "off"},
		Providers: map[string]config.Provider{"test": {TokenEndpoint: "http://127.0.0.1:1/token"}},
		Clients: map[string]config.Client{
			"app": {Provider: "test", ClientID: "app", AuthMethod: "client_secret_basic", Secret: oauth.NewSecret(testSecret)},
		},
		Grants: map[string]config.Grant{},
	}
	for _, n := range names {
		cfg.Grants[n] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}
	cfg.ApplyDefaults()
	return cfg
}

// The tick reads dueAt, validUntil and dirty of every grant on every tick.
// They live in small tickStates, one a grant, which the tick walks in the
// grants' order: an idle tick reads a dense array, not every grant's whole
// tokenState. A reload keeps a grant's tickState with its tokenState, so a
// refresh running across the reload lands where the tick looks.
func TestTickStatesAreDenseAndKeptByReload(t *testing.T) {
	if size := unsafe.Sizeof(tickState{}); size > 24 {
		t.Errorf("tickState is %d bytes; the tick reads it for every grant, keep it at most 24", size)
	}
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("grant-%02d", i))
	}
	d, err := New(tickTestConfig(t, names...), Options{Clock: newFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	checkTicks := func(when string) {
		t.Helper()
		if len(d.ticks) != len(d.ordered) {
			t.Fatalf("%s: %d tick states for %d grants", when, len(d.ticks), len(d.ordered))
		}
		for i, g := range d.ordered {
			if g.tickState == nil || d.ticks[i] != g.tickState {
				t.Fatalf("%s: tick state %d is not grant %s's", when, i, g.name)
			}
		}
	}
	checkTicks("after New")

	kept := map[string]*tickState{}
	for _, g := range d.ordered[:10] {
		kept[g.name] = g.tickState
		g.dirty.Store(true)
	}
	next := append([]string{"added-1", "added-2"}, names[:10]...)
	if err := d.Reload(tickTestConfig(t, next...)); err != nil {
		t.Fatal(err)
	}
	checkTicks("after a reload")
	for name, ts := range kept {
		g := d.grant(name)
		if g.tickState != ts || !g.dirty.Load() {
			t.Errorf("grant %s: the reload replaced its tick state (or lost dirty)", name)
		}
	}
	if d.grant("added-1").dirty.Load() {
		t.Error("a grant added by the reload starts dirty")
	}
}

func TestFetchAndScheduledRefresh(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	if first.AccessToken == "" || first.TokenType != "Bearer" || first.Scope != "read" {
		t.Fatalf("first token: %+v", first)
	}
	if !h.prov.Valid(first.AccessToken) {
		t.Fatal("served token is not valid at the provider")
	}
	if first.ExpiresIn != 600 || !first.ExpiresAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("expiry: in %d at %v", first.ExpiresIn, first.ExpiresAt)
	}
	// Raw form, both ways of asking.
	code, body := h.get("/v1/tokens/cc?format=raw")
	if code != 200 || strings.TrimSpace(string(body)) != first.AccessToken {
		t.Fatalf("raw: %d %q", code, body)
	}

	// Not due before 70 % of the lifetime, whatever the jitter.
	h.advance(7 * time.Minute)
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("refreshed before it was due")
	}
	// Due by 80 %: renewed before expiry, twice over.
	h.advance(1 * time.Minute)
	second := h.token("cc")
	if second.AccessToken == first.AccessToken {
		t.Fatal("not refreshed at 80 % of the lifetime")
	}
	h.advance(8 * time.Minute)
	third := h.token("cc")
	if third.AccessToken == second.AccessToken || !h.prov.Valid(third.AccessToken) {
		t.Fatal("not refreshed a second time")
	}
	st := h.status("cc")
	if st.State != api.StateValid || st.Generation != 3 || len(st.History) != 3 {
		t.Fatalf("status: %+v", st)
	}
	if got := h.prov.Stats().ByGrant["client_credentials"]; got != 3 {
		t.Fatalf("provider saw %d client_credentials requests, want 3", got)
	}
	h.logMustNotContain(h.prov.Issued()...)
	h.logMustNotContain(testSecret)
}
