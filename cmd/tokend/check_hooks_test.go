package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check-config explains hooks and refuses a webhook over http to a
// non-loopback host.
func TestCheckConfigHooks(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	hookSecret := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(hookSecret, []byte("hook-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hooks := "hooks:\n" +
		"  - {events: [refreshed], command: [systemctl, reload, nginx]}\n" +
		"  - {name: alerts, events: [failing, reauthorization_required], url: \"URL\", secret_file: " + hookSecret + "}\n"

	path := writeConfig(t, dir, goodConfig+strings.Replace(hooks, "URL", "http://127.0.0.1:9000/hook", 1))
	tc := newTestCLI()
	if code := tc.run("check-config", path); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	for _, want := range []string{"hooks (2):", "hook0: on refreshed of every grant; timeout 10s", "alerts: on failing, reauthorization_required", "signed with HMAC-SHA256"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, tc.out.String())
		}
	}
	if strings.Contains(tc.out.String(), "hook-s3cret") {
		t.Error("the hook secret is printed")
	}

	bad := writeConfig(t, t.TempDir(), goodConfig+strings.Replace(hooks, "URL", "http://hooks.example.com/hook", 1))
	tc = newTestCLI()
	if code := tc.run("check-config", bad); code != exitError ||
		!strings.Contains(tc.errOut.String(), `hooks[1].url: "http://hooks.example.com/hook" uses http to a non-loopback host: use https`) {
		t.Errorf("http webhook: exit %d, %s", code, tc.errOut.String())
	}
}
