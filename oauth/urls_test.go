package oauth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestCheckEndpointURL(t *testing.T) {
	for u, want := range map[string]string{
		"https://id.example.com/token":      "",
		"https://id.example.com:8443":       "",
		"http://127.0.0.1:5556/token":       "",
		"http://127.3.4.5/token":            "",
		"http://localhost:8080/token":       "",
		"http://LocalHost/token":            "",
		"http://[::1]:9/token":              "",
		"http://[::ffff:127.0.0.1]:9/token": "",
		"HTTP://127.0.0.1/token":            "", // url.Parse lowercases the scheme
		"http://id.example.com/token":       `"http://id.example.com/token" uses http to a non-loopback host: use https`,
		"http://127.0.0.1.evil.example/t":   "uses http to a non-loopback host",
		"http://localhost.evil.example/t":   "uses http to a non-loopback host",
		"http://10.0.0.1/token":             "uses http to a non-loopback host",
		"http://[::2]/token":                "uses http to a non-loopback host",
		"http://0.0.0.0/token":              "uses http to a non-loopback host",
		"file:///etc/passwd":                `"file:///etc/passwd" is not an absolute http(s) URL`,
		"/token":                            "is not an absolute http(s) URL",
		"https:///token":                    "is not an absolute http(s) URL",
		"javascript:alert(1)":               "is not an absolute http(s) URL",
		"":                                  "is not an absolute http(s) URL",
		"https://id.example.com/\x00":       "is not an absolute http(s) URL",
	} {
		err := CheckEndpointURL(u)
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckEndpointURL(%q) = %v", u, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("CheckEndpointURL(%q) = %v, want %q", u, err, want)
		}
	}
}

// TestDiscoverRefusesCleartextEndpoints: a metadata document
// may not name an http endpoint on another host, which the same URL in the
// configuration would be refused for. The error is a Configuration error
// naming the field, and the other location is not tried.
func TestDiscoverRefusesCleartextEndpoints(t *testing.T) {
	fields := []string{"authorization_endpoint", "token_endpoint", "revocation_endpoint", "device_authorization_endpoint", "registration_endpoint"}
	for _, f := range fields {
		for _, v := range []string{"http://id.example.com/x", "http://10.1.2.3:8080/x", "http://127.0.0.1.nip.io/x"} {
			t.Run(f+" "+v, func(t *testing.T) {
				ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
					m := metadata(base)
					m[f] = v
					writeJSON(w, 200, m)
				})
				ep, err := Discover(context.Background(), ds.Client(), ds.URL)
				var e *Error
				if !errors.As(err, &e) || e.Op != "discovery" || e.Class != Configuration || errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, Endpoints %+v", err, ep)
				}
				if want := f + ` "` + v + `" uses http to a non-loopback host: use https`; !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "oauth: discovery: ") {
					t.Errorf("message %q, want it to hold %q", err, want)
				}
				if got := ds.asked(); got != "/.well-known/oauth-authorization-server" {
					t.Errorf("asked %q", got)
				}
			})
		}
	}
}

// Loopback http endpoints (local test providers) are what the
// configuration accepts too.
func TestDiscoverAcceptsLoopbackHTTP(t *testing.T) {
	ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
		m := metadata(base)
		m["authorization_endpoint"] = "http://localhost:8080/authorize"
		m["revocation_endpoint"] = "http://[::1]:8080/revoke"
		m["device_authorization_endpoint"] = "http://127.9.9.9/device"
		m["registration_endpoint"] = "https://id.example.com/register"
		writeJSON(w, 200, m)
	})
	ep, err := Discover(context.Background(), ds.Client(), ds.URL)
	if err != nil {
		t.Fatal(err)
	}
	if ep.Token != ds.URL+"/token" || ep.Authorization != "http://localhost:8080/authorize" || ep.Revocation != "http://[::1]:8080/revoke" ||
		ep.DeviceAuthorization != "http://127.9.9.9/device" || ep.Registration != "https://id.example.com/register" {
		t.Errorf("Endpoints %+v", ep)
	}
}

// A document's endpoint with characters that could mislead a terminal
// (bidi overrides, C1 controls) is malformed.
func TestDiscoverRefusesUnprintableEndpoints(t *testing.T) {
	ds := newDiscoveryServer(t, func(w http.ResponseWriter, r *http.Request, base string) {
		m := metadata(base)
		m["token_endpoint"] = "https://id.example.com/\u202etoken"
		writeJSON(w, 200, m)
	})
	_, err := Discover(context.Background(), ds.Client(), ds.URL)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "token_endpoint") || hasEscape(err.Error()) {
		t.Errorf("err = %v", err)
	}
}

// TestDiscoverRefusesCleartextIssuer: the issuer itself follows the rule.
func TestDiscoverRefusesCleartextIssuer(t *testing.T) {
	var sent atomic.Int32
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return nil, errors.New("sent")
	})}
	_, err := Discover(context.Background(), hc, "http://id.example.com")
	if ClassOf(err) != Configuration || !strings.Contains(err.Error(), "uses http to a non-loopback host") || sent.Load() != 0 {
		t.Errorf("err = %v, %d requests", err, sent.Load())
	}
}

// TestCleartextEndpointNotUsed: an http endpoint on another host, wherever
// it came from (a cache of discovered endpoints written before this rule,
// a caller), receives no request: no secret is sent in clear text.
func TestCleartextEndpointNotUsed(t *testing.T) {
	var sent atomic.Int32
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return nil, errors.New("sent")
	})}
	const base = "http://id.example.com"
	for _, o := range redirectOps {
		if o.op == "discovery" {
			continue // TestDiscoverRefusesCleartextIssuer
		}
		err := o.do(context.Background(), hc, base)
		var e *Error
		if !errors.As(err, &e) || e.Op != o.op || e.Class != Configuration || !strings.Contains(err.Error(), `"`+base+o.endpoint+`" uses http to a non-loopback host`) {
			t.Errorf("%s %s: err = %v", o.op, o.endpoint, err)
		}
	}
	if n := sent.Load(); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}
