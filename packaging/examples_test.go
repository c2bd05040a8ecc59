package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildTokend builds the tokend binary into a temporary directory.
func buildTokend(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tokend")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/tokend")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// checkConfig runs `tokend check-config ARGS…` outside systemd and returns
// its exit error and output.
func checkConfig(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, append([]string{"check-config"}, args...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDENTIALS_DIRECTORY=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The minimal examples the package installs pass `tokend check-config` as
// they are: with --skip-secrets untouched, and in full once the secret
// files they name exist (created 0600 in a scratch directory that stands
// in for /etc/tokend), with no warning. The users and groups they name
// (www-data, users) exist on every Debian system.
func TestExamplesPassCheckConfig(t *testing.T) {
	bin := buildTokend(t)
	examples, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(examples) < 2 {
		t.Fatalf("examples/*.yaml: %d files, %v", len(examples), err)
	}
	secretRef := regexp.MustCompile(`(?m)^\s*\w+_file: (/etc/tokend/\S+)`)
	for _, ex := range examples {
		t.Run(filepath.Base(ex), func(t *testing.T) {
			out, err := checkConfig(bin, "--skip-secrets", ex)
			if err != nil || strings.Contains(out, "warning:") {
				t.Fatalf("check-config --skip-secrets %s: %v\n%s", ex, err, out)
			}

			b, err := os.ReadFile(ex)
			if err != nil {
				t.Fatal(err)
			}
			etc := t.TempDir()
			refs := secretRef.FindAllStringSubmatch(string(b), -1)
			if len(refs) == 0 {
				t.Fatalf("%s names no secret file", ex)
			}
			for _, m := range refs {
				p := filepath.Join(etc, strings.TrimPrefix(m[1], "/etc/tokend/"))
				if err := os.WriteFile(p, []byte("s3cret-from-the-provider"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := filepath.Join(etc, "config.yaml")
			if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "/etc/tokend/", etc+"/")), 0o640); err != nil {
				t.Fatal(err)
			}
			out, err = checkConfig(bin, cfg)
			if err != nil || strings.Contains(out, "warning:") || !strings.Contains(out, cfg+": OK") {
				t.Fatalf("check-config %s (%s with its secret files): %v\n%s", cfg, ex, err, out)
			}
		})
	}
}

// The annotated reference says at its top that it is the reference, not a
// configuration to use as it is, and where the working examples are.
func TestReferenceMarked(t *testing.T) {
	b, err := os.ReadFile("../tokend.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	head := string(b)
	if i := strings.Index(head, "\n\n"); i > 0 {
		head = head[:i]
	}
	for _, want := range []string{"REFERENCE", "examples/", "/usr/share/doc/tokend/examples/"} {
		if !strings.Contains(head, want) {
			t.Errorf("the first paragraph of tokend.example.yaml does not say %q:\n%s", want, head)
		}
	}
}

// With no configuration file, check-config says where the examples are.
func TestCheckConfigWithoutFilePointsAtExamples(t *testing.T) {
	bin := buildTokend(t)
	missing := filepath.Join(t.TempDir(), "config.yaml")
	out, err := checkConfig(bin, "--config", missing)
	if err == nil {
		t.Fatalf("check-config of a missing file succeeded:\n%s", out)
	}
	if !strings.Contains(out, "/usr/share/doc/tokend/examples/") {
		t.Errorf("check-config of a missing file does not point at the examples:\n%s", out)
	}
}
