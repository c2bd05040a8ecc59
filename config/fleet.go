package config

// Fleet mode (store.backend: etcd): the store's backend, its etcd section
// and the instance's name. Defaults, validation and the secrets and files
// the etcd section names.
//
// Decisions:
//   - An endpoint is an http or https URL with a host and nothing else (no
//     path, query or user info). Plain http is accepted only to a
//     loopback host: the etcd password and every record's metadata would
//     cross the network in clear, and there is no switch to allow it (an
//     etcd elsewhere gets https, with tls.ca_file when its CA is private).
//   - lease_ttl is whole seconds (etcd leases are) and at least 2 s; a
//     refresh request is bounded by half of it in fleet mode (see
//     daemon/fleet.go), so it cannot outlive the lease it was sent under.
//   - Fleet mode needs a store key: etcd must never see a plaintext secret.
//     Load refuses an etcd backend without one.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

// Store backends.
const (
	BackendBbolt = "bbolt"
	BackendEtcd  = "etcd"
)

// Defaults of the etcd section.
const (
	DefaultEtcdPrefix      = "/tokend/"
	DefaultEtcdDialTimeout = 5 * time.Second
	DefaultEtcdLeaseTTL    = 10 * time.Second
	minLeaseTTL            = 2 * time.Second
)

// FleetMode reports whether the store is shared through etcd.
func (s Store) FleetMode() bool { return s.Backend == BackendEtcd }

// applyFleetDefaults fills the store backend and, in fleet mode, the etcd
// section and the instance name.
func (c *Config) applyFleetDefaults() {
	if c.Store.Backend == "" {
		c.Store.Backend = BackendBbolt
	}
	if !c.Store.FleetMode() {
		return
	}
	e := &c.Store.Etcd
	if e.Prefix == "" {
		e.Prefix = DefaultEtcdPrefix
	}
	if e.DialTimeout == 0 {
		e.DialTimeout = DefaultEtcdDialTimeout
	}
	if e.LeaseTTL == 0 {
		e.LeaseTTL = DefaultEtcdLeaseTTL
	}
	if c.Fleet.Instance == "" {
		if h, err := os.Hostname(); err == nil {
			c.Fleet.Instance, _, _ = strings.Cut(h, ".")
		}
	}
}

// validateFleet checks the backend, the etcd section and fleet.instance.
func (c *Config) validateFleet(p *problems) {
	switch c.Store.Backend {
	case BackendBbolt, "":
		if len(c.Store.Etcd.Endpoints) > 0 {
			p.warnf("store.etcd", "ignored: store.backend is %s (set store.backend: etcd for fleet mode)", BackendBbolt)
		}
		if c.Fleet.Instance != "" {
			p.warnf("fleet.instance", "ignored: store.backend is %s", BackendBbolt)
		}
		return
	case BackendEtcd:
	default:
		p.errorf("store.backend", "%q is not a store backend: %s (the default) or %s", c.Store.Backend, BackendBbolt, BackendEtcd)
		return
	}
	e := c.Store.Etcd
	if len(e.Endpoints) == 0 {
		p.errorf("store.etcd.endpoints", "must list the etcd members, e.g. [https://10.0.0.1:2379]")
	}
	for i, ep := range e.Endpoints {
		checkEtcdEndpoint(p, "store.etcd.endpoints["+strconv.Itoa(i)+"]", ep)
	}
	if e.Prefix != "" && (!strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/")) {
		p.errorf("store.etcd.prefix", "%q must start and end with '/', e.g. /tokend/ (a prefix without the last '/' also covers its neighbours' keys)", e.Prefix)
	}
	if e.DialTimeout < 0 {
		p.errorf("store.etcd.dial_timeout", "%v must be positive", e.DialTimeout)
	}
	switch {
	case e.LeaseTTL < minLeaseTTL:
		p.errorf("store.etcd.lease_ttl", "%v must be at least %v", e.LeaseTTL, minLeaseTTL)
	case e.LeaseTTL%time.Second != 0:
		p.errorf("store.etcd.lease_ttl", "%v must be whole seconds (etcd leases are)", e.LeaseTTL)
	}
	hasPassword := e.PasswordFile != "" || e.PasswordCredential != "" || !e.Password.IsZero()
	switch {
	case e.PasswordFile != "" && e.PasswordCredential != "":
		p.errorf("store.etcd.password_file", "set password_file or password_credential, not both")
	case e.Username == "" && hasPassword:
		p.errorf("store.etcd.username", "must be set with a password")
	case e.Username != "" && !hasPassword:
		p.errorf("store.etcd.password_file", "user %q needs a password: set password_file or password_credential", e.Username)
	}
	if e.PasswordFile != "" && !filepath.IsAbs(e.PasswordFile) {
		p.errorf("store.etcd.password_file", "%q must be an absolute path", e.PasswordFile)
	}
	if e.PasswordCredential != "" {
		checkCredentialName(p, "store.etcd.password_credential", e.PasswordCredential)
	}
	t := e.TLS
	for _, f := range []struct{ key, path string }{
		{"store.etcd.tls.ca_file", t.CAFile}, {"store.etcd.tls.cert_file", t.CertFile}, {"store.etcd.tls.key_file", t.KeyFile},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			p.errorf(f.key, "%q must be an absolute path", f.path)
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		p.errorf("store.etcd.tls", "cert_file and key_file go together (a client certificate and its key)")
	}
	if c.Fleet.Instance == "" {
		p.errorf("fleet.instance", "must be set (the hostname could not be read)")
	} else {
		checkName(p, "fleet.instance", c.Fleet.Instance)
	}
}

func checkEtcdEndpoint(p *problems, key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		p.errorf(key, "%q is not an http(s) URL, e.g. https://10.0.0.1:2379", raw)
		return
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		p.errorf(key, "%q must be scheme://host:port only (the user goes in store.etcd.username)", raw)
		return
	}
	if u.Scheme == "http" && !oauth.IsLoopbackHost(u.Hostname()) {
		p.errorf(key, "%q uses http to a non-loopback host: use https (the etcd password and record metadata would travel in clear)", raw)
	}
}

// resolveFleetSecrets reads the etcd password and checks that the TLS
// files parse, and that fleet mode has a store key. Called by Load after
// the store key is resolved.
func (c *Config) resolveFleetSecrets(p *problems) {
	if !c.Store.FleetMode() {
		return
	}
	if len(c.Store.Key) == 0 {
		p.errorf("store.key_file", "fleet mode (store.backend: etcd) needs a store key, the same on every instance: etcd must never hold a plaintext secret")
	}
	e := &c.Store.Etcd
	if e.Password.IsZero() && (e.PasswordFile != "" || e.PasswordCredential != "") &&
		(e.PasswordFile == "" || filepath.IsAbs(e.PasswordFile)) {
		key := "store.etcd.password_file"
		if e.PasswordFile == "" {
			key = "store.etcd.password_credential"
		}
		if s, ok := readSecret(p, key, e.PasswordFile, e.PasswordCredential); ok {
			e.Password = oauth.NewSecret(s)
		}
	}
	t := e.TLS
	if t.CAFile != "" && filepath.IsAbs(t.CAFile) {
		if b, err := os.ReadFile(t.CAFile); err != nil {
			p.errorf("store.etcd.tls.ca_file", "cannot read %s: %s", t.CAFile, errText(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			p.errorf("store.etcd.tls.ca_file", "%s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" && t.KeyFile != "" && filepath.IsAbs(t.CertFile) && filepath.IsAbs(t.KeyFile) {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			// tls's messages name no key material.
			p.errorf("store.etcd.tls", "cert_file %s and key_file %s: %s", t.CertFile, t.KeyFile, errText(err))
		} else if fi, err := os.Stat(t.KeyFile); err == nil {
			p.secretModeOK("store.etcd.tls.key_file", t.KeyFile, fi)
		}
	}
}

// fleetSummary is the store line of Explain in fleet mode.
func (c *Config) fleetSummary() string {
	e := c.Store.Etcd
	s := fmt.Sprintf("etcd %s, prefix %s, lease %v, instance %s", strings.Join(e.Endpoints, " "), e.Prefix, e.LeaseTTL, c.Fleet.Instance)
	if e.Username != "" {
		s += ", user " + e.Username
	}
	if e.TLS.CertFile != "" {
		s += ", client certificate " + e.TLS.CertFile
	}
	return s
}
