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
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/systemd"
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

// readSecret reads a secret from a file (refused when readers of tokens
// could read it, see secretModeOK)
// or from a systemd credential. Messages name the key and the file, never
// the contents.
func readSecret(p *problems, key, file, credential string) (string, bool) {
	path := file
	if file == "" {
		cp, ok := systemd.Credential(credential)
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
	if file != "" && !p.secretModeOK(key, path, fi) {
		return "", false
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

// secretModeOK checks who besides its owner may read a secret file (the
// store key, a client secret, a password, a private key). Readable by every
// user, or by the group that may connect to the socket (the readers of
// tokens), is an error: a reader would get the client's secret, and with it
// any token of that client whatever the grants' readers. Readable by some
// other group (tokend's own, ssl-cert) is a warning. It reports whether
// the file may be used.
func (p *problems) secretModeOK(key, path string, fi fs.FileInfo) bool {
	msg, refused := secretExposure(fi, p.socketGID)
	switch {
	case msg == "":
		return true
	case refused:
		p.errorf(key, "%s %s", path, msg)
		return false
	}
	p.warnf(key, "%s %s", path, msg)
	return true
}

// secretExposure says who else may read a secret file of this mode and
// owner, and whether that is refused: readable by others or by socketGID
// (-1: no socket group) is refused, by another group it is warned about.
// The message follows the file's name.
func secretExposure(fi fs.FileInfo, socketGID int) (msg string, refused bool) {
	perm := fi.Mode().Perm()
	gid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = int(st.Gid)
	}
	switch {
	case perm&0o004 != 0:
		return fmt.Sprintf("is readable by every user (mode %04o): chmod 0600 it (create secrets with umask 077 or install -m 0600)", perm), true
	case perm&0o040 != 0 && gid >= 0 && gid == socketGID:
		return fmt.Sprintf("is readable by group %s (mode %04o), the group that may connect to the socket (listen.socket_group): every reader of a token could read it; chmod 0600 it", groupName(gid), perm), true
	case perm&0o077 != 0:
		return fmt.Sprintf("is readable by group or others (mode %04o): chmod 0600 it", perm), false
	}
	return "", false
}

// groupName is a gid's name and number, or the number alone.
func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return fmt.Sprintf("%s (gid %d)", g.Name, gid)
	}
	return "gid " + strconv.Itoa(gid)
}

// CheckSecretFile checks a secret file that Load does not read itself as
// Load checks the ones it reads: the file the shipped unit passes as the
// credential tokend.key, say. It returns a warning, or an error when the
// file is readable by every user or by the group that may connect to the
// socket. The messages name the file, never its contents.
func (c *Config) CheckSecretFile(path string) (warning string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	gid, gerr := c.Listen.SocketGID()
	if gerr != nil {
		gid = -1
	}
	msg, refused := secretExposure(fi, gid)
	switch {
	case msg == "":
		return "", nil
	case refused:
		return "", fmt.Errorf("config: %s %s", path, msg)
	}
	return path + " " + msg, nil
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
// clientauth.go and extgrants.go.
func (c *Config) resolveSecrets(p *problems) {
	p.socketGID = -1
	if gid, err := c.Listen.SocketGID(); err == nil {
		p.socketGID = gid
	}
	keyPath, keyKey := c.Store.KeyFile, "store.key_file"
	if keyPath == "" {
		if cp, ok := systemd.Credential(StoreKeyCredential); ok {
			keyPath, keyKey = cp, "store (credential "+StoreKeyCredential+")"
		}
	}
	if keyPath != "" && len(c.Store.Key) == 0 && filepath.IsAbs(keyPath) {
		if fi, err := os.Stat(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else if data, err := os.ReadFile(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else {
			ok := c.Store.KeyFile == "" || p.secretModeOK(keyKey, keyPath, fi)
			key, err := parseKey(data)
			switch {
			case !ok:
			case err != nil:
				p.errorf(keyKey, "%s: %v", keyPath, err)
			default:
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
	c.resolveIdentityAssertions(p)
	c.resolveFleetSecrets(p)
}
