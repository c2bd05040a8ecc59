package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// check-config refuses a store file another user could have planted in a
// shared directory, as serve does: it must never say OK to what serve
// refuses.

func TestCheckConfigRefusesSharedStoreDirectory(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	path := writeConfig(t, dir, goodConfig)
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check-config", path}, {"check-config", path, "--skip-secrets"}} {
		tc := newTestCLI()
		if code := tc.run(args...); code != exitError {
			t.Errorf("%q: exit %d, want %d; stdout %q", args, code, exitError, tc.out.String())
		}
		if msg := tc.errOut.String(); !strings.Contains(msg, "store: directory "+dir) || !strings.Contains(msg, "1777") {
			t.Errorf("%q: stderr does not name the directory and its mode: %q", args, msg)
		}
		if strings.Contains(tc.out.String(), ": OK") {
			t.Errorf("%q: says OK", args)
		}
	}
}

func TestCheckConfigRefusesStoreOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another uid needs root")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	path := writeConfig(t, dir, goodConfig)
	db := filepath.Join(dir, "tokend.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(db, 65533, 65533); err != nil {
		t.Fatal(err)
	}
	tc := newTestCLI()
	if code := tc.run("check-config", path); code != exitError {
		t.Errorf("exit %d, want %d; stdout %q", code, exitError, tc.out.String())
	}
	if msg := tc.errOut.String(); !strings.Contains(msg, "store: "+db+" is owned by uid 65533, not by tokend (uid 0)") {
		t.Errorf("stderr does not name the file and its owner: %q", msg)
	}
}

// TestCheckConfigStoreOfServiceUser: root checking the usual layout (the
// service user owns the state directory and the file) is not refused.
// "nobody" stands in for the service user "tokend".
func TestCheckConfigStoreOfServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another uid needs root")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody on this host")
	}
	uid, _ := strconv.Atoi(u.Uid)
	if uid == 0 || uid == 65533 {
		t.Skipf("user nobody has uid %d", uid)
	}
	defer func(old string) { serviceUser = old }(serviceUser)
	serviceUser = "nobody"
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	base := t.TempDir()
	path := writeConfig(t, base, goodConfig)
	// The store in its own directory, as StateDirectory= makes it.
	state := filepath.Join(base, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(cfg), filepath.Join(base, "tokend.db"), filepath.Join(state, "tokend.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(state, "tokend.db")
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, db} {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	tc := newTestCLI()
	if code := tc.run("check-config", path); code != exitOK {
		t.Fatalf("exit %d: %s", code, tc.errOut.String())
	}
	if out := tc.out.String(); !strings.Contains(out, "belongs to user nobody (uid "+u.Uid+"): tokend must run as that user") || !strings.Contains(out, ": OK") {
		t.Errorf("stdout does not say who tokend must run as:\n%s", out)
	}

	// Another user's file in the service user's directory is refused.
	if err := os.Chown(db, 65533, 65533); err != nil {
		t.Fatal(err)
	}
	tc = newTestCLI()
	if code := tc.run("check-config", path); code != exitError || !strings.Contains(tc.errOut.String(), db+" is owned by uid 65533") {
		t.Errorf("exit %d, stderr %q", code, tc.errOut.String())
	}
}
