package config

// Secrets the configuration names rather than holds: client secrets and
// passwords in files or systemd credentials, and the store key. Load reads
// them; messages name the key and the file, never the contents.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokend/tokend/oauth"
)

// keySize is the size of a store key in bytes (AES-256; store.KeySize).
const keySize = 32

// ParseKey accepts a key file's contents: 32 raw bytes, 64 hex characters or
// base64 (standard or URL alphabet, padded or not) of 32 bytes. Surrounding
// whitespace is ignored for the textual forms. The error never includes the
// key material. It is safe for concurrent use.
func ParseKey(b []byte) ([]byte, error) {
	k, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return k, nil
}

// parseKey is ParseKey with messages that follow a file name.
func parseKey(b []byte) ([]byte, error) {
	if len(b) == keySize {
		// Raw bytes are taken as they are: trimming could eat key bytes
		// that happen to be whitespace. 32 bytes are never a valid hex or
		// base64 form of a 32-byte key, so there is no ambiguity.
		return bytes.Clone(b), nil
	}
	t := bytes.TrimSpace(b)
	if len(t) == 2*keySize {
		k := make([]byte, keySize)
		if _, err := hex.Decode(k, t); err == nil {
			return k, nil
		}
		// hex's error names the offending character: do not wrap it.
	}
	for _, enc := range []*base64.Encoding{
		base64.StdEncoding, base64.URLEncoding,
		base64.RawStdEncoding, base64.RawURLEncoding,
	} {
		if enc.DecodedLen(len(t)) < keySize || enc.DecodedLen(len(t)) > keySize+2 {
			continue
		}
		k := make([]byte, enc.DecodedLen(len(t)))
		n, err := enc.Decode(k, t)
		if err == nil && n == keySize {
			return k[:n], nil
		}
	}
	if len(t) == 0 {
		return nil, errors.New("the key is empty")
	}
	return nil, fmt.Errorf("a key must be 32 raw bytes, 64 hex characters or base64 of 32 bytes (got %d bytes, not one of those forms)", len(b))
}

// credentialPath returns the path of a systemd credential if it exists.
// (A local copy of systemd.Credential, so loading a config does not depend
// on that package.)
func credentialPath(name string) (string, bool) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || name == "" || strings.ContainsRune(name, '/') {
		return "", false
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", false
	}
	return path, true
}

// readSecret reads a secret from a file (warning when others may read it)
// or from a systemd credential. Messages name the key and the file, never
// the contents.
func readSecret(p *problems, key, file, credential string) (string, bool) {
	path := file
	if file == "" {
		cp, ok := credentialPath(credential)
		if !ok {
			if os.Getenv("CREDENTIALS_DIRECTORY") == "" {
				p.errorf(key, "credential %q not found: $CREDENTIALS_DIRECTORY is not set (pass it with LoadCredential= in the unit)", credential)
			} else {
				p.errorf(key, "credential %q not found in $CREDENTIALS_DIRECTORY", credential)
			}
			return "", false
		}
		path = cp
	}
	fi, err := os.Stat(path)
	if err != nil {
		p.errorf(key, "cannot read %s: %s", path, errText(err))
		return "", false
	}
	if !fi.Mode().IsRegular() {
		p.errorf(key, "%s is not a regular file", path)
		return "", false
	}
	if file != "" && fi.Mode().Perm()&0o077 != 0 {
		p.warnf(key, "%s is readable by group or others (mode %04o): chmod 0600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.errorf(key, "cannot read %s: %s", path, errText(err))
		return "", false
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		p.errorf(key, "%s is empty", path)
		return "", false
	}
	return s, true
}

// errText is the reason of a file error without the path os repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// resolveSecrets fills Store.Key, Client.Secret and Grant.Password from
// files and credentials, and the keys, certificates and CA bundles of
// clientauth.go and grants14.go.
func (c *Config) resolveSecrets(p *problems) {
	keyPath, keyKey := c.Store.KeyFile, "store.key_file"
	if keyPath == "" {
		if cp, ok := credentialPath(StoreKeyCredential); ok {
			keyPath, keyKey = cp, "store (credential "+StoreKeyCredential+")"
		}
	}
	if keyPath != "" && len(c.Store.Key) == 0 && filepath.IsAbs(keyPath) {
		if fi, err := os.Stat(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else if data, err := os.ReadFile(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else {
			if c.Store.KeyFile != "" && fi.Mode().Perm()&0o077 != 0 {
				p.warnf(keyKey, "%s is readable by group or others (mode %04o): chmod 0600 it", keyPath, fi.Mode().Perm())
			}
			key, err := parseKey(data)
			if err != nil {
				p.errorf(keyKey, "%s: %v", keyPath, err)
			} else {
				c.Store.Key = key
			}
		}
	}
	for _, name := range sortedKeys(c.Clients) {
		cl := c.Clients[name]
		if !cl.Secret.IsZero() || (cl.ClientSecretFile == "" && cl.ClientSecretCredential == "") {
			continue
		}
		if cl.ClientSecretFile != "" && !filepath.IsAbs(cl.ClientSecretFile) {
			continue // reported by validate
		}
		key := "clients." + name + ".client_secret_file"
		if cl.ClientSecretFile == "" {
			key = "clients." + name + ".client_secret_credential"
		}
		if s, ok := readSecret(p, key, cl.ClientSecretFile, cl.ClientSecretCredential); ok {
			cl.Secret = oauth.NewSecret(s)
			c.Clients[name] = cl
		}
	}
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		if g.Type != GrantPassword || !g.Password.IsZero() || (g.PasswordFile == "" && g.PasswordCredential == "") {
			continue
		}
		if g.PasswordFile != "" && !filepath.IsAbs(g.PasswordFile) {
			continue
		}
		key := "grants." + name + ".password_file"
		if g.PasswordFile == "" {
			key = "grants." + name + ".password_credential"
		}
		if s, ok := readSecret(p, key, g.PasswordFile, g.PasswordCredential); ok {
			g.Password = oauth.NewSecret(s)
			c.Grants[name] = g
		}
	}
	c.resolveHookSecrets(p)
	c.resolveClientAuth(p)
	c.resolveAssertions(p)
}
