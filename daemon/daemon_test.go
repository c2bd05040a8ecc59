package daemon

// The daemon's lifecycle (daemon.go): a restart, a second daemon on the
// same store.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

func TestRestartServesStoredToken(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	n := h.prov.Stats().TokenRequests
	h.stop()
	h2 := h.sameStore()
	h2.start()
	if got := h2.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("restart did not serve the stored token")
	}
	if h.prov.Stats().TokenRequests != n {
		t.Fatal("restart asked the provider for a token it already had")
	}
}

func TestSecondDaemonOnSameStore(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	cfg := *h.cfg
	cfg.Listen.Socket = h.sock + "2"
	d, err := New(&cfg, Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.Run(context.Background(), serversOf(d)) }()
	select {
	case err := <-errc:
		if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), h.cfg.Store.Path) {
			t.Fatalf("second daemon: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second daemon on the same store did not fail")
	}
	// The first one still serves.
	h.token("cc")
}
