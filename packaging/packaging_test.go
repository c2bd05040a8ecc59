// Package packaging holds the Debian package's nfpm configuration,
// maintainer scripts, copyright, lintian overrides and the scripts giving
// its version and changelog (`make deb`). Its tests check them, build the
// package and let lintian judge it, and run check-config on the examples
// it ships; e2e/systemd installs the built package under a real systemd.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every file the package ships exists in the repository, but for the
// binary, man page and changelog `make deb` stages (@STAGE@).
func TestContentsExist(t *testing.T) {
	b, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srcs := regexp.MustCompile(`(?m)^\s*- src: "?([^"\n]+)"?$`).FindAllStringSubmatch(string(b), -1)
	if len(srcs) < 8 {
		t.Fatalf("only %d files in nfpm.yaml", len(srcs))
	}
	staged := map[string]bool{}
	for _, m := range srcs {
		if f, ok := strings.CutPrefix(m[1], "@STAGE@/"); ok {
			staged[f] = true
			continue
		}
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("nfpm.yaml ships %s: %v", m[1], err)
		}
	}
	for _, f := range []string{"tokend", "tokend.1.gz", "changelog.gz"} {
		if !staged[f] {
			t.Errorf("nfpm.yaml does not ship @STAGE@/%s that make deb stages", f)
		}
	}
}

// The maintainer scripts are valid sh, and enable or start nothing: the
// operator does, once the configuration and the store key exist. They act
// on units as debhelper's scripts do: systemctl only for daemon-reload,
// deb-systemd-invoke (which asks policy-rc.d) to stop and try-restart,
// deb-systemd-helper enable only for a unit that was enabled.
func TestMaintainerScripts(t *testing.T) {
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		path := filepath.Join("deb", name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", path)
		}
		if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", path, err, out)
		}
		b, _ := os.ReadFile(path)
		if i := strings.Index(string(b), "deb-systemd-helper enable"); i >= 0 && !strings.Contains(string(b[:i]), "was-enabled") {
			t.Errorf("%s: deb-systemd-helper enable not under was-enabled", path)
		}
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "#") {
				continue
			}
			if regexp.MustCompile(`systemctl (enable|start|restart|reenable)\b`).MatchString(l) {
				t.Errorf("%s: %q enables or starts a unit", path, l)
			}
			if regexp.MustCompile(`(^|[;&|]\s*)systemctl\b`).MatchString(l) && !strings.Contains(l, "daemon-reload") {
				t.Errorf("%s: %q calls systemctl for more than daemon-reload", path, l)
			}
			if m := regexp.MustCompile(`deb-systemd-invoke (\S+)`).FindStringSubmatch(l); m != nil && m[1] != "stop" && m[1] != "try-restart" {
				t.Errorf("%s: %q: deb-systemd-invoke %s (only stop and try-restart)", path, l, m[1])
			}
		}
	}
}
