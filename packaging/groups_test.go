package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokend/tokend/config"
)

// installedRoot applies the package's sysusers.d and tmpfiles.d snippets,
// at the paths nfpm.yaml installs them, to a scratch root traversable by
// every user (as / is), as the postinst does. It returns the root and the
// ids systemd-sysusers gave there.
func installedRoot(t *testing.T) (root string, ids map[string]int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("systemd-tmpfiles sets owners and the reader is another uid: needs root")
	}
	for _, tool := range []string{"systemd-sysusers", "systemd-tmpfiles"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (Debian's systemd package)", tool)
		}
	}
	root, err := os.MkdirTemp("", "tokend-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	nfpm, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	entries := regexp.MustCompile(`(?m)^\s*- src: "?([^"\n]+)"?\n\s*dst: (\S+)$`).FindAllStringSubmatch(string(nfpm), -1)
	shipped := map[string]string{}
	for _, e := range entries {
		if strings.HasPrefix(e[2], "/usr/lib/sysusers.d/") || strings.HasPrefix(e[2], "/usr/lib/tmpfiles.d/") {
			shipped[e[2]] = e[1]
		}
	}
	if len(shipped) != 2 {
		t.Fatalf("nfpm.yaml ships %d sysusers.d/tmpfiles.d snippets, want 2: %v", len(shipped), shipped)
	}
	for dst, src := range shipped {
		b, err := os.ReadFile(filepath.Join("..", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The postinst's two commands, against the scratch root.
	if out, err := exec.Command("systemd-sysusers", "--root="+root).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	runTmpfiles(t, root)

	ids = map[string]int{}
	for _, db := range []struct{ file, prefix string }{{"etc/passwd", "u:"}, {"etc/group", "g:"}} {
		b, err := os.ReadFile(filepath.Join(root, db.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 3 {
				continue
			}
			if id, err := strconv.Atoi(f[2]); err == nil {
				ids[db.prefix+f[0]] = id
			}
		}
	}
	return root, ids
}

func runTmpfiles(t *testing.T, root string) {
	t.Helper()
	if out, err := exec.Command("systemd-tmpfiles", "--root="+root, "--create").CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles: %v\n%s", err, out)
	}
}

// socketGroup is SocketGroup= of the shipped tokend.socket.
func socketGroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../systemd/tokend.socket")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^SocketGroup=(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("tokend.socket sets no SocketGroup=")
	}
	return string(m[1])
}

// readmeSteps is the README's block of commands that creates the store
// key and a client secret and lets a reader in.
func readmeSteps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(block[1], "/dev/urandom > /etc/tokend/store.key") {
			continue
		}
		var lines []string
		for _, l := range strings.Split(block[1], "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines = append(lines, l)
			}
		}
		return lines
	}
	t.Fatal("README has no sh block creating /etc/tokend/store.key")
	return nil
}

// TestReaderCannotReadSecrets performs the reader's attack on an install
// made by the shipped snippets and the README's steps: a program allowed
// to fetch tokens — a real uid whose only group is the one that may
// connect to the socket — tries to list /etc/tokend and to read the store
// key and the client secrets, including a secret given the obvious 0640
// root:tokend and a key made without a umask (0644). None of it may work.
func TestReaderCannotReadSecrets(t *testing.T) {
	root, ids := installedRoot(t)
	group := socketGroup(t)
	if group != config.DefaultSocketGroup {
		t.Errorf("tokend.socket's SocketGroup=%s, the configuration's default socket group %s: they must agree", group, config.DefaultSocketGroup)
	}
	clientsGID, ok := ids["g:"+group]
	if !ok {
		t.Fatalf("the socket's group %s is not created by the sysusers.d snippet", group)
	}
	uid, gid := ids["u:tokend"], ids["g:tokend"]
	if gid == clientsGID {
		t.Errorf("the socket's group is tokend's own group (gid %d), which reads /etc/tokend", gid)
	}

	// The README's steps, with /etc/tokend in the scratch root and the
	// names replaced by the ids sysusers gave there.
	var script []string
	member := false
	for _, l := range readmeSteps(t) {
		if m := regexp.MustCompile(`^usermod -aG (\S+) \S+`).FindStringSubmatch(l); m != nil {
			if m[1] != group {
				t.Errorf("README adds readers to %s; the socket's group is %s", m[1], group)
			}
			member = true
			continue // the reader below gets the group as a credential
		}
		l = strings.ReplaceAll(l, "/etc/tokend/", root+"/etc/tokend/")
		l = strings.ReplaceAll(l, "-o tokend", "-o "+strconv.Itoa(uid))
		l = strings.ReplaceAll(l, "-g tokend", "-g "+strconv.Itoa(gid))
		script = append(script, l)
	}
	if !member {
		t.Error("README's steps do not say how a reader joins the socket's group")
	}
	// What an operator may do besides: the example's former key command
	// under root's umask, and a secret given to tokend's group.
	script = append(script,
		"umask 022",
		"head -c 32 /dev/urandom | base64 > "+root+"/etc/tokend/store-0644.key",
		"install -m 0640 -g "+strconv.Itoa(gid)+" /dev/null "+root+"/etc/tokend/group.secret",
		"printf '%s' \"$CLIENT_SECRET\" > "+root+"/etc/tokend/group.secret",
	)
	cmd := exec.Command("sh", "-ec", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), "CLIENT_SECRET=very-secret-value-42")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README's steps: %v\n%s\n%s", err, strings.Join(script, "\n"), out)
	}
	secrets := []string{"store.key", "corp-app.secret", "store-0644.key", "group.secret"}
	for _, name := range secrets[:2] {
		fi, err := os.Stat(filepath.Join(root, "etc/tokend", name))
		if err != nil {
			t.Fatalf("the README's steps did not create %s: %v", name, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("the README's steps create %s with mode %04o", name, fi.Mode().Perm())
		}
	}
	// tokend itself reads the client secret.
	if out, err := asUser(uint32(uid), uint32(gid), nil, "cat", filepath.Join(root, "etc/tokend/corp-app.secret")); err != nil || out != "very-secret-value-42" {
		t.Errorf("tokend's user cannot read the client secret the README makes: %v (%d bytes)", err, len(out))
	}

	// The reader: a uid of its own, member of the socket's group only.
	const readerUID = 61001
	try := []struct {
		what string
		argv []string
	}{{"list /etc/tokend", []string{"ls", filepath.Join(root, "etc/tokend")}}}
	for _, name := range secrets {
		try = append(try, struct {
			what string
			argv []string
		}{"read " + name, []string{"cat", filepath.Join(root, "etc/tokend", name)}})
	}
	for _, tt := range try {
		out, err := asUser(readerUID, readerUID, []uint32{uint32(clientsGID)}, tt.argv[0], tt.argv[1:]...)
		if err == nil {
			t.Errorf("a member of %s could %s (%d bytes)", group, tt.what, len(out))
		} else if !strings.Contains(out, "Permission denied") {
			t.Errorf("%s as a member of %s: %v %q, want Permission denied", tt.what, group, err, out)
		}
	}
}

// TestUpgradeKeepsTightenedConfigDirectory: an operator tightens
// /etc/tokend; the postinst of an upgrade, and every boot, run
// systemd-tmpfiles --create again; the directory keeps its mode.
func TestUpgradeKeepsTightenedConfigDirectory(t *testing.T) {
	root, ids := installedRoot(t)
	dir := filepath.Join(root, "etc/tokend")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o750 || st.Uid != 0 || int(st.Gid) != ids["g:tokend"] {
		t.Fatalf("/etc/tokend created %04o %d:%d, want 0750 root:tokend", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	if err := os.Chmod(dir, 0o710); err != nil {
		t.Fatal(err)
	}
	runTmpfiles(t, root)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o710 {
		t.Errorf("after systemd-tmpfiles --create, the tightened /etc/tokend is %v (%v), want 0710", fi.Mode().Perm(), err)
	}
	// The postinst runs exactly that command on the shipped snippet.
	b, err := os.ReadFile("deb/postinst")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "systemd-tmpfiles --create /usr/lib/tmpfiles.d/tokend.conf") {
		t.Error("postinst no longer runs systemd-tmpfiles --create on the snippet: this test does not cover what it runs")
	}
}

// asUser runs a command as uid:gid with the supplementary groups, and
// returns its combined output.
func asUser(uid, gid uint32, groups []uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	if groups == nil {
		groups = []uint32{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
