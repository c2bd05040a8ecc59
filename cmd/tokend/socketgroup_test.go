package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/config"
)

// TestPassedSocketWarning: a passed socket whose group is not
// listen.socket_group — tokend's own group, as when RuntimeDirectory=
// chowned it, or a SocketGroup= drop-in — is reported at start.
func TestPassedSocketWarning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("gives the socket to another group: needs root")
	}
	const clients, self, other = 4242, 4243, 4244
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg, _, err := config.Parse([]byte("listen: {socket_group: \"4242\"}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		gid  int
		mode os.FileMode
		want string
	}{
		{clients, 0o660, ""},
		{other, 0o600, ""},
		{self, 0o660, "belongs to tokend's own group (gid 4243), which may read /etc/tokend"},
		{other, 0o660, "lets gid 4244 connect, but listen.socket_group is \"4242\" (gid 4242)"},
	} {
		if err := os.Chown(path, 0, tt.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		got := passedSocketWarning(l, cfg, self)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("socket gid %d mode %04o: warning %q, want %q", tt.gid, tt.mode, got, tt.want)
		}
	}
}
