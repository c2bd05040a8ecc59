package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

// reloadSource is an Options.LoadConfig whose answer a test sets.
type reloadSource struct {
	calls atomic.Int32
	next  atomic.Pointer[func() (*config.Config, []string, error)]
}

func (s *reloadSource) set(fn func() (*config.Config, []string, error)) { s.next.Store(&fn) }

func (s *reloadSource) load() (*config.Config, []string, error) {
	s.calls.Add(1)
	return (*s.next.Load())()
}

func TestReloadEndpoint(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	src := &reloadSource{}
	h.startWith(Options{LoadConfig: src.load})
	first := h.token("cc")

	// A file adding a grant, with a warning: the answer comes once the
	// grant is in effect, so a fetch right after it finds the grant.
	src.set(func() (*config.Config, []string, error) {
		cfg := *h.cfg
		cfg.Grants = map[string]config.Grant{
			"cc":  h.cfg.Grants["cc"],
			"cc2": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"write"}},
		}
		return &cfg, []string{"clients.app.client_secret_file: readable by others"}, nil
	})
	code, body := h.do(http.MethodPost, "/v1/reload")
	if code != http.StatusOK {
		t.Fatalf("POST /v1/reload: %d %s", code, body)
	}
	var rr api.ReloadResponse
	if err := json.Unmarshal(body, &rr); err != nil {
		t.Fatal(err)
	}
	if rr.Grants != 2 || len(rr.Warnings) != 1 {
		t.Fatalf("reload answer %+v, want 2 grants and the warning", rr)
	}
	if got := h.token("cc2"); got.Scope != "write" {
		t.Fatalf("the new grant right after reload: %+v", got)
	}
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("reload dropped the stored token")
	}
	// Warnings go through the daemon's logger, not bare lines.
	if log := h.logs.String(); !strings.Contains(log, `level=WARN msg=configuration warning="clients.app.client_secret_file: readable by others"`) {
		t.Fatalf("the warning was not logged through slog:\n%s", log)
	}

	// An invalid file: 422 with its error, and the running configuration
	// stays.
	src.set(func() (*config.Config, []string, error) {
		return nil, nil, errors.New("daemon: config: /etc/tokend/config.yaml:3: unknown key \"grantz\"")
	})
	code, body = h.do(http.MethodPost, "/v1/reload")
	var er api.ErrorResponse
	if err := json.Unmarshal(body, &er); err != nil {
		t.Fatalf("%d %s: %v", code, body, err)
	}
	if code != http.StatusUnprocessableEntity || er.Error != "invalid_configuration" || !strings.Contains(er.ErrorDescription, `unknown key "grantz"`) {
		t.Fatalf("reload of a broken file: %d %+v", code, er)
	}
	if got := h.token("cc2"); got.Scope != "write" {
		t.Fatalf("after a failed reload: %+v", got)
	}
	if !strings.Contains(h.logs.String(), "reload failed; keeping the running configuration") {
		t.Fatal("the failed reload was not logged")
	}

	// A configuration the daemon rejects (not the file's syntax) is an
	// error too.
	src.set(func() (*config.Config, []string, error) {
		cfg := *h.cfg
		cfg.Grants = map[string]config.Grant{"x": {Client: "nope", Type: config.GrantClientCredentials}}
		return &cfg, nil, nil
	})
	if code, body := h.do(http.MethodPost, "/v1/reload"); code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "unknown client") {
		t.Fatalf("reload with an unknown client: %d %s", code, body)
	}
	h.token("cc2")

	// The Go client: the same answers.
	cl := api.NewClient(h.sock)
	ctx := context.Background()
	if _, err := cl.Reload(ctx); err == nil {
		t.Fatal("Client.Reload of a rejected configuration succeeded")
	} else if ae := (*api.Error)(nil); !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity || !strings.Contains(ae.Description, "unknown client") {
		t.Fatalf("Client.Reload: %v", err)
	}
	src.set(func() (*config.Config, []string, error) { c := *h.cfg; return &c, nil, nil })
	resp, err := cl.Reload(ctx)
	if err != nil || resp.Grants != 1 {
		t.Fatalf("Client.Reload = %+v, %v", resp, err)
	}
	if code, _ := h.get("/v1/tokens/cc2"); code == http.StatusOK {
		t.Fatal("a grant removed by reload is still served")
	}
}

// Only operators may reload; a refused caller does not make the daemon
// read the file.
func TestReloadNeedsOperator(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	src := &reloadSource{}
	src.set(func() (*config.Config, []string, error) { c := *h.cfg; return &c, nil, nil })
	h.startWith(Options{LoadConfig: src.load})
	handler := h.d.apiServer().Handler
	for _, tc := range []struct {
		name string
		p    peer
		want int
	}{
		{"unknown peer", peer{}, http.StatusForbidden},
		{"other user", peer{ok: true, uid: 4000, gid: 4000}, http.StatusForbidden},
		{"root", peer{ok: true, uid: 0, gid: 0}, http.StatusOK},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "http://tokend/v1/reload", nil)
		handler.ServeHTTP(w, r.WithContext(withPeer(r.Context(), tc.p)))
		if w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Fatalf("the configuration was read %d times, want once (for root)", n)
	}
	// GET is not a reload.
	if code, _ := h.get("/v1/reload"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/reload: %d", code)
	}
}

// A daemon without a configuration file (tokend dev) says so.
func TestReloadWithoutSource(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	code, body := h.do(http.MethodPost, "/v1/reload")
	if code != http.StatusNotImplemented || !strings.Contains(string(body), "not_supported") {
		t.Fatalf("POST /v1/reload without a source: %d %s", code, body)
	}
	if _, err := h.d.ReloadConfig(); !errors.Is(err, ErrNoConfigSource) {
		t.Fatalf("ReloadConfig without a source: %v", err)
	}
}

// TestKeepUnreloadable: every key a reload cannot apply is named when the
// file changes it, keeps its running value in the configuration the daemon
// keeps, and the keys a reload applies are taken from the file.
func TestKeepUnreloadable(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Store:   config.Store{Path: "/var/lib/tokend/tokend.db", KeyFile: "/etc/tokend/store.key", Key: []byte("k1")},
			Listen:  config.Listen{Socket: "/run/tokend/tokend.sock", Callback: "127.0.0.1:8785", Metrics: "127.0.0.1:9785"},
			Refresh: config.Refresh{Concurrency: 8, Timeout: 30e9, Fraction: 0.75},
			Log:     config.Log{Level: "info", Format: "text"},
			Fleet:   config.Fleet{Instance: "a"},
		}
	}
	for _, tt := range []struct {
		change func(*config.Config)
		want   string // "" when a reload applies it
	}{
		{func(c *config.Config) { c.Store.Path = "/srv/other.db" }, "store.path"},
		{func(c *config.Config) { c.Store.KeyFile = "/etc/tokend/new.key" }, "store.key_file"},
		{func(c *config.Config) { c.Store.Key = []byte("k2") }, "store.key_file"},
		{func(c *config.Config) { c.Store.Backend = config.BackendEtcd }, "store.backend"},
		{func(c *config.Config) { c.Store.Etcd.Endpoints = []string{"http://127.0.0.1:2379"} }, "store.etcd"},
		{func(c *config.Config) { c.Listen.Socket = "/run/other.sock" }, "listen.socket"},
		{func(c *config.Config) { c.Listen.SocketMode = config.Mode(0o666) }, "listen.socket_mode"},
		{func(c *config.Config) { c.Listen.SocketGroup = "staff" }, "listen.socket_group"},
		{func(c *config.Config) { c.Listen.Callback = "127.0.0.1:9999" }, "listen.callback"},
		{func(c *config.Config) { c.Listen.Metrics = "off" }, "listen.metrics"},
		{func(c *config.Config) { c.Log.Level = "debug" }, "log.level"},
		{func(c *config.Config) { c.Log.Format = "json" }, "log.format"},
		{func(c *config.Config) { c.Refresh.Concurrency = 2 }, "refresh.concurrency"},
		{func(c *config.Config) { c.Refresh.Timeout = 5e9 }, "refresh.timeout"},
		{func(c *config.Config) { c.Fleet.Instance = "b" }, "fleet.instance"},
		{func(c *config.Config) {
			c.Grants = map[string]config.Grant{"g": {Client: "app", Proxy: &config.GrantProxy{Listen: "127.0.0.1:8790"}}}
		}, "grants.*.proxy"},
		{func(c *config.Config) { c.Refresh.Fraction = 0.5 }, ""},
		{func(c *config.Config) { c.Grants = map[string]config.Grant{"g": {Client: "app"}} }, ""},
	} {
		running, next := base(), base()
		tt.change(next)
		fromFile := *next
		got := keepUnreloadable(next, running)
		switch {
		case tt.want == "" && len(got) != 0:
			t.Errorf("a reloadable change is reported as needing a restart: %v", got)
		case tt.want != "" && (len(got) != 1 || got[0] != tt.want):
			t.Errorf("changed %s: reported %v", tt.want, got)
		}
		if tt.want != "" {
			if again := keepUnreloadable(base(), next); len(again) != 0 {
				t.Errorf("changed %s: the kept configuration still differs from the running one in %v", tt.want, again)
			}
		} else if next.Refresh.Fraction != fromFile.Refresh.Fraction || len(next.Grants) != len(fromFile.Grants) {
			t.Errorf("a reloadable change was not taken from the file: %+v", next)
		}
		if !slices.Contains(RestartKeys(), cmp.Or(tt.want, "store.path")) {
			t.Errorf("RestartKeys lacks %s", tt.want)
		}
	}
}

func TestReloadKeepsTokensAndAddsGrants(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	first := h.token("cc")
	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{
		"cc":  h.cfg.Grants["cc"],
		"cc2": {Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"write"}},
	}
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if got := h.token("cc"); got.AccessToken != first.AccessToken {
		t.Fatal("reload dropped the stored token")
	}
	if got := h.token("cc2"); got.Scope != "write" {
		t.Fatalf("new grant: %+v", got)
	}
}

// A refresh running across a reload lands in the reloaded grant: otherwise
// the grant would keep serving (and refreshing with) the old token set.
func TestRefreshAcrossReload(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true, Rotate: true}, config: userGrant})
	h.authorizeViaCallback("user")
	first := h.stored("user")
	h.prov.SetFault(devprovider.Fault{Kind: devprovider.FaultSlow, Delay: 300 * time.Millisecond, Times: 1})
	done := make(chan struct{})
	go func() { _, _ = h.d.refresh(h.d.grant("user"), "manual"); close(done) }()
	waitFor(t, "refresh at the provider", func() bool { return h.prov.Stats().Faulted == 1 })
	cfg := *h.cfg
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	<-done
	got := h.d.grant("user").cur.Load()
	if got.Generation != first.Generation+1 || got.RefreshToken == first.RefreshToken {
		t.Fatalf("reloaded grant holds generation %d, want %d", got.Generation, first.Generation+1)
	}
	h.do(http.MethodPost, "/v1/tokens/user/refresh")
	if s := h.prov.Stats(); s.Reuses != 0 {
		t.Fatalf("%d refresh token reuses after the reload", s.Reuses)
	}
}
