package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigRefusesSecretsReadersCanRead: check-config exits 1 (it
// does not merely warn) for a client secret of mode 0640 whose group is
// the socket's — every program allowed to fetch a token could read it —
// and for a store key of mode 0644, whether named in store.key_file or the
// file tokend.service passes as the credential tokend.key.
func TestCheckConfigRefusesSecretsReadersCanRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("gives a file to another group: needs root")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	const socketGID = 4242
	dir := t.TempDir()
	key := filepath.Join(dir, "store.key")
	// The command the example once documented, under root's umask 022.
	writeWithMode(t, key, strings.Repeat("ab", 32)+"\n", 0o644)
	old := unitStoreKey
	unitStoreKey = filepath.Join(dir, "unit-store.key") // absent unless a case writes it
	t.Cleanup(func() { unitStoreKey = old })

	for _, tt := range []struct {
		name    string
		yml     string
		prepare func(t *testing.T, secret string)
		want    string
	}{
		{"secret of the socket group", goodConfig + "listen: {socket_group: \"4242\"}\n", func(t *testing.T, secret string) {
			if err := os.Chown(secret, 0, socketGID); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(secret, 0o640); err != nil {
				t.Fatal(err)
			}
		}, "is readable by group gid 4242 (mode 0640), the group that may connect to the socket"},
		{"store.key_file of mode 0644", strings.Replace(goodConfig, "  path: STORE\n", "  path: STORE\n  key_file: "+key+"\n", 1), nil, "store.key_file: " + key + " is readable by every user (mode 0644)"},
		{"the unit's key of mode 0644", goodConfig, func(t *testing.T, _ string) {
			writeWithMode(t, unitStoreKey, strings.Repeat("ab", 32)+"\n", 0o644)
			t.Cleanup(func() { os.Remove(unitStoreKey) })
		}, unitStoreKey + " is readable by every user (mode 0644)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := t.TempDir()
			path := writeConfig(t, sub, tt.yml)
			if tt.prepare != nil {
				tt.prepare(t, filepath.Join(sub, "app.secret"))
			}
			tc := newTestCLI()
			if code := tc.run("check-config", path); code != exitError {
				t.Errorf("exit %d, want %d; stdout %q, stderr %q", code, exitError, tc.out.String(), tc.errOut.String())
			}
			if msg := tc.errOut.String(); !strings.Contains(msg, tt.want) || strings.HasPrefix(msg, "warning:") {
				t.Errorf("stderr %q lacks the refusal %q", msg, tt.want)
			}
			if strings.Contains(tc.out.String(), ": OK") {
				t.Error("says OK")
			}
			if strings.Contains(tc.out.String()+tc.errOut.String(), "s3cr3t") {
				t.Error("the secret is in the output")
			}
		})
	}
}

// writeWithMode writes data to path and gives it exactly mode: the process's
// umask is not the test's to assume (serve and dev set 077 on the process
// they run in, and a test that runs them in process leaves it so).
func writeWithMode(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
