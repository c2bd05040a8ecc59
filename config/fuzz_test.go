package config

// The configuration file is untrusted input. Seeds are added here and kept
// in testdata/fuzz/FuzzParseConfig/.

import (
	"bytes"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func FuzzParseConfig(f *testing.F) {
	for _, path := range []string{"../tokend.example.yaml", "testdata/every-key.yaml"} {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("store: {path: /var/lib/tokend/x.db}\n"))
	f.Add([]byte("grants:\n  a:\n    client: c\n    type: client_credentials\nclients:\n  c: {provider: p, client_id: x, client_secret_file: /s}\nproviders:\n  p: {token_endpoint: http://127.0.0.1:1/token}\n"))
	f.Add([]byte("refresh:\n  schedule: \"CRON_TZ=Europe/Paris 0 3 * * *\"\n  fraction: 1.5\n  min_remaining: -1s\n"))
	f.Add([]byte("listen:\n  socket_mode: \"0999\"\n  callback: \"[::1]:99999\"\n"))
	f.Add([]byte("listen:\n  socket_mode: 0o660\n  socket_group: \"0\"\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("grants:\n  x:\n    readers: {uids: [-1, 4294967296]}\n"))
	f.Add([]byte("providers: {p: {issuer: \"http://%zz\"}}\n"))
	f.Add([]byte("store:\n  path: x\nstore:\n  path: y\n"))
	f.Add([]byte("refresh: &r {concurrency: 2}\nlisten: {<<: *r}\n"))
	f.Add([]byte("grants: {<<: [{a: {scopes: !!binary aGk=}}], ? [k] : v}\n"))
	f.Add([]byte("grants:\n  a: {type: jwt_bearer, assertion: &x {claims: {iss: 1, n: [*x]}}}\n  b: {type: token_exchange, subject_grant: b, actor_grant: a, resource: [\"%zz\"]}\n"))
	f.Add([]byte("clients:\n  c: {auth_method: tls_client_auth, tls_cert_file: x, private_key_file: /k, assertion_audience: issuer}\ngrants:\n  g: {assertion: ~, dpop: yes}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, warns, err := testLoader.Parse(data, "fuzz.yaml")
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config with the error %v", err)
			}
			msg := err.Error()
			for _, line := range strings.Split(msg, "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") {
					t.Fatalf("a problem does not name the file: %q", line)
				}
			}
			// The check decides what decodes; the decoder only ever
			// refuses more where aliases expand beyond its limit.
			if _, p := decode(data, "fuzz.yaml"); p.undecoded != nil && !bytes.Contains(data, []byte("*")) {
				t.Fatalf("the decoder refused what the check passed: %v", p.undecoded)
			}
			return
		}
		if c == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		_ = warns
		// A configuration that passed validation is one the daemon
		// accepts: every reference resolves, every value is typed.
		if c.Refresh.Schedule.IsZero() || c.Listen.SocketMode.IsZero() || c.Listen.SocketMode.Perm() > 0o777 {
			t.Fatalf("valid config with an unset schedule or mode: %+v %+v", c.Refresh, c.Listen)
		}
		if _, err := c.Listen.SocketGID(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Operators.IDs(); err != nil {
			t.Fatal(err)
		}
		for name, g := range c.Grants {
			cl, ok := c.Clients[g.Client]
			if !ok {
				t.Fatalf("grant %q names unknown client %q", name, g.Client)
			}
			if _, ok := c.Providers[cl.Provider]; !ok {
				t.Fatalf("client %q names unknown provider %q", g.Client, cl.Provider)
			}
			if !slices.Contains(GrantTypes, g.Type) {
				t.Fatalf("grant %q has type %q", name, g.Type)
			}
			if _, _, err := g.Readers.IDs(); err != nil {
				t.Fatalf("grant %q: %v", name, err)
			}
		}
		// The decoder, strict about keys, takes what the check passed.
		var strict Config
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&strict); err != nil && !errors.Is(err, io.EOF) && !bytes.Contains(data, []byte("*")) {
			t.Fatalf("a strict decode refuses a file the loader took: %v", err)
		}
	})
}
