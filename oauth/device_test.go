package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

func TestStartDevice(t *testing.T) {
	for _, m := range authMethods {
		t.Run(string(m), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				want := url.Values{"scope": {"openid offline_access"}, "audience": {"aud"}}
				if m == AuthBasic {
					// x/oauth2 always sends client_id to the device endpoint.
					want.Set("client_id", testClientID)
				}
				checkForm(t, r, "/device", m, want)
				writeJSON(w, 200, map[string]any{
					"device_code": "dc-1", "user_code": "ABCD-EFGH",
					"verification_uri": "https://id.example.com/device", "verification_uri_complete": "https://id.example.com/device?user_code=ABCD-EFGH",
					"expires_in": 600, "interval": 2,
				})
			}))
			defer srv.Close()
			clock := newClock()
			da, err := newTestProvider(srv, m, clock).StartDevice(context.Background(), []string{"openid", "offline_access"}, Params{"audience": "aud"})
			if err != nil {
				t.Fatal(err)
			}
			if da.DeviceCode.Reveal() != "dc-1" || da.UserCode != "ABCD-EFGH" || da.VerificationURI != "https://id.example.com/device" ||
				da.VerificationURIComplete != "https://id.example.com/device?user_code=ABCD-EFGH" {
				t.Errorf("DeviceAuth = %+v", da)
			}
			if !da.ExpiresAt.Equal(clock.Now().Add(10*time.Minute)) || da.Interval != 2*time.Second {
				t.Errorf("ExpiresAt, Interval = %v, %v", da.ExpiresAt, da.Interval)
			}
		})
	}
}

func TestStartDeviceDefaultsAndErrors(t *testing.T) {
	answer := map[string]any{"device_code": "dc", "user_code": "u", "verification_url": "https://v"}
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, status, answer) }))
	defer srv.Close()
	p := newTestProvider(srv, AuthNone, newClock())
	da, err := p.StartDevice(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if da.Interval != 5*time.Second || !da.ExpiresAt.IsZero() || da.VerificationURI != "https://v" {
		t.Errorf("DeviceAuth = %+v", da)
	}

	answer = map[string]any{"user_code": "u", "verification_uri": "https://v"}
	if _, err := p.StartDevice(context.Background(), nil, nil); !errors.Is(err, ErrMalformed) || ClassOf(err) != Transient {
		t.Errorf("no device_code: %v", err)
	}
	status, answer = 400, map[string]any{"error": "invalid_client"}
	if _, err := p.StartDevice(context.Background(), nil, nil); ClassOf(err) != Credentials {
		t.Errorf("invalid_client: %v", err)
	}
}

// TestAwaitDevice polls on real time (x/oauth2's DeviceAccessToken): 1 s,
// then 1 s, then 6 s after slow_down. It runs in parallel with the others.
func TestAwaitDevice(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("polls on real time for about 8 s")
	}
	var polls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checkForm(t, r, "/token", AuthBasic, url.Values{
			"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
			"device_code": {"dc-1"},
			"client_id":   {testClientID},
		})
		switch polls.Add(1) {
		case 1:
			writeJSON(w, 400, map[string]any{"error": "authorization_pending"})
		case 2:
			writeJSON(w, 400, map[string]any{"error": "slow_down"})
		default:
			writeJSON(w, 200, map[string]any{"access_token": "at-1", "token_type": "Bearer", "refresh_token": "rt-1", "expires_in": 60})
		}
	}))
	defer srv.Close()
	clock := newClock()
	p := newTestProvider(srv, AuthBasic, clock)
	tok, err := p.AwaitDevice(context.Background(), &DeviceAuth{DeviceCode: NewSecret("dc-1"), Interval: time.Second, ExpiresAt: clock.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken.Reveal() != "at-1" || tok.RefreshToken.Reveal() != "rt-1" || !tok.Expiry.Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("token = %q %q %v", tok.AccessToken.Reveal(), tok.RefreshToken.Reveal(), tok.Expiry)
	}
	if n := polls.Load(); n != 3 {
		t.Errorf("%d polls, want 3", n)
	}
}

func TestAwaitDeviceEnds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		code  string
		class Class
	}{
		{"access_denied", Denied},
		{"expired_token", Reauthorize},
		{"invalid_client", Credentials},
	} {
		t.Run(c.code, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, 400, map[string]any{"error": c.code})
			}))
			defer srv.Close()
			_, err := newTestProvider(srv, AuthPost, newClock()).AwaitDevice(context.Background(), &DeviceAuth{DeviceCode: NewSecret("dc-1"), Interval: time.Millisecond})
			var e *Error
			if !errors.As(err, &e) || e.Class != c.class || e.Code != c.code || e.Op != "device" {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func TestAwaitDeviceExpiredOrCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("polled an expired code")
	}))
	defer srv.Close()
	clock := newClock()
	p := newTestProvider(srv, AuthNone, clock)
	_, err := p.AwaitDevice(context.Background(), &DeviceAuth{DeviceCode: NewSecret("dc"), Interval: time.Second, ExpiresAt: clock.Now().Add(-time.Second)})
	if ClassOf(err) != Reauthorize {
		t.Errorf("expired code: %v (%v)", err, ClassOf(err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.AwaitDevice(ctx, &DeviceAuth{DeviceCode: NewSecret("dc"), Interval: time.Second, ExpiresAt: clock.Now().Add(time.Minute)})
	if ClassOf(err) != Transient || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
