package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/server"
)

// tokend proxy takes the grant's token from the socket, and a new one
// through POST …/rejected when the resource refuses it.
func TestProxyCommandThroughTheSocket(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") == "Bearer tok-1" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/notes/status":    {{200, `{"name":"notes","type":"authorization_code","provider":"p","state":"valid","generation":1}`}},
		"GET /v1/tokens/notes":           {{200, `{"access_token":"tok-1","token_type":"Bearer","expires_in":60}`}},
		"POST /v1/tokens/notes/rejected": {{200, `{"access_token":"tok-2","token_type":"Bearer","expires_in":60}`}},
	})
	sock := filepath.Join(filepath.Dir(f.socket), "proxy.sock")
	tc := newTestCLI()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- tc.cli.run(ctx, []string{"proxy", "notes", "--listen", sock, "--upstream", up.URL + "/mcp", "--socket", f.socket})
	}()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if resp, err = hc.Get("http://proxy/"); err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case code := <-done:
			t.Fatalf("tokend proxy ended with %d: %s", code, tc.errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d: %s", code, tc.errOut.String())
	}
	if resp.StatusCode != 200 || string(b) != "ok" {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, b)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auths) != 2 || auths[0] != "Bearer tok-1" || auths[1] != "Bearer tok-2" {
		t.Errorf("resource saw %q", auths)
	}
	if strings.Contains(tc.errOut.String(), "tok-") {
		t.Errorf("a token was printed: %s", tc.errOut.String())
	}
}

// The proxy admits the user running it alone.
func TestProxyCommandAdmitsItsOwnUserOnly(t *testing.T) {
	s := &clientSource{cl: api.NewClient("/nonexistent"), uid: uint32(os.Getuid())}
	_, err := s.Token(context.Background(), server.Caller{UID: uint32(os.Getuid()) + 1}, "notes")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("another uid: %v", err)
	}
	if _, err := s.Token(context.Background(), server.Caller{UID: uint32(os.Getuid())}, "notes"); errors.As(err, &ae) && ae.Status == http.StatusForbidden {
		t.Errorf("own uid refused: %v", err)
	}
}

func TestProxyCommandUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "notes", "--upstream", "https://r.example.com"}, "--listen ADDR is required"},
		{[]string{"proxy", "notes", "--listen", "127.0.0.1:8790"}, "--upstream URL is required"},
		{[]string{"proxy", "notes", "--listen", "0.0.0.0:8790", "--upstream", "https://r.example.com"}, "only a loopback IP address"},
		{[]string{"proxy", "--listen", "127.0.0.1:8790", "--upstream", "https://r.example.com"}, "missing grant NAME"},
	} {
		tc := newTestCLI()
		if code := tc.run(c.args...); code != exitUsage || !strings.Contains(tc.errOut.String(), c.want) {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, tc.errOut.String())
		}
	}
}
