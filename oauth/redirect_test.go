package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// redirectOps are every kind of request the package sends, as a hostile
// provider at base would have them redirected.
var redirectOps = []struct {
	op, endpoint string // Op of the error, path of the endpoint
	do           func(ctx context.Context, hc *http.Client, base string) error
}{
	{"exchange", "/token", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := redirectProvider(hc, base).Exchange(ctx, "code-LEAKED", NewSecret("verifier-LEAKED"), nil)
		return err
	}},
	{"refresh", "/token", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := redirectProvider(hc, base).Refresh(ctx, NewSecret("refresh-LEAKED"), nil, nil)
		return err
	}},
	{"client_credentials", "/token", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := redirectProvider(hc, base).ClientCredentials(ctx, nil, nil)
		return err
	}},
	{"password", "/token", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := redirectProvider(hc, base).Password(ctx, "alice", NewSecret("password-LEAKED"), nil, nil)
		return err
	}},
	{"device", "/device", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := redirectProvider(hc, base).StartDevice(ctx, nil, nil)
		return err
	}},
	{"device", "/token", func(ctx context.Context, hc *http.Client, base string) error {
		// Polls after 1 s of real time (x/oauth2's ticker).
		_, err := redirectProvider(hc, base).AwaitDevice(ctx, &DeviceAuth{DeviceCode: NewSecret("device-LEAKED"), Interval: time.Millisecond})
		return err
	}},
	{"revoke", "/revoke", func(ctx context.Context, hc *http.Client, base string) error {
		return redirectProvider(hc, base).Revoke(ctx, NewSecret("refresh-LEAKED"), "refresh_token")
	}},
	{"register", "/register", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := Register(ctx, hc, base+"/register", RegistrationRequest{ClientName: "tokend"})
		return err
	}},
	{"discovery", "/.well-known/", func(ctx context.Context, hc *http.Client, base string) error {
		_, err := Discover(ctx, hc, base)
		return err
	}},
}

func redirectProvider(hc *http.Client, base string) *Provider {
	return &Provider{
		Endpoints: Endpoints{
			Token:               base + "/token",
			Revocation:          base + "/revoke",
			DeviceAuthorization: base + "/device",
		},
		Client: Client{ID: testClientID, Secret: NewSecret("client-secret-LEAKED"), AuthMethod: AuthPost},
		HTTP:   hc,
	}
}

// recorder is a server that counts whatever reaches it.
type recorder struct {
	*httptest.Server
	mu  sync.Mutex
	got []string
}

func newRecorder(t *testing.T, tls bool) *recorder {
	rec := &recorder{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.got = append(rec.got, r.Method+" "+r.URL.String())
		rec.mu.Unlock()
		writeJSON(w, 200, map[string]any{"access_token": "stolen", "token_type": "Bearer"})
	})
	if tls {
		rec.Server = httptest.NewTLSServer(h)
	} else {
		rec.Server = httptest.NewServer(h)
	}
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) received() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.got...)
}

// TestRedirectsAreNotFollowed performs the redirect attack: a provider (or
// whoever can answer for it) redirects every OAuth request, 301 to 308,
// to another port, to another scheme, with the form (client secret,
// password, refresh token) re-posted for 307 and 308. Nothing may arrive
// at the target; the failure names the endpoint and is a configuration
// error, without the Location's query or user information.
func TestRedirectsAreNotFollowed(t *testing.T) {
	trapHTTP, trapTLS := newRecorder(t, false), newRecorder(t, true)
	var relative atomic.Int32
	redirector := func(status int, target string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/elsewhere") {
				relative.Add(1)
				writeJSON(w, 200, map[string]any{"access_token": "stolen", "token_type": "Bearer"})
				return
			}
			w.Header().Set("Location", target)
			w.WriteHeader(status)
		})
	}
	type target struct{ name, loc, shown string }
	hostHTTP := strings.TrimPrefix(trapHTTP.URL, "http://")
	targets := []target{
		{"other port, http", trapHTTP.URL + "/steal?leak=LEAKED-QUERY#LEAKED-FRAGMENT", trapHTTP.URL + "/steal?…"},
		{"other port, https", trapTLS.URL + "/steal?leak=LEAKED-QUERY", trapTLS.URL + "/steal?…"},
		{"user information", "http://user:LEAKED-PW@" + hostHTTP + "/steal", trapHTTP.URL + "/steal"},
		{"relative", "/elsewhere?leak=LEAKED-QUERY", "/elsewhere?…"},
	}
	// One client trusts the httptest certificate of both TLS servers and
	// speaks plain http too.
	hc := trapTLS.Client()
	var wg sync.WaitGroup
	var cases atomic.Int32
	for _, scheme := range []string{"http", "https"} {
		for _, status := range []int{301, 302, 303, 307, 308} {
			for _, tg := range targets {
				var prov *httptest.Server
				if scheme == "https" {
					prov = httptest.NewTLSServer(redirector(status, tg.loc))
				} else {
					prov = httptest.NewServer(redirector(status, tg.loc))
				}
				t.Cleanup(prov.Close)
				for _, o := range redirectOps {
					name := fmt.Sprintf("%s provider, %d to %s: %s %s", scheme, status, tg.name, o.op, o.endpoint)
					wg.Add(1)
					cases.Add(1)
					// Concurrently: the device poll waits 1 s of real time.
					go func() {
						defer wg.Done()
						err := o.do(context.Background(), hc, prov.URL)
						var e *Error
						switch {
						case err == nil:
							t.Errorf("%s: no error", name)
							return
						case !errors.As(err, &e) || e.Op != o.op:
							t.Errorf("%s: error %T %v", name, err, err)
							return
						}
						if !errors.Is(err, ErrRedirect) || ClassOf(err) != Configuration || e.Status != status {
							t.Errorf("%s: %v: not ErrRedirect, class %v, status %d", name, err, ClassOf(err), e.Status)
						}
						msg := err.Error()
						shown := tg.shown
						if strings.HasPrefix(shown, "/") {
							shown = prov.URL + shown
						}
						if !strings.HasPrefix(msg, "oauth: "+o.op+": ") || !strings.Contains(msg, prov.URL+o.endpoint) ||
							!strings.Contains(msg, "redirects to "+shown+":") || !strings.Contains(msg, "does not follow redirects") {
							t.Errorf("%s: message %q", name, msg)
						}
						if strings.Contains(msg, "LEAKED") {
							t.Errorf("%s: message holds a secret: %q", name, msg)
						}
					}()
				}
			}
		}
	}
	wg.Wait()
	if got := append(trapHTTP.received(), trapTLS.received()...); len(got) != 0 {
		t.Errorf("%d requests reached the redirect target, e.g. %q", len(got), got[0])
	}
	if n := relative.Load(); n != 0 {
		t.Errorf("%d requests followed a relative redirect", n)
	}
	if n := cases.Load(); n != 2*5*int32(len(targets)*len(redirectOps)) {
		t.Errorf("%d cases", n)
	}
}

// A caller's client that follows redirects (nil CheckRedirect, or its own)
// is not followed either.
func TestRedirectsNotFollowedWhateverTheClient(t *testing.T) {
	trap := newRecorder(t, false)
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, trap.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer prov.Close()
	follow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	for _, hc := range []*http.Client{nil, follow, {}} {
		if err := redirectOps[1].do(context.Background(), hc, prov.URL); !errors.Is(err, ErrRedirect) {
			t.Errorf("refresh: %v", err)
		}
		if err := redirectOps[6].do(context.Background(), hc, prov.URL); !errors.Is(err, ErrRedirect) {
			t.Errorf("revoke: %v", err)
		}
	}
	if got := trap.received(); len(got) != 0 {
		t.Errorf("reached the target: %q", got)
	}
}

// A redirect whose Location does not parse is refused without quoting it.
func TestRedirectInvalidLocation(t *testing.T) {
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://[::1/x?leak=LEAKED")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer prov.Close()
	err := redirectOps[1].do(context.Background(), prov.Client(), prov.URL)
	if !errors.Is(err, ErrRedirect) || strings.Contains(err.Error(), "LEAKED") || !strings.Contains(err.Error(), "an invalid Location") {
		t.Errorf("err = %v", err)
	}
}

// A 3xx without Location is an answer like any other, not a redirect.
func TestRedirectStatusWithoutLocation(t *testing.T) {
	prov := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer prov.Close()
	err := redirectOps[1].do(context.Background(), prov.Client(), prov.URL)
	if errors.Is(err, ErrRedirect) || !errors.Is(err, ErrMalformed) {
		t.Errorf("err = %v", err)
	}
}
