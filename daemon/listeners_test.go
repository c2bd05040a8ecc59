package daemon

// The listeners as the daemon runs them behind package server: off,
// a port in use, a Host that names none of them, the socket's modes, a
// socket path another file holds.

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/devprovider"
)

// listen.callback "off" (which check-config accepts) runs, with
// the metrics listener off too; an authorization_code grant then cannot be
// started and authorize says why, while other grants work.
func TestListenersOff(t *testing.T) {
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		userGrant(c)
		c.Grants["cc"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
		c.Listen.Callback, c.Listen.Metrics = "off", "off"
	}})
	if a, m := h.d.CallbackAddr(), h.d.MetricsAddr(); a != "" || m != "" {
		t.Fatalf("listeners bound although off: callback %q, metrics %q", a, m)
	}
	if tok := h.token("cc"); !h.prov.Valid(tok.AccessToken) {
		t.Fatal("no token for a client_credentials grant with the callback off")
	}
	code, body := h.do(http.MethodPost, "/v1/tokens/user/authorize")
	if code != http.StatusBadRequest || !strings.Contains(string(body), `listen.callback is \"off\"`) {
		t.Fatalf("authorize with the callback off: %d %s; want 400 naming listen.callback", code, body)
	}
}

// A port another process holds is reported with the listener,
// the address and the key to change.
func TestListenerPortInUse(t *testing.T) {
	for _, tc := range []struct{ what, key string }{{"callback", "listen.callback"}, {"metrics", "listen.metrics"}} {
		t.Run(tc.what, func(t *testing.T) {
			other, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			addr := other.Addr().String()
			h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
				if tc.what == "callback" {
					c.Listen.Callback = addr
				} else {
					c.Listen.Metrics = addr
				}
			}})
			d, err := New(h.cfg, Options{Clock: h.clock})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = d.Run(ctx, serversOf(d))
			want := "server: " + tc.what + " listener: " + addr + " is already in use by another process (" + tc.key + ")"
			if err == nil || err.Error() != want {
				t.Fatalf("Run = %v\nwant %s", err, want)
			}
		})
	}
}

// DNS rebinding: a page at attacker.example, re-pointed at
// 127.0.0.1, is same-origin with itself; its requests reach the listener
// with Host: attacker.example:PORT. Those get 421, on the metrics listener
// and on the callback listener, where they must not use up a start page.
func TestHostHeaderRebinding(t *testing.T) {
	h := newHarness(t, harnessOpts{prov: devprovider.Options{AutoApprove: true}, config: func(c *config.Config) {
		userGrant(c)
		c.Listen.Metrics = "127.0.0.1:0"
	}})
	metrics := h.d.MetricsAddr()
	_, mport, _ := net.SplitHostPort(metrics)
	for host, want := range map[string]int{
		"attacker.example:" + mport:           http.StatusMisdirectedRequest,
		"attacker.example":                    http.StatusMisdirectedRequest,
		"127.0.0.1.nip.io:" + mport:           http.StatusMisdirectedRequest,
		"localhost.attacker.example:" + mport: http.StatusMisdirectedRequest,
		"localhost:1":                         http.StatusMisdirectedRequest, // another port's origin
		"127.0.0.1:" + mport:                  http.StatusOK,
		"localhost:" + mport:                  http.StatusOK,
		"LocalHost:" + mport:                  http.StatusOK,
		"[::1]:" + mport:                      http.StatusOK,
	} {
		if resp, body := get(t, noCookies, "http://"+metrics+"/healthz", host); resp.StatusCode != want {
			t.Errorf("metrics listener, Host %q: %d %s; want %d", host, resp.StatusCode, body, want)
		}
	}

	start := h.startAuthorization("user")
	_, cport, _ := net.SplitHostPort(h.d.CallbackAddr())
	for _, host := range []string{"attacker.example:" + cport, "attacker.example:1", "attacker.example"} {
		if resp, _ := get(t, newBrowser(t), h.onListener(start), host); resp.StatusCode != http.StatusMisdirectedRequest || len(resp.Cookies()) != 0 {
			t.Fatalf("start page, Host %q: %d %v; want 421, no cookie", host, resp.StatusCode, resp.Cookies())
		}
		if resp, _ := get(t, noCookies, "http://"+h.d.CallbackAddr()+"/callback?state=x&code=y", host); resp.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("callback, Host %q: %d; want 421", host, resp.StatusCode)
		}
	}
	// The refused requests used nothing up: the start page still works,
	// under the redirect_uri's host as a browser sends it.
	if resp, _ := get(t, newBrowser(t), h.onListener(start), "127.0.0.1:1"); resp.StatusCode != http.StatusFound {
		t.Fatalf("start page after refused rebinding requests: %d", resp.StatusCode)
	}
}

func TestSocketModes(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	var sockDir string
	h := newHarness(t, harnessOpts{config: func(c *config.Config) {
		sockDir = filepath.Join(filepath.Dir(c.Store.Path), "run", "tokend")
		c.Listen.Socket = filepath.Join(sockDir, "tokend.sock")
		c.Listen.SocketMode = config.Mode(0o640)
	}})
	fi, err := os.Stat(sockDir)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("socket directory: %v %v", fi.Mode(), err)
	}
	fi, err = os.Lstat(h.sock)
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket: %v %v", fi.Mode(), err)
	}
	fi, err = os.Stat(h.cfg.Store.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store: %v %v", fi.Mode(), err)
	}
	h.stop()
	if _, err := os.Lstat(h.sock); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after shutdown: %v", err)
	}
}

// A file that is not a socket where the socket should be is not removed.
func TestSocketPathOccupied(t *testing.T) {
	h := newHarness(t, harnessOpts{noRun: true})
	if err := os.WriteFile(h.sock, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(h.cfg, Options{Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Run(context.Background(), serversOf(d))
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run: %v", err)
	}
	if b, _ := os.ReadFile(h.sock); string(b) != "precious" {
		t.Fatal("the file at the socket path was touched")
	}
}
