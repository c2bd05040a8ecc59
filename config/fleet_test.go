package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const fleetBase = minimal + `
fleet:
  instance: host-a
store:
  backend: etcd
  etcd:
`

func TestFleetDefaults(t *testing.T) {
	c := mustParse(t, fleetBase+"    endpoints: [https://10.0.0.1:2379, http://127.0.0.1:2379]\n")
	e := c.Store.Etcd
	if e.Prefix != "/tokend/" || e.DialTimeout != 5*time.Second || e.LeaseTTL != 10*time.Second {
		t.Errorf("defaults: prefix %q dial %v lease %v", e.Prefix, e.DialTimeout, e.LeaseTTL)
	}
	if !c.Store.FleetMode() || c.Fleet.Instance != "host-a" {
		t.Errorf("fleet mode %v instance %q", c.Store.FleetMode(), c.Fleet.Instance)
	}
	c = mustParse(t, minimal)
	if c.Store.Backend != BackendBbolt || c.Store.FleetMode() || c.Fleet.Instance != "" || c.Store.Etcd.LeaseTTL != 0 {
		t.Errorf("bbolt config got fleet defaults: %+v %+v", c.Store, c.Fleet)
	}
	c = mustParse(t, strings.Replace(fleetBase, "  instance: host-a\n", "  instance: \"\"\n", 1)+"    endpoints: [https://e:2379]\n")
	if h, _ := os.Hostname(); h != "" && c.Fleet.Instance == "" {
		t.Errorf("fleet.instance not defaulted to the hostname %q", h)
	}
}

func TestFleetValidation(t *testing.T) {
	for _, tc := range []struct {
		name, etcd string
		want       []string
	}{
		{"no endpoints", "    prefix: /t/\n", []string{"store.etcd.endpoints: must list"}},
		{"not a URL", "    endpoints: [10.0.0.1:2379]\n", []string{"is not an http(s) URL"}},
		{"path", "    endpoints: [https://e:2379/x]\n", []string{"scheme://host:port only"}},
		{"user info", "    endpoints: [https://u:p@e:2379]\n", []string{"scheme://host:port only"}},
		{"http elsewhere", "    endpoints: [http://10.0.0.1:2379]\n", []string{"uses http to a non-loopback host"}},
		{"prefix", "    endpoints: [https://e:2379]\n    prefix: /tokend\n", []string{"must start and end with '/'"}},
		{"lease short", "    endpoints: [https://e:2379]\n    lease_ttl: 1s\n", []string{"must be at least 2s"}},
		{"lease fraction", "    endpoints: [https://e:2379]\n    lease_ttl: 2500ms\n", []string{"whole seconds"}},
		{"user no password", "    endpoints: [https://e:2379]\n    username: tokend\n", []string{"needs a password"}},
		{"password no user", "    endpoints: [https://e:2379]\n    password_file: /p\n", []string{"must be set with a password"}},
		{"relative files", "    endpoints: [https://e:2379]\n    tls: {ca_file: ca.pem, cert_file: /c}\n", []string{"ca_file: \"ca.pem\" must be an absolute path", "cert_file and key_file go together"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(fleetBase + tc.etcd)
			wantProblems(t, err, tc.want...)
		})
	}
	_, _, err := parse(minimal + "store: {backend: consul}\n")
	wantProblems(t, err, `"consul" is not a store backend`)
	_, _, err = parse(fleetBase + "    endpoints: [https://e:2379]\n" + "fleet: {instance: \"a b\"}\n")
	if err == nil {
		t.Error("two fleet sections accepted")
	}
	_, warns, err := parse(minimal + "store: {etcd: {endpoints: [https://e:2379]}}\n")
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], "ignored") {
		t.Errorf("etcd section with bbolt: err %v warnings %q", err, warns)
	}
}

func TestFleetLoadSecrets(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("store.key", strings.Repeat("ab", 32))
	pw := write("pw", "s3cret-etcd\n")
	ca := write("ca.pem", "not a certificate")
	cfg := func(extra string) string {
		return write("c.yaml", fleetBase+"    endpoints: [https://e:2379]\n    username: tokend\n    password_file: "+pw+"\n"+extra)
	}
	_, _, err := testLoader.Load(cfg(""))
	wantProblems(t, err, "needs a store key")
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatal("the password is in the error")
	}
	c, _, err := testLoader.Load(cfg("  key_file: " + key + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Etcd.Password.Reveal() != "s3cret-etcd" {
		t.Error("password not read")
	}
	_, _, err = testLoader.Load(cfg("    tls: {ca_file: " + ca + ", cert_file: " + ca + ", key_file: " + ca + "}\n  key_file: " + key + "\n"))
	wantProblems(t, err, "holds no PEM certificate", "store.etcd.tls: cert_file")
}

func TestFleetExplain(t *testing.T) {
	c := mustParse(t, fleetBase+"    endpoints: [https://e:2379]\n")
	var b strings.Builder
	c.Explain(&b)
	if !strings.Contains(b.String(), "store:     etcd https://e:2379, prefix /tokend/, lease 10s, instance host-a (") {
		t.Errorf("explain:\n%s", b.String())
	}
}
