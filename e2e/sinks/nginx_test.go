package sinks

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/internal/testutil"
)

// nginxRecipe returns the nginx recipe of docs/delivery.md: the shell
// script of nginx-token.service's ExecStart= as sh receives it (systemd's
// "$$", "%%" and "\\" undone), and the bootstrap commands.
func nginxRecipe(t *testing.T) (script, bootstrap string) {
	t.Helper()
	b, err := os.ReadFile("../../docs/delivery.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	m := regexp.MustCompile(`(?m)^# /etc/systemd/system/nginx-token\.service\n(?:.*\n)*?ExecStart=/bin/sh -ec '(.*)'$`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("docs/delivery.md: no ExecStart=/bin/sh -ec '…' in the nginx-token.service of the nginx recipe")
	}
	script = strings.NewReplacer(`$$`, `$`, `%%`, `%`, `\\`, `\`).Replace(m[1])
	i := strings.Index(page, "systemctl enable --now nginx-token.path")
	if i < 0 {
		t.Fatal("docs/delivery.md: the nginx recipe does not enable nginx-token.path")
	}
	end := strings.Index(page[i:], "```")
	if end < 0 {
		t.Fatal("docs/delivery.md: the nginx bootstrap block does not end")
	}
	return script, page[i : i+end]
}

// TestNginxRecipe follows the nginx recipe of docs/delivery.md with Debian's nginx,
// run as a process on loopback under a scratch prefix: tokend keeps a raw
// sink; the recipe's script (the path unit's ExecStart, paths moved to the
// scratch directories, `systemctl try-reload-or-restart nginx` turned into
// `nginx -s reload`) writes the include; nginx proxies to an upstream that
// accepts only the provider's valid tokens. The test plays the path unit:
// it runs the script whenever the sink's content changes. Bootstrap as the
// page orders it: an include of a file the script has not written yet
// fails `nginx -t`; after the first run it passes. Then every request
// through nginx reaches the upstream with a valid token across several
// rotations.
func TestNginxRecipe(t *testing.T) {
	needRoot(t)
	const nginx = "/usr/sbin/nginx"
	if _, err := os.Stat(nginx); err != nil {
		// Never skipped: make test and CI run it (scripts/test-deps
		// installs Debian's nginx).
		t.Fatal("nginx is not installed: run ./scripts/test-deps")
	}
	script, bootstrap := nginxRecipe(t)
	for _, step := range []string{"systemctl start nginx-token.service", "include /etc/nginx/token.conf;", "nginx -t"} {
		if !strings.Contains(bootstrap, step) {
			t.Fatalf("docs/delivery.md: the nginx bootstrap lacks %q:\n%s", step, bootstrap)
		}
	}
	if strings.Index(bootstrap, "systemctl start nginx-token.service") > strings.Index(bootstrap, "include /etc/nginx/token.conf;") {
		t.Fatalf("docs/delivery.md: the nginx bootstrap adds the include before the first run writes it:\n%s", bootstrap)
	}

	prov := newProvider(t, 4*time.Second)
	upstream := startBearerTarget(t, prov, "upstream ok")

	dir := testutil.SharedDir(t)
	sink := filepath.Join(sinkDir(t), "upstream.token")
	cfg := writeConfig(t, dir, prov.URL(), rotatingRefresh,
		fmt.Sprintf("      - path: %s\n        format: raw\n", sink))
	start(t, cfg, filepath.Join(dir, "tokend.log"), api.NewClient(filepath.Join(dir, "tokend.sock")))
	waitFor(t, "the sink written", func() bool { _, err := os.Stat(sink); return err == nil })

	// nginx under a scratch prefix, in the foreground, on loopback.
	prefix := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(prefix, "nginx.conf")
	tokenConf := filepath.Join(prefix, "token.conf")
	port := testutil.FreePort(t)
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes 1;
error_log %[1]s/error.log warn;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      include %[3]s;
      proxy_pass http://%[4]s;
    }
  }
}
`, prefix, port, tokenConf, upstream.addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxArgs := func(args ...string) []string {
		return append([]string{"-p", prefix + "/", "-e", filepath.Join(prefix, "error.log"), "-c", conf}, args...)
	}
	script = strings.NewReplacer(
		"/run/tokend/sinks/upstream.token", sink,
		"/etc/nginx/", prefix+"/",
		"systemctl try-reload-or-restart nginx", "{ ! test -e "+filepath.Join(prefix, "nginx.pid")+" || "+nginx+" "+strings.Join(nginxArgs("-s", "reload"), " ")+"; }",
	).Replace(script)
	if strings.Contains(script, "/etc/") || strings.Contains(script, "/run/") || strings.Contains(script, "systemctl") {
		t.Fatalf("the recipe's script names paths or commands the test does not move:\n%s", script)
	}
	// The unit's UMask=0077, then its ExecStart.
	runScript := func() error {
		out, err := exec.Command("/bin/sh", "-ec", "umask 0077\n"+script).CombinedOutput()
		if err != nil {
			return fmt.Errorf("the recipe's script: %v\n%s", err, out)
		}
		return nil
	}

	// The include before the first run: nginx -t fails.
	if out, err := exec.Command(nginx, nginxArgs("-t")...).CombinedOutput(); err == nil {
		t.Fatalf("nginx -t passed with the include missing:\n%s", out)
	}
	// systemctl start nginx-token.service, then nginx -t passes.
	if err := runScript(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, nginxArgs("-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t after the first run: %v\n%s", err, out)
	}
	// Its output goes to a file, not a pipe its workers would hold open.
	ngLog := filepath.Join(prefix, "error.log")
	ng := exec.Command(nginx, nginxArgs("-g", "daemon off; master_process on;")...)
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	ngDone := make(chan struct{})
	go func() { _ = ng.Wait(); close(ngDone) }()
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers, then exits.
		_ = ng.Process.Signal(syscall.SIGTERM)
		select {
		case <-ngDone:
		case <-time.After(10 * time.Second):
			_ = ng.Process.Kill()
			<-ngDone
		}
	})

	// The path unit: the script runs whenever the sink changes.
	stop := make(chan struct{})
	unitDone := make(chan struct{})
	var runs atomic.Int64
	go func() {
		defer close(unitDone)
		last, _ := os.ReadFile(sink)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			cur, err := os.ReadFile(sink)
			if err != nil || bytes.Equal(cur, last) {
				continue
			}
			last = cur
			if err := runScript(); err != nil {
				t.Errorf("after a rotation: %v", err)
				return
			}
			runs.Add(1)
		}
	}()
	t.Cleanup(func() { close(stop); <-unitDone })

	// Requests through nginx until the upstream has seen four tokens
	// (three rotations).
	client := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	var ok, failed int
	began := time.Now()
	for {
		n := upstream.tokens()
		if n >= 4 {
			break
		}
		if time.Since(began) > 60*time.Second {
			t.Fatalf("after 60 s the upstream saw %d tokens (%d requests through nginx answered 200, %d not)\nnginx:\n%s", n, ok, failed, testutil.TailFile(ngLog, 40))
		}
		resp, err := client.Get(url)
		if err != nil {
			// nginx still starting.
			if ok == 0 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			t.Fatalf("GET through nginx: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		} else {
			failed++
			t.Errorf("GET through nginx: %s %q", resp.Status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tokens := upstream.tokens()
	t.Logf("nginx ran %s: %d requests answered 200, %d not; upstream accepted %d, rejected %d; %d distinct tokens, the script ran %d times after the first",
		time.Since(began).Round(time.Second), ok, failed, upstream.accepted.Load(), upstream.rejected.Load(), tokens, runs.Load())
	if upstream.rejected.Load() != 0 {
		t.Errorf("the upstream rejected %d requests", upstream.rejected.Load())
	}
}
