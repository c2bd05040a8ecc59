// Package packaging holds the Debian package's nfpm configuration and
// maintainer scripts (`make deb`). Its test checks them statically;
// e2e/systemd installs the built package under a real systemd.
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every file the package ships exists in the repository, and the binary
// is the one `make deb` fills in.
func TestContentsExist(t *testing.T) {
	b, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srcs := regexp.MustCompile(`(?m)^\s*- src: "?([^"\n]+)"?$`).FindAllStringSubmatch(string(b), -1)
	if len(srcs) < 8 {
		t.Fatalf("only %d files in nfpm.yaml", len(srcs))
	}
	sawBin := false
	for _, m := range srcs {
		if m[1] == "@BIN@" {
			sawBin = true
			continue
		}
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("nfpm.yaml ships %s: %v", m[1], err)
		}
	}
	if !sawBin {
		t.Error("nfpm.yaml does not ship the binary @BIN@ that make deb fills in")
	}
}

// The maintainer scripts are valid sh, and enable or start nothing: the
// operator does, once the configuration and the store key exist.
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
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "#") {
				continue
			}
			if regexp.MustCompile(`systemctl (enable|start|restart|reenable)\b`).MatchString(l) {
				t.Errorf("%s: %q enables or starts a unit", path, l)
			}
		}
	}
}
