package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfigSinks(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	sinks := func(paths ...string) string {
		s := "    sinks:\n"
		for _, p := range paths {
			s += "      - path: " + p + "\n"
		}
		return s
	}
	cfg := strings.Replace(goodConfig, "  g: {client: app, type: client_credentials, readers: {users: [root]}}\n",
		"  g:\n    client: app\n    type: client_credentials\n    readers: {users: [root]}\n", 1)

	good := writeConfig(t, dir, cfg+sinks(filepath.Join(real, "g.token"), filepath.Join(dir, "new", "g.env")))
	tc := newTestCLI()
	if code := tc.run("check-config", good); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	if strings.Contains(tc.errOut.String(), "sinks[0]") {
		t.Errorf("a warning for a directory only root may write: %q", tc.errOut.String())
	}
	for _, want := range []string{
		"sink:     " + filepath.Join(real, "g.token") + ": the token alone, mode 0600",
		"note: grants.g.sinks[1]: sink directory " + filepath.Join(dir, "new") + " does not exist",
	} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, tc.out.String())
		}
	}

	// A sticky directory others may write (as /tmp): written safely, but
	// another user can take the sink's name first; a warning says so.
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	tc = newTestCLI()
	if code := tc.run("check-config", writeConfig(t, t.TempDir(), cfg+sinks(filepath.Join(shared, "g.token")))); code != 0 ||
		!strings.Contains(tc.errOut.String(), "warning: grants.g.sinks[0].path: "+shared+" is a directory other users may write: any of them can create g.token first") {
		t.Errorf("sink in a shared directory: exit %d, stderr %q", code, tc.errOut.String())
	}

	bad := writeConfig(t, t.TempDir(), cfg+sinks(filepath.Join(dir, "link", "g.token")))
	tc = newTestCLI()
	if code := tc.run("check-config", bad); code != exitError || !strings.Contains(tc.errOut.String(), "grants.g.sinks[0].path: sink directory "+filepath.Join(dir, "link")+": a component of the path is a symbolic link") {
		t.Errorf("symlinked sink directory: exit %d, %s", code, tc.errOut.String())
	}
}

func TestStatusShowsSinks(t *testing.T) {
	st := `{"name":"g","type":"client_credentials","state":"valid","generation":1,
	 "sinks":[{"path":"/run/tokend/sinks/g.token","ok":true,"written_at":"2026-11-23T09:59:00Z","command_exit":3,"command_stderr_tail":"nginx: bad\n"},
	          {"path":"/srv/x/g.token","ok":false,"error":"sink directory /srv/x is owned by uid 1000"}]}`
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/g/status": {{200, st}},
		"GET /v1/tokens":          {{200, `{"grants":[` + st + `]}`}},
	})
	tc := newTestCLI()
	if code := tc.run("status", "g", "--socket", f.socket); code != 0 {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	for _, want := range []string{
		"sink:           /run/tokend/sinks/g.token: written 2026-11-23T09:59:00Z (1m ago); command exit 3, stderr: nginx: bad",
		"sink:           /srv/x/g.token: FAILING: sink directory /srv/x is owned by uid 1000",
	} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, tc.out.String())
		}
	}
	tc = newTestCLI()
	if code := tc.run("status", "--socket", f.socket); code != 0 || !strings.Contains(tc.out.String(), "sink /srv/x/g.token: sink directory /srv/x is owned") {
		t.Errorf("table: exit %d\n%s", code, tc.out.String())
	}
}
