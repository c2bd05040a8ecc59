package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// exampleAccounts knows every user and group tokend.example.yaml names.
func exampleAccounts() accounts {
	return baseAccounts().with(
		map[string]string{"tokend": "990", "reports": "1200", "deploy": "1300"},
		map[string]string{"tokend": "990", "tokend-admin": "991", "monitoring": "992", "tokend-clients": "993"},
	)
}

// writeExample writes tokend.example.yaml into dir with its paths moved
// there, and the secret files it names, and returns its path.
func writeExample(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("../tokend.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"store.key":       hex.EncodeToString(bytes.Repeat([]byte{7}, 32)) + "\n",
		"corp-app.secret": "s3cret-client\n",
		"svc-batch.pass":  "pa55-word\r\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := strings.ReplaceAll(string(data), "/etc/tokend/", dir+"/")
	if strings.Contains(out, "/etc/tokend/") {
		t.Fatal("a path was not replaced")
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigExampleSecrets(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	c, _, err := exampleAccounts().loader().Load(writeExample(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(c.Store.Key); got != strings.Repeat("07", 32) {
		t.Errorf("store key = %s", got)
	}
	if got := c.Clients["corp-app"].Secret.Reveal(); got != "s3cret-client" {
		t.Errorf("client secret = %q", got)
	}
	if got := c.Grants["legacy-batch"].Password.Reveal(); got != "pa55-word" {
		t.Errorf("password = %q (trailing newline must be trimmed)", got)
	}
}

func TestConfigSecretFiles(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "app.secret")
	const secret = "very-secret-value-42"
	if err := os.WriteFile(secretPath, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(yml string) string {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withSecret := strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    client_secret_file: "+secretPath, 1)

	t.Run("group-readable warns", func(t *testing.T) {
		chmod(t, secretPath, 0o640)
		defer chmod(t, secretPath, 0o600)
		c, warns, err := testLoader.Load(write(withSecret))
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0], secretPath) || !strings.Contains(warns[0], "mode 0640") ||
			!strings.Contains(warns[0], "clients.app.client_secret_file") || !strings.HasPrefix(warns[0], filepath.Join(dir, "config.yaml")+":9: ") {
			t.Errorf("warnings = %q", warns)
		}
		if c.Clients["app"].Secret.Reveal() != secret || c.Clients["app"].AuthMethod != "client_secret_basic" {
			t.Errorf("client = %+v", c.Clients["app"])
		}
	})

	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.secret")
		yml := strings.Replace(withSecret, secretPath, missing, 1)
		_, _, err := testLoader.Load(write(yml))
		want := "config.yaml:9: clients.app.client_secret_file: cannot read " + missing + ": no such file or directory"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
	})

	t.Run("never in messages", func(t *testing.T) {
		// An invalid config whose secret file is read, as a client secret
		// and as a (bad) key: every message is checked for the secret.
		yml := strings.Replace(withSecret, "authorization_code", "bogus", 1) + "store: {key_file: " + secretPath + "}\n"
		_, warns, err := testLoader.Load(write(yml))
		if err == nil {
			t.Fatal("no error")
		}
		all := err.Error() + strings.Join(warns, "\n")
		if strings.Contains(all, secret) {
			t.Errorf("secret in messages: %s", all)
		}
		if !strings.Contains(err.Error(), "store.key_file: "+secretPath+": a key must be 32 raw bytes") {
			t.Errorf("bad key not reported: %v", err)
		}
	})

	t.Run("empty file", func(t *testing.T) {
		empty := filepath.Join(dir, "empty.secret")
		if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := testLoader.Load(write(strings.Replace(withSecret, secretPath, empty, 1)))
		if err == nil || !strings.Contains(err.Error(), empty+" is empty") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("missing config", func(t *testing.T) {
		_, _, err := Load(filepath.Join(dir, "none.yaml"))
		if err == nil || !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), "no such file") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigCredentials(t *testing.T) {
	creds := t.TempDir()
	key := bytes.Repeat([]byte{9}, 32)
	for name, content := range map[string]string{
		"tokend.key": hex.EncodeToString(key),
		"app.secret": "from-credential",
	} {
		if err := os.WriteFile(filepath.Join(creds, name), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	yml := strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    client_secret_credential: app.secret", 1) +
		"  p:\n    client: app\n    type: password\n    username: svc\n    password_credential: svc.pass\n    readers: {uids: [1000]}\n"
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	_, _, err := testLoader.Load(path)
	if err == nil || !strings.Contains(err.Error(), `clients.app.client_secret_credential: credential "app.secret" not found: $CREDENTIALS_DIRECTORY is not set`) {
		t.Fatalf("without systemd: %v", err)
	}

	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	_, _, err = testLoader.Load(path)
	if got := errLines(err); len(got) != 1 || !strings.Contains(got[0], `config.yaml:19: grants.p.password_credential: credential "svc.pass" not found in $CREDENTIALS_DIRECTORY`) {
		t.Fatalf("missing credential: %v", err)
	}

	if err := os.WriteFile(filepath.Join(creds, "svc.pass"), []byte("pw\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	c, warns, err := testLoader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	if !bytes.Equal(c.Store.Key, key) {
		t.Errorf("store key from the tokend.key credential = %x", c.Store.Key)
	}
	if c.Clients["app"].Secret.Reveal() != "from-credential" || c.Grants["p"].Password.Reveal() != "pw" {
		t.Errorf("secrets not resolved")
	}
	var buf bytes.Buffer
	c.Explain(&buf)
	if !strings.Contains(buf.String(), "sealed with AES-256-GCM, key from the tokend.key credential") {
		t.Errorf("Explain:\n%s", buf.String())
	}
}

func TestParseKey(t *testing.T) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"raw", key},
		{"hex", []byte(hex.EncodeToString(key))},
		{"hex with newline", []byte(hex.EncodeToString(key) + "\n")},
		{"upper hex with spaces", []byte("  " + strings.ToUpper(hex.EncodeToString(key)) + " \r\n")},
		{"base64", []byte(base64.StdEncoding.EncodeToString(key) + "\n")},
		{"base64url", []byte(base64.URLEncoding.EncodeToString(key))},
		{"base64 unpadded", []byte(base64.RawStdEncoding.EncodeToString(key))},
		{"base64url unpadded", []byte(base64.RawURLEncoding.EncodeToString(key) + "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, key) {
				t.Fatal("wrong key")
			}
		})
	}
	// Raw keys are not trimmed: whitespace bytes at the ends are key bytes.
	raw := bytes.Repeat([]byte{' '}, keySize)
	if got, err := ParseKey(raw); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("raw key of spaces: %v", err)
	}

	const material = "zz-top-secret-key-material-zz"
	for _, in := range [][]byte{
		nil,
		[]byte("\n"),
		key[:31],
		append(bytes.Clone(key), 0),
		[]byte(hex.EncodeToString(key)[:63]),
		[]byte(hex.EncodeToString(key)[:62] + "zz"),
		[]byte(base64.StdEncoding.EncodeToString(key[:31])),
		[]byte(base64.StdEncoding.EncodeToString(append(bytes.Clone(key), 1))),
		[]byte(material),
		[]byte(strings.Repeat(material, 3)[:64]),
	} {
		_, err := ParseKey(in)
		if err == nil {
			t.Fatalf("ParseKey(%d bytes) succeeded", len(in))
		}
		if !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
		if s := strings.TrimSpace(string(in)); len(s) > 4 && strings.Contains(err.Error(), s) ||
			strings.Contains(err.Error(), "zz") || strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q echoes the key", err)
		}
	}
}

func chmod(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestSecretReadableByReadersRefused: a secret that the readers of tokens
// could read — every user, or the group that may connect to the socket,
// whether named in listen.socket_group or the tokend-clients default —
// stops the load; one readable by another group (tokend's own) is a
// warning. Every kind of secret file goes through the same rule.
func TestSecretReadableByReadersRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("gives files to another group: needs root")
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	const clientsGID, serviceGID = 4242, 4243
	loader := baseAccounts().with(nil, map[string]string{DefaultSocketGroup: "4242", "tokend": "4243", "readers": "4244"}).loader()
	dir := t.TempDir()
	secret := writeFile(t, dir, "app.secret", "very-secret-value-42\n", 0o600)
	key := writeFile(t, dir, "store.key", strings.Repeat("07", 32)+"\n", 0o600)
	yml := strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    client_secret_file: "+secret, 1) +
		"store: {key_file: " + key + "}\n"
	cfg := filepath.Join(dir, "config.yaml")
	load := func(t *testing.T, extra string) ([]string, error) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(yml+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		_, warns, err := loader.Load(cfg)
		return warns, err
	}
	give := func(t *testing.T, path string, gid int, mode os.FileMode) {
		t.Helper()
		if err := os.Chown(path, 0, gid); err != nil {
			t.Fatal(err)
		}
		chmod(t, path, mode)
		t.Cleanup(func() { _ = os.Chown(path, 0, 0); chmod(t, path, 0o600) })
	}

	for _, tt := range []struct {
		name     string
		file     string
		gid      int
		mode     os.FileMode
		extra    string // appended to the file: listen.socket_group
		refused  string // the error, or "" for a warning
		warnPart string
	}{
		{"key readable by every user", key, 0, 0o644, "", "store.key_file: " + key + " is readable by every user (mode 0644)", ""},
		{"secret readable by every user", secret, 0, 0o604, "", "clients.app.client_secret_file: " + secret + " is readable by every user (mode 0604)", ""},
		{"secret of the default socket group", secret, clientsGID, 0o640, "", "clients.app.client_secret_file: " + secret + " is readable by group gid 4242 (mode 0640), the group that may connect to the socket", ""},
		{"key of the default socket group", key, clientsGID, 0o640, "", "store.key_file: " + key + " is readable by group gid 4242 (mode 0640), the group that may connect to the socket", ""},
		{"secret of a configured socket group", secret, 4244, 0o640, "listen: {socket_group: readers}\n", "is readable by group gid 4244 (mode 0640), the group that may connect to the socket (listen.socket_group)", ""},
		{"secret of tokend's group", secret, serviceGID, 0o640, "", "", "clients.app.client_secret_file: " + secret + " is readable by group or others (mode 0640)"},
		{"default group not the socket's when another is set", secret, clientsGID, 0o640, "listen: {socket_group: readers}\n", "", "is readable by group or others (mode 0640)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			give(t, tt.file, tt.gid, tt.mode)
			warns, err := load(t, tt.extra)
			if tt.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("err = %v\nwant one containing %q", err, tt.refused)
				}
				if strings.Contains(err.Error(), "very-secret") {
					t.Errorf("the secret is in the error: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 1 || !strings.Contains(warns[0], tt.warnPart) {
				t.Errorf("warnings = %q, want one containing %q", warns, tt.warnPart)
			}
		})
	}
}

// A credential name is a file in $CREDENTIALS_DIRECTORY and nothing else:
// "." and ".." (the directory itself and its parent) and a credential that is
// not a regular file are not found, so a configuration cannot make tokend
// read outside the directory systemd filled, or read a directory or FIFO as
// a secret or certificate. ("." and ".." are also refused by validation.)
func TestCredentialOutsideDirectoryOrIrregularRefused(t *testing.T) {
	creds := t.TempDir()
	if err := os.Mkdir(filepath.Join(creds, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "client.key"), []byte("not read"), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	tests := []struct {
		name, keys, want string
	}{
		{"secret ..", "    client_id: tokend\n    client_secret_credential: ..\n",
			`clients.app.client_secret_credential: credential ".." not found in $CREDENTIALS_DIRECTORY`},
		{"secret .", "    client_id: tokend\n    client_secret_credential: .\n",
			`clients.app.client_secret_credential: credential "." not found in $CREDENTIALS_DIRECTORY`},
		{"secret directory", "    client_id: tokend\n    client_secret_credential: subdir\n",
			`clients.app.client_secret_credential: credential "subdir" not found in $CREDENTIALS_DIRECTORY`},
		{"certificate ..", "    client_id: tokend\n    auth_method: tls_client_auth\n    tls_cert_credential: ..\n    tls_key_credential: client.key\n",
			`clients.app.tls_cert_credential: credential ".." not found in $CREDENTIALS_DIRECTORY`},
		{"certificate directory", "    client_id: tokend\n    auth_method: tls_client_auth\n    tls_cert_credential: subdir\n    tls_key_credential: client.key\n",
			`clients.app.tls_cert_credential: credential "subdir" not found in $CREDENTIALS_DIRECTORY`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(withClient(tt.keys)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := testLoader.Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v\nwant the problem %s", err, tt.want)
			}
			for _, line := range errLines(err) {
				if strings.Contains(line, "regular file") || strings.Contains(line, "cannot read") {
					t.Errorf("tokend looked at a file that is no credential: %s", line)
				}
			}
		})
	}
}
