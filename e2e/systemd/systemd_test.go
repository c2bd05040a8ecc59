package systemd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	providerAddr = "127.0.0.1:9400"
	metricsAddr  = "127.0.0.1:9785"
	debVersion   = "0.0.0~e2e"
	// maxExposure is the limit on systemd-analyze security's figure, as
	// in systemd/unit_test.go (which checks it offline).
	maxExposure = 1.5
)

// configYAML is /etc/tokend/config.yaml inside the container; GRANTS is
// replaced by the grants block.
const configYAML = `
refresh:
  schedule: "@every 2s"
providers:
  test:
    issuer: http://` + providerAddr + `
clients:
  app:
    provider: test
    client_id: tokend-e2e
    client_secret_file: /etc/tokend/client.secret
grants:
GRANTS`

func grantsYAML(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "  %s:\n    client: app\n    type: client_credentials\n    readers:\n      users: [e2e-reader]\n", n)
		if n == "demo" {
			// A file sink in a setgid directory of the reader's group
			// (docs/delivery.md, "Owner and group under the shipped unit"): the
			// file takes that group without a chown.
			fmt.Fprintf(&b, "    sinks:\n      - {path: %s, mode: \"0640\"}\n", demoSink)
		}
	}
	return strings.Replace(configYAML, "GRANTS", b.String(), 1)
}

// build makes the .deb with `make deb` and the test provider, into dir.
func build(t *testing.T, dir string) (deb, provider string) {
	t.Helper()
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "-C", repo, "deb",
		"BIN="+filepath.Join(dir, "tokend"), "DEBDIR="+dir, "DEBVERSION="+debVersion, "VERSION=e2e")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb = filepath.Join(dir, "tokend_"+debVersion+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make deb did not write %s: %v", deb, err)
	}
	provider = filepath.Join(dir, "provider")
	if out, err := exec.Command("go", "build", "-o", provider, "./provider").CombinedOutput(); err != nil {
		t.Fatalf("building the test provider: %v\n%s", err, out)
	}
	return deb, provider
}

type grantStatus struct {
	State      string `json:"state"`
	Generation uint64 `json:"generation"`
	Sinks      []struct {
		Path  string `json:"path"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"sinks"`
}

const demoSink = "/run/tokend-sinks/demo.token"

func TestSystemd(t *testing.T) {
	requireTools(t)
	ctx := context.Background()
	dir := t.TempDir()
	deb, provider := build(t, dir)

	c := bootContainer(t, ctx, func(root string) {
		for src, dst := range map[string]string{deb: "srv/e2e/tokend.deb", provider: "srv/e2e/provider"} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(root, "srv/e2e"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.run("journalctl", "--no-pager", "-n", "150", "-u", "tokend.service", "-u", "tokend.socket", "-u", "e2e-provider.service")
			t.Logf("journal of the container:\n%s", out)
		}
	})

	// --- The package: user and directories, nothing enabled or started.
	c.must("dpkg", "-i", "/srv/e2e/tokend.deb")
	if out := c.must("getent", "passwd", "tokend"); !strings.Contains(out, ":/var/lib/tokend:") {
		t.Errorf("tokend user: %q", out)
	}
	for path, want := range map[string]string{"/etc/tokend": "750 root tokend", "/var/lib/tokend": "700 tokend tokend"} {
		if got := strings.TrimSpace(c.must("stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	for _, u := range []string{"tokend.service", "tokend.socket"} {
		if out, _ := c.run("systemctl", "is-enabled", u); strings.TrimSpace(out) != "disabled" {
			t.Errorf("%s after dpkg -i: is-enabled %q, want disabled", u, strings.TrimSpace(out))
		}
		if out, _ := c.run("systemctl", "is-active", u); strings.TrimSpace(out) != "inactive" {
			t.Errorf("%s after dpkg -i: is-active %q, want inactive", u, strings.TrimSpace(out))
		}
	}

	// --- Set-up: a client secret, the provider, users, the config, and
	// the seccomp drop-in: a filtered call kills instead of EPERM.
	c.write("etc/tokend/client.secret", "e2e-client-secret\n", 0o600)
	c.must("chown", "tokend:tokend", "/etc/tokend/client.secret")
	c.must("systemd-run", "--unit=e2e-provider", "-p", "Type=notify", "--",
		"/srv/e2e/provider", "-addr", providerAddr, "-client-id", "tokend-e2e",
		"-client-secret-file", "/etc/tokend/client.secret", "-ttl", "20s")
	// Readers join the socket's group, never tokend's own.
	c.must("groupadd", "e2e-sinks")
	c.must("useradd", "--no-create-home", "--groups", "tokend-clients,e2e-sinks", "e2e-reader")
	c.must("useradd", "--no-create-home", "--groups", "tokend-clients", "e2e-other")
	c.write("etc/tmpfiles.d/e2e-sinks.conf", "d /run/tokend-sinks 2750 tokend e2e-sinks -\n", 0o644)
	c.must("systemd-tmpfiles", "--create", "/etc/tmpfiles.d/e2e-sinks.conf")
	c.write("etc/systemd/system/tokend.service.d/e2e-sinks.conf", "[Service]\nReadWritePaths=/run/tokend-sinks\n", 0o644)
	c.write("etc/tokend/config.yaml", grantsYAML("demo"), 0o640)
	c.must("chown", "root:tokend", "/etc/tokend/config.yaml")
	c.write("etc/systemd/system/tokend.service.d/e2e-sigsys.conf",
		"[Service]\n# e2e: a call outside SystemCallFilter= kills with SIGSYS.\nSystemCallErrorNumber=\n", 0o644)
	c.must("systemctl", "daemon-reload")
	if v := c.show("tokend.service", "SystemCallErrorNumber")["SystemCallErrorNumber"]; v == "1" || v == "EPERM" {
		t.Fatalf("the drop-in did not reset SystemCallErrorNumber: %q", v)
	}
	// The filter is real in this container: the unit's filter kills a
	// chown(2) (@privileged) with SIGSYS.
	c.must("touch", "/tmp/e2e-chown")
	out, err := c.run("systemd-run", "--wait", "-p", "SystemCallArchitectures=native",
		"-p", "SystemCallFilter=@system-service", "-p", "SystemCallFilter=~@privileged @resources",
		"--", "/usr/bin/chown", "nobody", "/tmp/e2e-chown")
	if err == nil || !strings.Contains(out, "SYS") {
		t.Fatalf("chown under the unit's filter was not killed by SIGSYS: %v\n%s", err, out)
	}

	// --- LoadCredential=: without /etc/tokend/store.key the start fails,
	// and says why.
	if out, err := c.run("systemctl", "start", "tokend.service"); err == nil {
		t.Fatalf("tokend started without its store key:\n%s", out)
	}
	if out, _ := c.run("systemctl", "is-active", "tokend.service"); strings.TrimSpace(out) == "active" {
		t.Fatal("tokend.service active without its store key")
	}
	if st, _ := c.run("systemctl", "status", "--no-pager", "tokend.service"); !strings.Contains(st, "AssertPathExists=/etc/tokend/store.key was not met") {
		t.Errorf("systemctl status does not name the missing key:\n%s", st)
	}
	// As the README says, under umask 077.
	c.must("sh", "-c", "umask 077; head -c 32 /dev/urandom > /etc/tokend/store.key")
	c.must("systemctl", "stop", "tokend.socket", "tokend.service")
	_, _ = c.run("systemctl", "reset-failed", "tokend.service")

	// --- Socket activation from the socket alone.
	c.must("systemctl", "start", "tokend.socket")
	if out, _ := c.run("systemctl", "is-active", "tokend.service"); strings.TrimSpace(out) != "inactive" {
		t.Fatalf("tokend.service %q before any client", strings.TrimSpace(out))
	}
	tok, errOut, code := c.as("e2e-reader", "tokend", "token", "demo")
	if code != 0 || !regexp.MustCompile(`^at_\S+\n$`).MatchString(tok) {
		t.Fatalf("first fetch through the socket as reader: exit %d, stderr %q, token shape ok=%v", code, errOut, strings.HasPrefix(tok, "at_"))
	}
	// The store is sealed with the credential's key: the token is not in
	// the file.
	db, err := os.ReadFile(filepath.Join(c.root, "var/lib/tokend/tokend.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(strings.TrimSpace(tok))) {
		t.Error("the access token is in the store file in the clear: the LoadCredential= key was not used")
	}
	// Type=notify: active only after READY=1.
	if st := c.show("tokend.service", "ActiveState", "SubState", "Type"); st["ActiveState"] != "active" || st["SubState"] != "running" || st["Type"] != "notify" {
		t.Fatalf("after activation: %v", st)
	}
	waitFor(t, "STATUS= counting the valid grant", 30*time.Second, func() bool {
		return c.show("tokend.service", "StatusText")["StatusText"] == "1 of 1 grants hold a valid token"
	})

	// --- Readers and the others, through /run/tokend/tokend.sock.
	if _, errOut, code := c.as("e2e-other", "tokend", "token", "demo"); code != 4 || !strings.Contains(errOut, "not allowed") {
		t.Errorf("a non-reader in the socket's group: exit %d, stderr %q; want 4, not allowed", code, errOut)
	}
	if _, errOut, code := c.as("nobody", "tokend", "token", "demo"); code != 4 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("a user outside the socket's group: exit %d, stderr %q; want 4, permission denied", code, errOut)
	}
	// A reader, allowed on the socket, gets at no secret of the service.
	for _, argv := range [][]string{{"ls", "/etc/tokend"}, {"cat", "/etc/tokend/store.key"}, {"cat", "/etc/tokend/client.secret"}, {"cat", "/etc/tokend/config.yaml"}} {
		if out, _, code := c.as("e2e-reader", argv...); code == 0 {
			t.Errorf("the reader could %q (%d bytes)", argv, len(out))
		}
	}

	// --- A refresh: the provider's tokens live 20 s.
	status := func() grantStatus {
		t.Helper()
		out, errOut, code := c.as("root", "tokend", "status", "demo", "--json")
		if code != 0 {
			t.Fatalf("tokend status: exit %d: %s", code, errOut)
		}
		var s grantStatus
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("tokend status --json: %v\n%s", err, out)
		}
		return s
	}
	waitFor(t, "a refresh of demo", 60*time.Second, func() bool { return status().Generation >= 2 })

	// --- The file sink, written under the unit's sandbox and seccomp
	// filter (a filtered call would kill tokend with SIGSYS here).
	sinkMatches := func() bool {
		tok, _, code := c.as("e2e-reader", "tokend", "token", "demo")
		file, _, fcode := c.as("e2e-reader", "cat", demoSink)
		return code == 0 && fcode == 0 && file != "" && file == strings.TrimSpace(tok)
	}
	waitFor(t, "the sink holding demo's token, read by a member of the sink directory's group", 60*time.Second, sinkMatches)
	if out, _, code := c.as("nobody", "cat", demoSink); code == 0 {
		t.Errorf("nobody reads the 0640 sink: %q", out)
	}
	if s := status(); len(s.Sinks) != 1 || !s.Sinks[0].OK || s.Sinks[0].Path != demoSink {
		t.Errorf("status of the sink: %+v", s.Sinks)
	}
	if out, _ := c.run("systemctl", "is-active", "tokend.service"); strings.TrimSpace(out) != "active" {
		t.Fatalf("after writing the sink tokend.service is %q", strings.TrimSpace(out))
	}

	// --- Metrics, from inside (the metrics listener is on loopback).
	metrics := c.must("bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(metricsAddr, ":", "/", 1)+
		" && printf 'GET /metrics HTTP/1.0\\r\\nHost: "+metricsAddr+"\\r\\n\\r\\n' >&3 && cat <&3")
	if !strings.Contains(metrics, `tokend_grant_state{grant="demo",state="valid"} 1`) {
		t.Errorf("metrics do not show demo valid:\n%.2000s", metrics)
	}

	// --- systemctl reload: a new grant is fetchable the moment it returns.
	c.write("etc/tokend/config.yaml", grantsYAML("demo", "demo2"), 0o640)
	if out, err := c.run("systemctl", "reload", "tokend.service"); err != nil {
		t.Fatalf("systemctl reload with a new grant: %v\n%s", err, out)
	}
	if tok, errOut, code := c.as("e2e-reader", "tokend", "token", "demo2"); code != 0 || !strings.HasPrefix(tok, "at_") {
		t.Fatalf("demo2 right after systemctl reload: exit %d, stderr %q", code, errOut)
	}
	// A broken file: reload fails, the service keeps serving.
	c.write("etc/tokend/config.yaml", grantsYAML("demo", "demo2")+"  broken: [\n", 0o640)
	if out, err := c.run("systemctl", "reload", "tokend.service"); err == nil {
		t.Fatalf("systemctl reload of a broken file succeeded:\n%s", out)
	}
	if j := c.must("journalctl", "--no-pager", "-u", "tokend.service", "-n", "20"); !strings.Contains(j, "reload refused") {
		t.Errorf("the journal does not show the refused reload:\n%s", j)
	}
	if out, _ := c.run("systemctl", "is-active", "tokend.service"); strings.TrimSpace(out) != "active" {
		t.Fatalf("after a failed reload tokend.service is %q", strings.TrimSpace(out))
	}
	if _, errOut, code := c.as("e2e-reader", "tokend", "token", "demo2"); code != 0 {
		t.Fatalf("demo2 after a failed reload: exit %d, stderr %q", code, errOut)
	}
	c.write("etc/tokend/config.yaml", grantsYAML("demo", "demo2"), 0o640)
	waitFor(t, "STATUS= counting both grants", 30*time.Second, func() bool {
		return c.show("tokend.service", "StatusText")["StatusText"] == "2 of 2 grants hold a valid token"
	})

	// --- The watchdog: a stopped main process is killed with SIGQUIT (a
	// short dump) and restarted, and the stored tokens survive.
	before := status()
	svc := c.show("tokend.service", "MainPID", "NRestarts", "WatchdogUSec")
	stopped := time.Now()
	since := fmt.Sprintf("--since=@%d", stopped.Unix()-1)
	c.must("kill", "-STOP", svc["MainPID"])
	waitFor(t, "the watchdog restarting tokend", 2*time.Minute, func() bool {
		now := c.show("tokend.service", "MainPID", "ActiveState")
		return now["MainPID"] != svc["MainPID"] && now["MainPID"] != "0" && now["ActiveState"] == "active"
	})
	restart := time.Since(stopped)
	after := c.show("tokend.service", "NRestarts", "Result")
	if n, _ := strconv.Atoi(after["NRestarts"]); strconv.Itoa(n) == svc["NRestarts"] {
		t.Errorf("NRestarts did not grow: %v → %v", svc["NRestarts"], after["NRestarts"])
	}
	j := c.must("journalctl", "--no-pager", since, "-u", "tokend.service")
	if !strings.Contains(j, "Watchdog timeout") {
		t.Errorf("no watchdog timeout in the journal:\n%s", j)
	}
	dump := c.must("journalctl", "--no-pager", "-o", "cat", since, "_PID="+svc["MainPID"])
	if i := strings.Index(dump, "tokend: SIGQUIT"); i < 0 {
		t.Errorf("no short dump from the stopped process:\n%s", dump)
	} else {
		dump = dump[i:]
		if !strings.Contains(dump, "runScheduler") {
			t.Errorf("the dump does not show the scheduler's loop:\n%s", dump)
		}
		t.Logf("watchdog (WatchdogSec=%s): restarted %.1f s after SIGSTOP; dump %d lines, %d bytes",
			svc["WatchdogUSec"], restart.Seconds(), strings.Count(dump, "\n"), len(dump))
	}
	if now := status(); now.Generation < before.Generation {
		t.Errorf("after the restart demo is at generation %d, was %d: the stored token was lost", now.Generation, before.Generation)
	}
	if _, errOut, code := c.as("e2e-reader", "tokend", "token", "demo"); code != 0 {
		t.Fatalf("fetch after the watchdog restart: exit %d, stderr %q", code, errOut)
	}

	// --- Socket activation survives systemctl stop tokend.service.
	c.must("systemctl", "stop", "tokend.service")
	if out, _ := c.run("systemctl", "is-active", "tokend.socket"); strings.TrimSpace(out) != "active" {
		t.Fatalf("tokend.socket is %q after stopping the service", strings.TrimSpace(out))
	}
	if _, errOut, code := c.as("e2e-reader", "tokend", "token", "demo"); code != 0 {
		t.Fatalf("fetch after systemctl stop tokend.service: exit %d, stderr %q", code, errOut)
	}
	if out, _ := c.run("systemctl", "is-active", "tokend.service"); strings.TrimSpace(out) != "active" {
		t.Fatalf("the fetch did not start tokend.service again: %q", strings.TrimSpace(out))
	}

	// --- An upgrade (the same package again) keeps the mode of a
	// /etc/tokend the operator tightened, keeps the units the operator
	// enabled enabled, and restarts a running tokend.
	c.must("systemctl", "enable", "tokend.service")
	c.must("chmod", "0710", "/etc/tokend")
	// The postinst restarts through deb-systemd-invoke, which asks
	// policy-rc.d first: a host's (a container image's "exit 101") would
	// forbid it. The container's copy goes; the host's file stays.
	c.must("rm", "-f", "/usr/sbin/policy-rc.d")
	pidBefore := c.show("tokend.service", "MainPID")["MainPID"]
	c.must("dpkg", "-i", "/srv/e2e/tokend.deb")
	if st := c.show("tokend.service", "MainPID", "ActiveState"); st["ActiveState"] != "active" || st["MainPID"] == pidBefore || pidBefore == "0" {
		t.Errorf("the upgrade did not restart the running tokend: MainPID %s before, %v after", pidBefore, st)
	}
	for _, u := range []string{"tokend.service", "tokend.socket"} {
		if out, _ := c.run("systemctl", "is-enabled", u); strings.TrimSpace(out) != "enabled" {
			t.Errorf("%s after the upgrade: is-enabled %q, want enabled", u, strings.TrimSpace(out))
		}
	}
	if got := strings.TrimSpace(c.must("stat", "-c", "%a %U %G", "/etc/tokend")); got != "710 root tokend" {
		t.Errorf("/etc/tokend after the upgrade: %s, want 710 root tokend", got)
	}
	if _, errOut, code := c.as("e2e-reader", "tokend", "token", "demo"); code != 0 {
		t.Fatalf("fetch after the upgrade: exit %d, stderr %q", code, errOut)
	}

	// --- Live exposure.
	out = c.must("systemd-analyze", "security", "--no-pager", "tokend.service")
	m := regexp.MustCompile(`Overall exposure level for tokend\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure in:\n%s", out)
	}
	exposure, _ := strconv.ParseFloat(m[1], 64)
	t.Logf("live systemd-analyze security tokend.service: %.1f", exposure)
	if exposure > maxExposure {
		t.Errorf("exposure %.1f > %.1f", exposure, maxExposure)
	}

	// --- Stop, and no SIGSYS at any point: the filter let everything
	// tokend did through.
	c.must("systemctl", "stop", "tokend.socket", "tokend.service")
	if st := c.show("tokend.service", "Result", "ExecMainStatus", "ExecMainCode"); st["Result"] != "success" {
		t.Errorf("stop: %v", st)
	}
	if j := c.must("journalctl", "--no-pager", "-u", "tokend.service"); strings.Contains(j, "31/SYS") || strings.Contains(j, "SIGSYS") {
		t.Errorf("tokend was killed by the seccomp filter:\n%s", j)
	}

	// --- dpkg -r keeps the configuration and the store; purge does not.
	c.must("dpkg", "-r", "tokend")
	for _, p := range []string{"/etc/tokend/config.yaml", "/etc/tokend/store.key", "/var/lib/tokend/tokend.db"} {
		if _, err := c.run("test", "-e", p); err != nil {
			t.Errorf("dpkg -r removed %s", p)
		}
	}
	if _, err := c.run("test", "-e", "/usr/bin/tokend"); err == nil {
		t.Error("dpkg -r left /usr/bin/tokend")
	}
	c.must("dpkg", "--purge", "tokend")
	for _, p := range []string{"/etc/tokend", "/var/lib/tokend",
		"/etc/systemd/system/multi-user.target.wants/tokend.service",
		"/etc/systemd/system/sockets.target.wants/tokend.socket"} {
		if _, err := c.run("test", "-e", p); err == nil {
			t.Errorf("dpkg --purge left %s", p)
		}
	}
}
