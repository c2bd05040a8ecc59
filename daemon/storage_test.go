package daemon

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/store"
)

// memStore is a Store in memory: the smallest second backend, to show
// that the daemon runs on any implementation of the Store contract
// (storage.go) given through Options.OpenStore. One mutex makes every
// method atomic.
type memStore struct {
	mu        sync.Mutex
	tokens    map[string]store.Token
	history   map[string][]store.Attempt // oldest first
	clients   map[string]store.Client
	pending   map[[32]byte]store.Pending // by SHA-256 of the state
	providers map[string][]byte
	closes    atomic.Int32
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{
		tokens:    map[string]store.Token{},
		history:   map[string][]store.Attempt{},
		clients:   map[string]store.Client{},
		pending:   map[[32]byte]store.Pending{},
		providers: map[string][]byte{},
	}
}

func notFound(what string) error { return fmt.Errorf("memstore: no %s: %w", what, store.ErrNotFound) }

// memGet returns in[key] (in is one of m's maps) with m.mu held, or
// ErrNotFound naming what.
func memGet[V any](m *memStore, in map[string]V, key, what string) (V, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := in[key]
	if !ok {
		var zero V
		return zero, notFound(what)
	}
	return v, nil
}

func (m *memStore) Token(grant string) (store.Token, error) {
	return memGet(m, m.tokens, grant, "token for "+grant)
}

func (m *memStore) EachToken(fn func(t *store.Token) error) error {
	m.mu.Lock()
	ts := make([]store.Token, 0, len(m.tokens))
	for _, t := range m.tokens {
		ts = append(ts, t)
	}
	m.mu.Unlock()
	for i := range ts {
		if err := fn(&ts[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) PutToken(t store.Token, a *store.Attempt) error {
	if t.Grant == "" {
		return errors.New("memstore: token has no grant name")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[t.Grant] = t
	if a != nil {
		h := append(m.history[t.Grant], *a)
		m.history[t.Grant] = h[max(0, len(h)-store.HistoryLen):]
	}
	return nil
}

func (m *memStore) History(grant string) ([]store.Attempt, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := slices.Clone(m.history[grant])
	slices.Reverse(h)
	return h, nil
}

func (m *memStore) Client(name string) (store.Client, error) {
	return memGet(m, m.clients, name, "client "+name)
}

func (m *memStore) PutClient(c store.Client) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clients[c.Name] = c
	return nil
}

func (m *memStore) PutPending(p store.Pending) error {
	if p.State == "" {
		return errors.New("memstore: pending authorization has no state")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending[sha256.Sum256([]byte(p.State))] = p
	return nil
}

func memSameHash(stored, given string) bool {
	return stored != "" && subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

func memExpired(p store.Pending, now time.Time) bool {
	return !p.Deadline.IsZero() && !now.Before(p.Deadline)
}

func withoutSecretsMem(p store.Pending, state string) store.Pending {
	p.State, p.Verifier, p.DeviceCode = state, "", ""
	return p
}

// withPending runs fn on the pending authorization of state (under its
// key) with m.mu held. One that expired is deleted and returned without
// its secrets, with ErrExpired, and fn is not run.
func (m *memStore) withPending(state string, now time.Time, fn func(key [32]byte, p store.Pending) (store.Pending, error)) (store.Pending, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := sha256.Sum256([]byte(state))
	p, ok := m.pending[key]
	switch {
	case !ok:
		return store.Pending{}, notFound("pending authorization")
	case memExpired(p, now):
		delete(m.pending, key)
		return withoutSecretsMem(p, state), fmt.Errorf("memstore: %w", store.ErrExpired)
	}
	return fn(key, p)
}

func (m *memStore) ConsumePending(state, bindingHash string, now time.Time) (store.Pending, error) {
	return m.withPending(state, now, func(key [32]byte, p store.Pending) (store.Pending, error) {
		if !memSameHash(p.BindingHash, bindingHash) {
			return withoutSecretsMem(p, state), fmt.Errorf("memstore: %w", store.ErrMismatch)
		}
		delete(m.pending, key)
		p.State = state
		return p, nil
	})
}

func (m *memStore) BindPending(state, startHash, bindingHash string, now time.Time) (store.Pending, error) {
	if startHash == "" || bindingHash == "" {
		return store.Pending{}, errors.New("memstore: binding needs a start id and a binding")
	}
	return m.withPending(state, now, func(key [32]byte, p store.Pending) (store.Pending, error) {
		if !memSameHash(p.StartHash, startHash) {
			return store.Pending{}, notFound("unused start page")
		}
		p.StartHash, p.BindingHash = "", bindingHash
		m.pending[key] = p
		p.State = state
		return p, nil
	})
}

func (m *memStore) PrunePending(now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, p := range m.pending {
		if memExpired(p, now) {
			delete(m.pending, k)
			n++
		}
	}
	return n, nil
}

func (m *memStore) Provider(name string) ([]byte, error) {
	meta, err := memGet(m, m.providers, name, "provider "+name)
	return slices.Clone(meta), err // PutProvider replaces a stored slice, never writes to it
}

func (m *memStore) PutProvider(name string, meta []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.providers[name] = slices.Clone(meta)
	return nil
}

func (m *memStore) Close() error {
	m.closes.Add(1)
	return nil
}

// TestStoreContract checks the parts of the Store contract the daemon's
// security and durability rest on, on the bbolt file and on memStore: a
// second backend is checked by adding it here.
func TestStoreContract(t *testing.T) {
	backends := map[string]func(t *testing.T) Store{
		"bbolt": func(t *testing.T) Store {
			st, err := openStore(config.Store{Path: filepath.Join(t.TempDir(), "tokend.db")}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		},
		"memory": func(*testing.T) Store { return newMemStore() },
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { storeContract(t, open) })
	}
}

func storeContract(t *testing.T, open func(t *testing.T) Store) {
	t.Run("tokens and history", func(t *testing.T) {
		st := open(t)
		if _, err := st.Token("g"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Token of a missing grant: %v", err)
		}
		for i := range store.HistoryLen + 3 {
			tok := store.Token{Grant: "g", AccessToken: fmt.Sprint("at-", i), Generation: uint64(i), State: api.StateValid}
			if err := st.PutToken(tok, &store.Attempt{At: t0.Add(time.Duration(i) * time.Second), Result: "success"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.PutToken(store.Token{Grant: "h", AccessToken: "at-h"}, nil); err != nil {
			t.Fatal(err)
		}
		got, err := st.Token("g")
		if err != nil || got.AccessToken != fmt.Sprint("at-", store.HistoryLen+2) {
			t.Fatalf("Token = %+v, %v", got, err)
		}
		hist, err := st.History("g")
		if err != nil || len(hist) != store.HistoryLen || !hist[0].At.Equal(t0.Add(time.Duration(store.HistoryLen+2)*time.Second)) {
			t.Fatalf("History = %d attempts (newest %v), %v; want %d, newest first", len(hist), hist[0].At, err, store.HistoryLen)
		}
		if hist, err := st.History("h"); err != nil || len(hist) != 0 {
			t.Fatalf("History without attempts = %v, %v", hist, err)
		}
		var seen []string
		if err := st.EachToken(func(t *store.Token) error { seen = append(seen, t.Grant); return nil }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(seen)
		if !slices.Equal(seen, []string{"g", "h"}) {
			t.Fatalf("EachToken saw %v", seen)
		}
		stop := errors.New("stop")
		if err := st.EachToken(func(*store.Token) error { return stop }); err != stop {
			t.Fatalf("EachToken returned %v, not fn's error", err)
		}
	})
	t.Run("records", func(t *testing.T) {
		st := open(t)
		if _, err := st.Client("c"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Client: %v", err)
		}
		if _, err := st.Provider("p"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Provider: %v", err)
		}
		if err := st.PutClient(store.Client{Name: "c", ClientID: "id"}); err != nil {
			t.Fatal(err)
		}
		meta := []byte(`{"issuer":"x"}`)
		if err := st.PutProvider("p", meta); err != nil {
			t.Fatal(err)
		}
		meta[0] = 'X' // the store kept its own copy
		if c, err := st.Client("c"); err != nil || c.ClientID != "id" {
			t.Fatalf("Client = %+v, %v", c, err)
		}
		if got, err := st.Provider("p"); err != nil || string(got) != `{"issuer":"x"}` {
			t.Fatalf("Provider = %s, %v", got, err)
		}
	})
	pend := func(state string, deadline time.Time) store.Pending {
		return store.Pending{State: state, Grant: "user", Kind: config.GrantAuthorizationCode, Verifier: "verifier-" + state,
			Created: t0, Deadline: deadline, StartHash: hashHex("start-" + state)}
	}
	// race runs n calls of fn at once and counts those that succeed; the
	// others must fail with want.
	race := func(t *testing.T, n int, want error, fn func() error) int {
		var ok atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				switch err := fn(); {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, want):
					t.Errorf("concurrent call: %v, want %v", err, want)
				}
			})
		}
		close(start)
		wg.Wait()
		return int(ok.Load())
	}
	t.Run("pending is single-use", func(t *testing.T) {
		st := open(t)
		if err := st.PutPending(pend("s1", t0.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		// The callback needs the binding: without it nothing is used up.
		if p, err := st.ConsumePending("s1", "", t0); !errors.Is(err, store.ErrMismatch) || p.Grant != "user" || p.Verifier != "" {
			t.Fatalf("ConsumePending before binding = %+v, %v; want ErrMismatch with the grant and no verifier", p, err)
		}
		if _, err := st.BindPending("s1", hashHex("wrong"), hashHex("cookie"), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("BindPending with another start id: %v", err)
		}
		if n := race(t, 8, store.ErrNotFound, func() error {
			_, err := st.BindPending("s1", hashHex("start-s1"), hashHex("cookie"), t0)
			return err
		}); n != 1 {
			t.Fatalf("%d concurrent BindPending of one start page succeeded, want 1", n)
		}
		if _, err := st.ConsumePending("s1", hashHex("other-cookie"), t0); !errors.Is(err, store.ErrMismatch) {
			t.Fatalf("ConsumePending with another binding: %v", err)
		}
		var got atomic.Pointer[store.Pending]
		if n := race(t, 8, store.ErrNotFound, func() error {
			p, err := st.ConsumePending("s1", hashHex("cookie"), t0)
			if err == nil {
				got.Store(&p)
			}
			return err
		}); n != 1 {
			t.Fatalf("%d concurrent ConsumePending of one authorization succeeded, want 1", n)
		}
		if p := got.Load(); p.Verifier != "verifier-s1" || p.State != "s1" || p.Grant != "user" {
			t.Fatalf("consumed %+v", *p)
		}
	})
	t.Run("pending expires", func(t *testing.T) {
		st := open(t)
		for _, s := range []string{"a", "b", "c"} {
			if err := st.PutPending(pend(s, t0.Add(time.Minute))); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.PutPending(pend("never", time.Time{})); err != nil {
			t.Fatal(err)
		}
		late := t0.Add(time.Minute)
		if p, err := st.ConsumePending("a", hashHex("cookie"), late); !errors.Is(err, store.ErrExpired) || p.Grant != "user" || p.Verifier != "" {
			t.Fatalf("ConsumePending past the deadline = %+v, %v", p, err)
		}
		if _, err := st.ConsumePending("a", hashHex("cookie"), t0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("an expired authorization was kept: %v", err)
		}
		if p, err := st.BindPending("b", hashHex("start-b"), hashHex("cookie"), late); !errors.Is(err, store.ErrExpired) || p.Grant != "user" {
			t.Fatalf("BindPending past the deadline = %+v, %v", p, err)
		}
		if n, err := st.PrunePending(late); err != nil || n != 1 {
			t.Fatalf("PrunePending = %d, %v; want 1 (c)", n, err)
		}
		if _, err := st.BindPending("never", hashHex("start-never"), hashHex("cookie"), late.Add(time.Hour)); err != nil {
			t.Fatalf("an authorization without a deadline expired: %v", err)
		}
	})
}

// TestDaemonRunsOnAnotherStore runs the daemon on memStore through
// Options.OpenStore: tokens, history, the authorization-code flow and a
// restart all go through it, and no bbolt file is created.
func TestDaemonRunsOnAnotherStore(t *testing.T) {
	mem := newMemStore()
	opts := Options{OpenStore: func(config.Store, *slog.Logger) (Store, error) { return mem, nil }}
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, noRun: true, config: func(c *config.Config) {
		userGrant(c)
		c.Grants["cc"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
	}})
	h.startWith(opts)
	first := h.token("cc")
	if got, err := mem.Token("cc"); err != nil || got.AccessToken != first.AccessToken {
		t.Fatalf("memStore holds %+v, %v; want the served token", got, err)
	}
	if st := h.status("cc"); len(st.History) != 1 || st.History[0].Result != "success" {
		t.Fatalf("status history %+v", st.History)
	}
	h.authorizeViaCallback("user")
	user := h.token("user")
	if got, _ := mem.Token("user"); got.AccessToken != user.AccessToken || got.RefreshToken == "" {
		t.Fatalf("authorized token not in memStore: %+v", got)
	}
	n := h.prov.Stats().TokenRequests
	h.stop()
	if c := mem.closes.Load(); c != 1 {
		t.Fatalf("Close called %d times, want 1", c)
	}
	h.startWith(opts)
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("restart on memStore did not serve the stored token")
	}
	if h.prov.Stats().TokenRequests != n {
		t.Fatal("restart asked the provider for a token memStore had")
	}
	if _, err := os.Stat(h.cfg.Store.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a store file was created at %s: %v", h.cfg.Store.Path, err)
	}
	if strings.Contains(h.logs.String(), "reading stored tokens") {
		t.Fatal("loading tokens from memStore failed")
	}
}
