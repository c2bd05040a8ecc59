package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// These tests check the files an operator installs: the units with
// systemd-analyze, the sysusers.d and tmpfiles.d snippets with
// systemd-sysusers and systemd-tmpfiles against a scratch root, and the
// Makefile's install target that lays them out. The tools come with
// systemd; where they are missing (a container without systemd) the tests
// skip, except under CI, where they must run.

const maxExposure = 1.5

func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found but CI is set: the CI machine has systemd's tools", name)
		}
		t.Skipf("%s not installed (part of systemd); cannot check the unit files", name)
	}
	return p
}

func TestUnitSecurityExposure(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", "tokend.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for tokend\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tokend.service exposure: %.1f", exposure)
	if exposure > maxExposure {
		t.Errorf("tokend.service exposure %.1f > %.1f; the unsafe settings:\n%s", exposure, maxExposure, unsafeLines(out))
	}
}

func unsafeLines(out []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "✗") {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// TestUnitSettings pins settings that systemd-analyze cannot judge because
// they are about tokend itself.
func TestUnitSettings(t *testing.T) {
	svc := unitSettings(t, "tokend.service")
	sock := unitSettings(t, "tokend.socket")
	for _, tc := range []struct {
		unit map[string][]string
		key  string
		want string
		why  string
	}{
		{svc, "Type", "notify", "tokend calls Ready once it serves"},
		{svc, "NotifyAccess", "main", "only tokend itself may report readiness"},
		{svc, "WatchdogSec", "30s", "the scheduler loop pings the watchdog"},
		{svc, "Sockets", "tokend.socket", "the API socket comes from systemd"},
		{svc, "LoadCredential", "tokend.key:/etc/tokend/store.key", "tokend looks for the credential tokend.key"},
		{svc, "RuntimeDirectoryPreserve", "yes", "stopping the service must not delete the socket tokend.socket owns"},
		{svc, "User", "tokend", "matches tokend.sysusers"},
		{svc, "ExecReload", "/usr/bin/tokend reload --socket /run/tokend/tokend.sock", "systemctl reload waits for the reload and fails with the file's error"},
		{svc, "WatchdogSignal", "SIGQUIT", "tokend catches it and writes a short dump"},
		{sock, "RemoveOnStop", "yes", "a stopped socket unit leaves no stale file"},
		{sock, "ListenStream", "/run/tokend/tokend.sock", "the default socket path of the CLI"},
		{sock, "FileDescriptorName", "api", "the daemon picks its listener by this name"},
		{sock, "SocketMode", "0660", "only the socket's group may connect"},
		{sock, "SocketGroup", "tokend-clients", "matches tokend.sysusers and the config default; not tokend's own group, which reads /etc/tokend"},
	} {
		if got := tc.unit[tc.key]; len(got) == 0 || got[len(got)-1] != tc.want {
			t.Errorf("%s=%v, want %s (%s)", tc.key, got, tc.want, tc.why)
		}
	}
	// PartOf= would stop the socket with the service: the next client
	// would get "connection refused" and nothing would start tokend.
	if v := sock["PartOf"]; len(v) > 0 {
		t.Errorf("tokend.socket has PartOf=%v; stopping the service must leave the socket listening", v)
	}
	// PrivateUsers= would map every peer to "nobody" in SO_PEERCRED and
	// break per-grant authorization.
	if v := svc["PrivateUsers"]; len(v) > 0 && v[len(v)-1] != "no" {
		t.Errorf("PrivateUsers=%v breaks peer credential checks", v)
	}
}

// unitSettings parses the key=value lines of a unit file; repeated keys
// keep every value in order.
func unitSettings(t *testing.T, name string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: malformed line %q", name, line)
			continue
		}
		out[strings.TrimSpace(k)] = append(out[strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return out
}

// TestUnitVerify runs systemd-analyze verify on the units. verify checks
// that ExecStart's binary exists and is executable, and tokend is not
// installed on the test machine, so the test verifies copies whose
// /usr/bin/tokend is replaced by /bin/true; everything else (directives,
// their values, the socket/service pairing, dependencies) is checked as
// written.
func TestUnitVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	dir := t.TempDir()
	svc, err := os.ReadFile("tokend.service")
	if err != nil {
		t.Fatal(err)
	}
	const bin = "ExecStart=/usr/bin/tokend "
	if n := bytes.Count(svc, []byte(bin)); n != 1 {
		t.Fatalf("tokend.service has %d lines starting %q, want 1 (Makefile install rewrites /usr/bin/tokend)", n, bin)
	}
	// ExecReload= runs tokend too.
	svc = bytes.ReplaceAll(svc, []byte("=/usr/bin/tokend "), []byte("=/bin/true "))
	if err := os.WriteFile(filepath.Join(dir, "tokend.service"), svc, 0o644); err != nil {
		t.Fatal(err)
	}
	sock, err := os.ReadFile("tokend.socket")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokend.socket"), sock, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--no-pager",
		filepath.Join(dir, "tokend.service"), filepath.Join(dir, "tokend.socket"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestInstall runs `make install` into a scratch DESTDIR with a stand-in
// binary, then lets systemd-sysusers and systemd-tmpfiles apply the
// installed snippets to that root, as a package's post-install would.
func TestInstall(t *testing.T) {
	makeBin := tool(t, "make")
	dir := t.TempDir()
	fake := filepath.Join(dir, "tokend")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	out, err := exec.Command(makeBin, "-s", "-C", "..", "install",
		"DESTDIR="+root, "PREFIX=/usr", "BIN="+fake).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/bin/tokend":                                        0o755,
		"usr/lib/systemd/system/tokend.service":                 0o644,
		"usr/lib/systemd/system/tokend.socket":                  0o644,
		"usr/lib/sysusers.d/tokend.conf":                        0o644,
		"usr/lib/tmpfiles.d/tokend.conf":                        0o644,
		"etc/tokend/config.yaml.example":                        0o644,
		"usr/share/doc/tokend/examples/reference.yaml":          0o644,
		"usr/share/doc/tokend/examples/client-credentials.yaml": 0o644,
		"usr/share/doc/tokend/examples/authorization-code.yaml": 0o644,
		"usr/share/tokend/prometheus/tokend.rules.yml":          0o644,
		"usr/share/tokend/grafana/tokend-dashboard.json":        0o644,
	} {
		fi, err := os.Stat(filepath.Join(root, path))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/tokend/config.yaml")); err == nil {
		t.Error("make install wrote etc/tokend/config.yaml; it must only ship the example")
	}

	// PREFIX=/usr/local moves ExecStart with the binary.
	local := filepath.Join(dir, "local")
	if out, err := exec.Command(makeBin, "-s", "-C", "..", "install",
		"DESTDIR="+local, "PREFIX=/usr/local", "BIN="+fake).CombinedOutput(); err != nil {
		t.Fatalf("make install PREFIX=/usr/local: %v\n%s", err, out)
	}
	unit, err := os.ReadFile(filepath.Join(local, "usr/local/lib/systemd/system/tokend.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("\nExecStart=/usr/local/bin/tokend serve")) {
		t.Error("PREFIX=/usr/local: ExecStart does not point at /usr/local/bin/tokend")
	}

	// sysusers and tmpfiles against the installed root.
	sysusers := tool(t, "systemd-sysusers")
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+root).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	uid := regexp.MustCompile(`(?m)^tokend:x:(\d+):(\d+):[^:]*:/var/lib/tokend:`).FindSubmatch(passwd)
	if uid == nil {
		t.Fatalf("no tokend user with home /var/lib/tokend in passwd:\n%s", passwd)
	}
	for _, g := range []string{"tokend", "tokend-clients", "tokend-admin"} {
		if !regexp.MustCompile(`(?m)^` + g + `:x:\d+:`).Match(group) {
			t.Errorf("group %s not created:\n%s", g, group)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("systemd-tmpfiles needs root to set owners; the rest passed")
	}
	tmpfiles := tool(t, "systemd-tmpfiles")
	if out, err := exec.Command(tmpfiles, "--root="+root, "--create").CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
	id, _ := strconv.Atoi(string(uid[1]))
	gid, _ := strconv.Atoi(string(uid[2]))
	for _, tc := range []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{"etc/tokend", 0o750, 0, gid},
		{"var/lib/tokend", 0o700, id, gid},
		// Owned by tokend before tokend.socket binds in it: see the
		// snippet.
		{"run/tokend", 0o755, id, gid},
	} {
		fi, err := os.Stat(filepath.Join(root, tc.path))
		if err != nil {
			t.Error(err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != tc.mode || int(st.Uid) != tc.uid || int(st.Gid) != tc.gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", tc.path, fi.Mode().Perm(), st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
		}
	}
}
