package crash

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/internal/testutil"
	"github.com/tokend/tokend/store"
)

// tokendBin is the binary TestMain builds.
var tokendBin string

func TestMain(m *testing.M) {
	os.Exit(testutil.MainWithTokend(m, "crash", false, &tokendBin, nil))
}

const (
	clientID     = "crash-client"
	clientSecret = "crash-client-secret-0123456789"
	userName     = "crash-user"
	userPassword = "crash-password-0123456789"
	accessTTL    = 20 * time.Second
	concurrency  = 8
)

// TestKill9Torture kills tokend with SIGKILL at random moments while it
// refreshes a few hundred rotating refresh-token chains, restarting it each
// time, and then checks that the store is intact, that every grant either
// holds a live chain or says why not, and that no token was ever served
// past its expiry.
func TestKill9Torture(t *testing.T) {
	began := time.Now()
	grants := testutil.EnvInt(t, "TOKEND_CRASH_GRANTS", 300)
	kills := testutil.EnvInt(t, "TOKEND_CRASH_KILLS", 50)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOKEND_CRASH_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("$TOKEND_CRASH_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("grants %d, kills %d, seed %d (set TOKEND_CRASH_SEED to repeat the kill times)", grants, kills, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	prov := devprovider.New(devprovider.Options{
		Rotate:    true,
		AccessTTL: accessTTL,
		Clients:   []devprovider.Client{{ID: clientID, Secret: clientSecret, AuthMethod: devprovider.AuthMethodBasic}},
		Users:     map[string]string{userName: userPassword},
	})
	t.Cleanup(prov.Close)

	dir := t.TempDir()
	names := make([]string, grants)
	for i := range names {
		names[i] = fmt.Sprintf("g%04d", i)
	}
	dbPath := filepath.Join(dir, "tokend.db")
	seedStore(t, prov, dbPath, names)
	cfgPath := writeConfig(t, dir, prov.URL(), names)
	logPath := filepath.Join(dir, "tokend.log")
	sock := filepath.Join(dir, "tokend.sock")
	ac := newAPI(sock)

	var served serveChecks
	var running time.Duration // time tokend ran before each kill, in total
	p := start(t, cfgPath, logPath, ac)
	for i := range kills {
		run := time.Duration(100+rng.IntN(1401)) * time.Millisecond
		running += run
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { fetchLoop(ac, prov, names, rng.Uint64(), stop, &served) })
		time.Sleep(run) // the kill lands at a random moment of the daemon's work
		close(stop)
		wg.Wait()
		kill(t, p)
		if i%10 == 9 {
			t.Logf("kill %d/%d: provider refreshes %d, reuses %d", i+1, kills, prov.Stats().Refreshes, prov.Stats().Reuses)
		}
		p = start(t, cfgPath, logPath, ac)
	}

	loopRefreshes := prov.Stats().Refreshes

	// Normal running for a few seconds, then every grant refreshed once by
	// an operator, so a chain lost by the last kills is found out now
	// rather than at its next due time.
	time.Sleep(3 * time.Second)
	forceRefreshAll(t, ac, names)
	for _, n := range names {
		served.check(ac, prov, n)
	}
	term(t, p)

	checkBolt(t, dbPath)
	st, err := store.Open(store.Options{Path: dbPath, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("the store does not open after %d kills: %v", kills, err)
	}
	toks, err := st.Tokens()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("reading every token: %v", err)
	}
	byName := map[string]store.Token{}
	for _, tk := range toks {
		byName[tk.Grant] = tk
	}

	var lost, live []string
	var unexplained []string
	for _, n := range names {
		tk, ok := byName[n]
		switch {
		case !ok:
			unexplained = append(unexplained, n+": no stored token")
		case tk.State == api.StateReauthorizationRequired:
			if tk.LastError == "" {
				unexplained = append(unexplained, n+": reauthorization_required without last_error")
			}
			if prov.RefreshValid(tk.RefreshToken) {
				unexplained = append(unexplained, n+": reauthorization_required but its refresh token is still good")
			}
			lost = append(lost, n)
		case tk.State == api.StateValid && prov.RefreshValid(tk.RefreshToken) && prov.Valid(tk.AccessToken):
			live = append(live, n)
		default:
			unexplained = append(unexplained, fmt.Sprintf("%s: state %q, access valid %v, refresh valid %v, generation %d, last_error %q",
				n, tk.State, prov.Valid(tk.AccessToken), prov.RefreshValid(tk.RefreshToken), tk.Generation, tk.LastError))
		}
	}
	stats := prov.Stats()
	served.mu.Lock()
	defer served.mu.Unlock()
	t.Logf("after %d kills in %v: %d grants live, %d chains lost (reauthorization_required); provider: %d refreshes, %d refresh-token reuses, %d token requests; fetches: %d ok, %d 409/503, %d revoked-but-unexpired served",
		kills, time.Since(began).Round(time.Millisecond), len(live), len(lost), stats.Refreshes, stats.Reuses, stats.TokenRequests,
		served.ok, served.unavailable, len(served.revoked))
	if loopRefreshes > 0 && running > 0 {
		// Losses per kill over refreshes per second is the mean time a
		// refresh spends between reaching the provider and its durable
		// commit: the window a kill loses it in.
		rate := float64(loopRefreshes) / running.Seconds()
		t.Logf("implied request-to-commit window: %.1f ms per refresh (%.2f losses per kill at %.0f refreshes/s)",
			1000*float64(len(lost))/float64(kills)/rate, float64(len(lost))/float64(kills), rate)
	}

	for _, u := range unexplained {
		t.Error("unexplained grant state: " + u)
	}
	for _, v := range served.violations {
		t.Error(v)
	}
	// A served token that the provider no longer accepts, though not
	// expired, is allowed only for a grant whose chain was lost: the
	// provider revoked the whole family on the reuse, access token included.
	lostSet := map[string]bool{}
	for _, n := range lost {
		lostSet[n] = true
	}
	for n := range served.revoked {
		if !lostSet[n] {
			t.Errorf("grant %s was served a token the provider rejects, and its chain is not lost", n)
		}
	}
	// Every lost chain is a rotation-window loss: the provider saw the old
	// refresh token again (a reuse). A loss without a reuse would mean
	// tokend sent a refresh token the provider never issued or mangled the
	// store.
	if len(lost) > stats.Reuses {
		t.Errorf("%d chains lost but the provider saw only %d refresh-token reuses", len(lost), stats.Reuses)
	}
	// The bound. A kill loses the refreshes that were between the request
	// leaving tokend (the provider still handles a request whose sender
	// died: the bytes are in its socket buffer) and tokend's commit being
	// durable: at most one per refresh running (refresh.concurrency, plus
	// the one fetch this test has in flight). Here that window is a few
	// milliseconds (a localhost round trip, JSON decoding, a 1 ms bbolt
	// batch delay, two fsyncs) out of each 100–1500 ms run, so a loss is
	// rare, but a batch commit that a kill interrupts loses every refresh
	// in it at once. The assertion is the worst case, which cannot be
	// exceeded without a bug (a commit that is not durable, or a token that
	// is never committed).
	if bound := kills * (concurrency + 1); stats.Reuses > bound {
		t.Errorf("%d refresh-token reuses in %d kills: more than %d (%d per kill) cannot come from the kill window", stats.Reuses, kills, bound, concurrency+1)
	}
	if t.Failed() {
		t.Logf("tokend log (tail):\n%s", testutil.TailFile(logPath, 60))
	}
}

// seedStore obtains a real token set per grant from the provider (password
// grant: a refresh token in a family of its own) and writes it to a new
// store as an authorization_code grant's token, so tokend can only keep it
// alive by refreshing, and a lost chain cannot be re-obtained.
func seedStore(t *testing.T, prov *devprovider.Server, path string, names []string) {
	t.Helper()
	st, err := store.Open(store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Obtained times spread evenly over half a lifetime (the refresh
	// fraction), so refreshes run at a steady rate and every kill lands
	// among them, rather than in bursts a kill may miss.
	spread := map[string]time.Duration{}
	for i, n := range names {
		spread[n] = time.Duration(i) * (accessTTL / 2) / time.Duration(len(names))
	}
	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for n := range work {
				err := seedOne(prov, st, n, spread[n])
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

// seedOne stores a token set obtained now as if it had been obtained age
// ago: its stated expiry is earlier than the provider's, which only makes
// tokend refresh it sooner.
func seedOne(prov *devprovider.Server, st *store.Store, name string, age time.Duration) error {
	form := url.Values{"grant_type": {"password"}, "username": {userName}, "password": {userPassword}, "scope": {"read"}}
	req, _ := http.NewRequest(http.MethodPost, prov.URL()+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, clientSecret)
	obtained := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("seed %s: %w", name, err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != 200 || a.RefreshToken == "" || a.ExpiresIn <= 0 {
		return fmt.Errorf("seed %s: status %d, decode error %v, refresh token %v, expires_in %d", name, resp.StatusCode, err, a.RefreshToken != "", a.ExpiresIn)
	}
	obtained = obtained.Add(-age)
	return st.PutToken(store.Token{
		Grant:         name,
		AccessToken:   a.AccessToken,
		RefreshToken:  a.RefreshToken,
		TokenType:     "Bearer",
		Scope:         a.Scope,
		Obtained:      obtained,
		Expiry:        obtained.Add(time.Duration(a.ExpiresIn) * time.Second),
		RefreshIssued: obtained,
		State:         api.StateValid,
		StateSince:    obtained,
		Generation:    1,
	}, nil)
}

func writeConfig(t *testing.T, dir, issuer string, names []string) string {
	t.Helper()
	secretFile := filepath.Join(dir, "client.secret")
	if err := os.WriteFile(secretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var grants strings.Builder
	for _, n := range names {
		fmt.Fprintf(&grants, "  %s:\n    client: c\n    type: authorization_code\n    scopes: [read]\n", n)
	}
	return testutil.TokendConfig{
		Store:    []string{"path: " + filepath.Join(dir, "tokend.db")},
		Socket:   filepath.Join(dir, "tokend.sock"),
		Callback: "127.0.0.1:0",
		Metrics:  "off",
		Refresh:  []string{`schedule: "@every 1s"`, "fraction: 0.5", "min_remaining: 1s", fmt.Sprintf("concurrency: %d", concurrency)},
		LogLevel: "info",
		Provider: "p", Issuer: issuer,
		Clients: fmt.Sprintf("  c:\n    provider: p\n    client_id: %s\n    client_secret_file: %s\n    auth_method: client_secret_basic\n    redirect_uri: http://127.0.0.1:8785/callback\n",
			clientID, secretFile),
		Grants: grants.String(),
	}.Write(t, filepath.Join(dir, "config.yaml"))
}

// start runs `tokend serve` (its output appended to logPath) and waits until its socket answers.
func start(t *testing.T, cfgPath, logPath string, ac *apiClient) *testutil.LoggedTokend {
	t.Helper()
	return testutil.ServeTokendLogged(t, tokendBin, cfgPath, logPath, func() error {
		code, _, err := ac.do(http.MethodGet, "/v1/tokens?ready", 2*time.Second)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("GET /v1/tokens?ready: %d", code)
		}
		return err
	})
}

// kill kills tokend with SIGKILL and checks that it died of it.
func kill(t *testing.T, p *testutil.LoggedTokend) {
	t.Helper()
	err := p.Kill9(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("tokend did not die of SIGKILL: %v", err)
	}
}

// term stops tokend with SIGTERM and expects a clean exit.
func term(t *testing.T, p *testutil.LoggedTokend) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Errorf("tokend exited uncleanly after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("tokend did not stop within 20 s of SIGTERM")
	}
}

// apiClient speaks HTTP over tokend's unix socket, with a new connection
// per request: connections to a killed process must not be reused.
type apiClient struct{ hc *http.Client }

func newAPI(sock string) *apiClient {
	return &apiClient{hc: &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (a *apiClient) do(method, path string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://tokend"+path, nil)
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// serveChecks collects what fetches saw.
type serveChecks struct {
	mu          sync.Mutex
	ok          int
	unavailable int
	revoked     map[string]bool // grants served an unexpired token the provider rejects
	violations  []string
}

// check fetches one grant and judges the answer: a 200 must carry a token
// that has not expired and that the provider accepts; 409 and 503 say the
// grant has no usable token. Errors of the connection are ignored (the
// fetch loop stops before a kill, but start-up may race).
func (s *serveChecks) check(ac *apiClient, prov *devprovider.Server, name string) {
	sent := time.Now()
	code, body, err := ac.do(http.MethodGet, "/v1/tokens/"+name, 40*time.Second)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch code {
	case http.StatusOK:
		var tr api.TokenResponse
		if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
			s.violations = append(s.violations, fmt.Sprintf("GET %s: 200 with a body that is not a token (%v)", name, err))
			return
		}
		if !tr.ExpiresAt.After(sent) {
			s.violations = append(s.violations, fmt.Sprintf("GET %s: served a token that expired at %s, before the request (%s)", name, tr.ExpiresAt.Format(time.RFC3339Nano), sent.Format(time.RFC3339Nano)))
			return
		}
		if !prov.Valid(tr.AccessToken) {
			if time.Now().Before(tr.ExpiresAt) {
				if s.revoked == nil {
					s.revoked = map[string]bool{}
				}
				s.revoked[name] = true
			}
			return
		}
		s.ok++
	case http.StatusConflict, http.StatusServiceUnavailable:
		s.unavailable++
	default:
		s.violations = append(s.violations, fmt.Sprintf("GET %s: unexpected status %d: %s", name, code, body))
	}
}

// fetchLoop fetches random grants, paced, until stop closes.
func fetchLoop(ac *apiClient, prov *devprovider.Server, names []string, seed uint64, stop <-chan struct{}, s *serveChecks) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond): // pacing, to leave the CPUs to tokend
		}
		s.check(ac, prov, names[rng.IntN(len(names))])
	}
}

// forceRefreshAll refreshes every grant through the operator API.
func forceRefreshAll(t *testing.T, ac *apiClient, names []string) {
	t.Helper()
	work := make(chan string)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for n := range work {
				code, body, err := ac.do(http.MethodPost, "/v1/tokens/"+n+"/refresh", 40*time.Second)
				if err != nil || code != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %v %s", n, code, err, body))
					mu.Unlock()
				}
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	sort.Strings(failures)
	for _, f := range failures {
		t.Error("POST refresh " + f)
	}
}

// checkBolt runs bbolt's own consistency check over every page.
func checkBolt(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("bbolt cannot open the store: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("bbolt consistency check: %v", err)
	}
}
