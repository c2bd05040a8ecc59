package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/oauth"
)

func TestConfigUnknownKey(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want string
	}{
		{"top level", "stor:\n  path: /x.db\n", `x.yaml:1: unknown key "stor" in the top level (did you mean "store"?)`},
		{"provider", "providers:\n  corp:\n    issuer: https://id.example.com\n    tokn_endpoint: https://id.example.com/t\n",
			`x.yaml:4: unknown key "tokn_endpoint" in providers.corp (did you mean "token_endpoint"?)`},
		{"readers", minimal + "    # comment\n  h:\n    client: app\n    type: device_code\n    readers:\n      user: [root]\n",
			`x.yaml:19: unknown key "user" in grants.h.readers (did you mean "users"?)`},
		{"refresh no suggestion", "refresh:\n  schedule: \"@every 1m\"\n  whatever: 3\n", `x.yaml:3: unknown key "whatever" in refresh`},
		{"inline secret", "clients:\n  app:\n    provider: corp\n    client_secret: hunter2\n", `x.yaml:4: unknown key "client_secret" in clients.app`},
		{"through a merge", "x: &base\n  path: /a.db\nstore:\n  <<: *base\n  paht: /b.db\n", `unknown key "x" in the top level`},
		{"a resolved field", "store:\n  key: abc\n", `x.yaml:2: unknown key "key" in store`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(tt.yml)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows a value: %q", err)
			}
			if strings.Contains(err.Error(), "not found in type") || strings.Contains(err.Error(), "cannot unmarshal") {
				t.Errorf("the YAML library's message leaked through: %q", err)
			}
		})
	}
}

func TestConfigMergeKeysChecked(t *testing.T) {
	for _, yml := range []string{
		minimal + "refresh:\n  <<: {fraction: 0.5, fracton: 0.4}\n",
		minimal + "refresh:\n  <<: [{fraction: 0.5}, {fracton: 0.4}]\n",
		"base: &b {fracton: 0.4}\n" + minimal + "refresh:\n  <<: *b\n",
	} {
		_, _, err := parse(yml)
		if err == nil || !strings.Contains(err.Error(), `unknown key "fracton" in refresh`) {
			t.Errorf("%s\nerr = %v", yml, err)
		}
	}
	// A merge that passes the check decodes as YAML says: explicit keys
	// win over merged ones.
	c := mustParse(t, minimal+"refresh:\n  <<: {fraction: 0.5, concurrency: 3}\n  fraction: 0.6\n")
	if c.Refresh.Fraction != 0.6 || c.Refresh.Concurrency != 3 {
		t.Errorf("merged refresh = %+v", c.Refresh)
	}
	// Merges work in maps too: a grant defined once, reused.
	c = mustParse(t, strings.Replace(minimal, "grants:\n", "grants:\n  <<: {h: {client: app, type: authorization_code, readers: {uids: [7]}}}\n", 1))
	if g, ok := c.Grants["h"]; !ok || g.Client != "app" {
		t.Errorf("merged grants = %+v", c.Grants)
	}
}

func TestConfigProblems(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string // every line of the error, in any order, as substrings
	}{
		{"duration without unit", minimal + "refresh:\n  min_remaining: 60\n",
			[]string{`x.yaml:15: refresh.min_remaining: invalid duration "60": use a Go duration with a unit`}},
		{"bad duration", minimal + "refresh:\n  max_interval: 1 day\n",
			[]string{`x.yaml:15: refresh.max_interval: invalid duration "1 day"`}},
		{"not a number", minimal + "refresh:\n  fraction: most\n",
			[]string{`x.yaml:15: refresh.fraction: expected a number, found "most"`}},
		{"scopes not a list", minimal + "    scopes: openid\n",
			[]string{`x.yaml:14: grants.g.scopes: expected a list, found str "openid"`}},
		{"scopes a mapping", minimal + "    scopes: {openid: 1}\n",
			[]string{`x.yaml:14: grants.g.scopes: expected a list, found a mapping`}},
		{"refresh a list", minimal + "refresh: [1, 2]\n",
			[]string{`x.yaml:14: refresh: expected a mapping of keys, found a list`}},
		{"grant a string", minimal + "  h: everything\n",
			[]string{`x.yaml:14: grants.h: expected a mapping of keys, found str "everything"`}},
		{"string a list", strings.Replace(minimal, "client_id: tokend", "client_id: [tokend]", 1),
			[]string{`x.yaml:8: clients.app.client_id: expected a string, found a list`}},
		{"long value cut short", minimal + "refresh:\n  fraction: the-client-secret-pasted-here\n",
			[]string{`x.yaml:15: refresh.fraction: expected a number, found "the-cli..."`}},
		{"value on the next line", minimal + "refresh:\n  timeout:\n    5 minutes\n",
			[]string{`x.yaml:16: refresh.timeout: invalid duration "5 minutes"`}},
		{"type errors everywhere at once", minimal + "refresh:\n  fraction: most\n  timeout: 5\nlisten: [a]\n",
			[]string{`x.yaml:15: refresh.fraction`, `x.yaml:16: refresh.timeout`, `x.yaml:17: listen: expected a mapping of keys, found a list`}},
		{"unknown grant type", strings.Replace(minimal, "authorization_code", "implicit", 1),
			[]string{`x.yaml:12: grants.g.type: unknown grant type "implicit": valid types are authorization_code, client_credentials, password, device_code`}},
		{"missing client", strings.Replace(minimal, "client: app", "client: nope", 1),
			[]string{`x.yaml:11: grants.g.client: client "nope" is not defined under clients (defined: app)`}},
		{"missing provider", strings.Replace(minimal, "provider: corp", "provider: corpp", 1),
			[]string{`x.yaml:7: clients.app.provider: provider "corpp" is not defined under providers (defined: corp)`}},
		{"provider without endpoints", strings.Replace(minimal, "issuer: https://id.example.com", "revocation_endpoint: https://id.example.com/r", 1),
			[]string{`x.yaml:3: providers.corp: needs an issuer (for discovery) or a token_endpoint`,
				`x.yaml:12: grants.g.type: authorization_code needs an authorization_endpoint or an issuer on provider "corp"`}},
		{"http to a remote host", strings.Replace(minimal, "https://id.example.com", "http://id.example.com", 1),
			[]string{`x.yaml:4: providers.corp.issuer: "http://id.example.com" uses http to a non-loopback host: use https`}},
		{"not a URL", strings.Replace(minimal, "https://id.example.com", "id.example.com", 1),
			[]string{`x.yaml:4: providers.corp.issuer: "id.example.com" is not an absolute http(s) URL`}},
		{"bad schedule", minimal + "    schedule: \"0 3 * *\"\n",
			[]string{`x.yaml:14: grants.g.schedule: invalid schedule "0 3 * *": expected exactly 5 fields, found 4`}},
		{"bad refresh schedule", minimal + "refresh:\n  schedule: \"@every soon\"\n",
			[]string{`x.yaml:15: refresh.schedule: invalid schedule "@every soon"`}},
		{"schedule a list", minimal + "    schedule: [daily]\n",
			[]string{`x.yaml:14: grants.g.schedule: expected a cron schedule such as "0 3 * * *" or "@every 15s", found a list`}},
		{"bad values do not hide other problems", strings.Replace(minimal, "client: app", "client: nope", 1) + "    schedule: \"0 3 * *\"\nlisten: {socket_mode: \"0999\"}\n",
			[]string{`x.yaml:11: grants.g.client: client "nope" is not defined`, `x.yaml:14: grants.g.schedule: invalid schedule`, `x.yaml:15: listen.socket_mode: "0999" is not an octal permission`}},
		{"unknown reader", strings.Replace(minimal, "users: [root]", "users: [root, no-such-user-tokend]", 1),
			[]string{`x.yaml:13: grants.g.readers.users[1]: unknown user "no-such-user-tokend"`}},
		{"unknown operator group", minimal + "operators:\n  groups: [no-such-group-tokend]\n",
			[]string{`x.yaml:15: operators.groups[0]: unknown group "no-such-group-tokend"`}},
		{"ids out of range", minimal + "operators:\n  uids: [-1]\n  gids: [4294967296]\n",
			[]string{`x.yaml:15: operators.uids[0]: -1 is out of range`, `x.yaml:16: operators.gids[0]: 4294967296 is out of range`}},
		{"unknown socket group", minimal + "listen:\n  socket_group: no-such-group-tokend\n",
			[]string{`x.yaml:15: listen.socket_group: unknown group "no-such-group-tokend"`}},
		{"fraction and jitter out of range", minimal + "refresh:\n  fraction: 1.5\n  jitter: 0.5\n  concurrency: -1\n",
			[]string{`x.yaml:15: refresh.fraction: 1.5 must be between 0 and 1`, `x.yaml:16: refresh.jitter: 0.5 must be at least 0 and less than 0.5`, `x.yaml:17: refresh.concurrency: -1 must be at least 1`}},
		{"socket mode", minimal + "listen:\n  socket_mode: \"0999\"\n",
			[]string{`x.yaml:15: listen.socket_mode: "0999" is not an octal permission`}},
		{"socket mode too wide", minimal + "listen:\n  socket_mode: \"01777\"\n",
			[]string{`x.yaml:15: listen.socket_mode: "01777" is not an octal permission of at most 0777`}},
		{"callback not host:port", minimal + "listen:\n  callback: localhost\n",
			[]string{`x.yaml:15: listen.callback: "localhost" is not host:port`}},
		{"redirect without path", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    redirect_uri: http://127.0.0.1:8785", 1),
			[]string{`x.yaml:9: clients.app.redirect_uri: "http://127.0.0.1:8785" needs a path`}},
		{"callback off and no redirect", minimal + "listen:\n  callback: \"off\"\n",
			[]string{`x.yaml:12: grants.g.type: authorization_code needs a redirect_uri on client "app"`}},
		{"client_credentials with a public client", strings.Replace(minimal, "authorization_code", "client_credentials", 1),
			[]string{`x.yaml:12: grants.g.type: client_credentials needs a confidential client: client "app" has no client secret, private key or certificate`}},
		{"password grant without credentials", strings.Replace(minimal, "authorization_code", "password", 1),
			[]string{`x.yaml:10: grants.g.username: the password grant needs a username`, `x.yaml:10: grants.g: the password grant needs password_file or password_credential`}},
		{"password fields on another grant", minimal + "    username: bob\n",
			[]string{`x.yaml:10: grants.g: username, password_file and password_credential apply to the password grant only`}},
		{"secret auth method without a secret", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    auth_method: client_secret_post", 1),
			[]string{`x.yaml:9: clients.app.auth_method: client_secret_post needs client_secret_file or client_secret_credential`}},
		{"unknown auth method", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    auth_method: private_jwt", 1),
			[]string{`x.yaml:9: clients.app.auth_method: "private_jwt" is not one of client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt, tls_client_auth, self_signed_tls_client_auth, none`}},
		{"relative secret file", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    client_secret_file: app.secret", 1),
			[]string{`x.yaml:9: clients.app.client_secret_file: "app.secret" must be an absolute path`}},
		{"dynamic client with a secret", strings.Replace(minimal, "client_id: tokend", "client_secret_file: /etc/app.secret", 1),
			[]string{`x.yaml:6: clients.app: has a client secret but no client_id`}},
		{"bad grant name", strings.Replace(minimal, "  g:", "  \"my grant\":", 1),
			[]string{`x.yaml:10: grants.my grant: the name "my grant" may only use`}},
		{"log level", minimal + "log: {level: verbose}\n",
			[]string{`x.yaml:14: log.level: "verbose" is not one of debug, info, warn, error`}},
		{"duplicate key", minimal + "store: {path: /a.db}\nstore: {path: /b.db}\n",
			[]string{`x.yaml:15: key "store" is already defined at line 14`}},
		{"duplicate grant", minimal + "  g: {client: app, type: device_code}\n",
			[]string{`x.yaml:14: grants: key "g" is already defined at line 10`}},
		{"merge of a string", minimal + "refresh:\n  <<: fraction\n",
			[]string{`x.yaml:15: refresh: << takes a mapping or a list of mappings, found str "fraction"`}},
		{"merged and explicit key", minimal + "refresh:\n  fraction: 1.5\n  <<: {fraction: 0.5}\n",
			[]string{`x.yaml:15: refresh.fraction: 1.5 must be between 0 and 1`}},
		{"alias of a list merged", minimal + "x: &l [1]\nrefresh:\n  <<: *l\n",
			[]string{`x.yaml:14: unknown key "x"`, `x.yaml:16: refresh: << takes a mapping or a list of mappings, found a list`}},
		{"a key that is a list", minimal + "[a]: 1\n",
			[]string{`x.yaml:14: a key must be a plain name, found a list`}},
		{"syntax error", "store:\n  path: [\n", []string{`x.yaml: yaml: line 2: did not find expected node content`}},
		{"top level is a list", "- a\n- b\n", []string{`x.yaml:1: the top level must be a mapping`}},
		{"two documents", minimal + "---\nstore: {}\n", []string{`x.yaml:14: only one YAML document is allowed`}},
		{"two documents and a bad key", minimal + "stor: {}\n---\n", []string{`x.yaml:14: unknown key "stor"`, `x.yaml:15: only one YAML document is allowed`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parse(tt.yml)
			wantProblems(t, err, tt.want...)
		})
	}
}

func TestConfigEmptyFile(t *testing.T) {
	for _, yml := range []string{"", "# nothing\n", "---\n", "~\n"} {
		c, warns, err := parse(yml)
		if err != nil || c == nil {
			t.Errorf("%q: %v", yml, err)
			continue
		}
		if len(warns) == 0 || !strings.Contains(warns[0], "x.yaml: the file is empty") {
			t.Errorf("%q: warnings %q", yml, warns)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "")
	t.Setenv("RUNTIME_DIRECTORY", "")
	yml := `
providers:
  corp: {issuer: "https://id.example.com"}
clients:
  app:
    provider: corp
    client_id: tokend
  confidential:
    provider: corp
    client_id: conf
    client_secret_file: /etc/tokend/conf.secret
  dynamic:
    provider: corp
grants:
  g:
    client: app
    type: authorization_code
    readers: {users: [root]}
  cc:
    client: confidential
    type: client_credentials
    readers: {users: [root]}
  dev:
    client: dynamic
    type: device_code
    readers: {users: [root]}
`
	c := mustParse(t, yml)
	checks := []struct {
		name      string
		got, want any
	}{
		{"store.path", c.Store.Path, "/var/lib/tokend/tokend.db"},
		{"listen.socket", c.Listen.Socket, "/run/tokend/tokend.sock"},
		{"listen.socket_mode", c.Listen.SocketMode, Mode(0o660)},
		{"listen.callback", c.Listen.Callback, "127.0.0.1:8785"},
		{"listen.metrics", c.Listen.Metrics, "127.0.0.1:9785"},
		{"refresh.schedule", c.Refresh.Schedule.String(), "@every 15s"},
		{"refresh.fraction", c.Refresh.Fraction, 0.75},
		{"refresh.jitter", c.Refresh.Jitter, 0.05},
		{"refresh.min_remaining", c.Refresh.MinRemaining, 60 * time.Second},
		{"refresh.concurrency", c.Refresh.Concurrency, 8},
		{"refresh.default_lifetime", c.Refresh.DefaultLifetime, time.Hour},
		{"refresh.max_interval", c.Refresh.MaxInterval, 24 * time.Hour},
		{"refresh.timeout", c.Refresh.Timeout, 30 * time.Second},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"public client auth", c.Clients["app"].AuthMethod, oauth.AuthNone},
		{"public client redirect", c.Clients["app"].RedirectURI, "http://127.0.0.1:8785/callback"},
		{"confidential client auth", c.Clients["confidential"].AuthMethod, oauth.AuthBasic},
		{"no redirect without a code grant", c.Clients["confidential"].RedirectURI, ""},
		{"dynamic client auth", c.Clients["dynamic"].AuthMethod, oauth.AuthBasic},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if gid, err := c.Listen.SocketGID(); gid != -1 || err != nil {
		t.Errorf("SocketGID() without a group = %d, %v", gid, err)
	}
	from := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if next := c.Refresh.Schedule.Next(from); !next.Equal(from.Add(15 * time.Second)) {
		t.Errorf("the default schedule's next activation = %v", next)
	}

	t.Setenv("STATE_DIRECTORY", "/var/lib/tokend:/var/lib/other")
	t.Setenv("RUNTIME_DIRECTORY", "/run/tokend2")
	c = mustParse(t, minimal+"listen: {callback: \"127.0.0.1:9000\"}\n")
	if c.Store.Path != "/var/lib/tokend/tokend.db" || c.Listen.Socket != "/run/tokend2/tokend.sock" {
		t.Errorf("under systemd: store %q socket %q", c.Store.Path, c.Listen.Socket)
	}
	if got := c.Clients["app"].RedirectURI; got != "http://127.0.0.1:9000/callback" {
		t.Errorf("redirect_uri follows listen.callback: %q", got)
	}
}

func TestConfigExplicitValuesKept(t *testing.T) {
	c := mustParse(t, minimal+`refresh:
  schedule: "*/5 * * * *"
  fraction: 0.5
  jitter: 0
  min_remaining: 2m
listen:
  metrics: "off"
  socket_mode: "0600"
`)
	if c.Refresh.Schedule.String() != "*/5 * * * *" || c.Refresh.Fraction != 0.5 || c.Refresh.MinRemaining != 2*time.Minute || c.Listen.Metrics != "off" || c.Listen.SocketMode.Perm() != 0o600 {
		t.Errorf("explicit values lost: %+v %+v", c.Refresh, c.Listen)
	}
}

// TestConfigEveryKey decodes a file that sets every key. Its users and
// groups are looked up in a user database of the test's own, once without
// them and once with them: the result does not depend on the accounts of
// the machine (where tokend is installed, the tokend, tokend-clients and
// tokend-admin groups exist).
func TestConfigEveryKey(t *testing.T) {
	data, err := os.ReadFile("testdata/every-key.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = testLoader.Parse(data, "every-key.yaml")
	want := []string{
		`every-key.yaml:7: listen.socket_group: unknown group "tokend-clients"`,
		`every-key.yaml:18: operators.groups[0]: unknown group "tokend-admin"`,
		`every-key.yaml:60: grants.reports-api.readers.users[0]: unknown user "reports"`,
	}
	if got := errLines(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	installed := baseAccounts().with(map[string]string{"tokend": "990", "reports": "1200"}, map[string]string{"tokend": "990", "tokend-admin": "991", "tokend-clients": "992"})
	c, warns, err := installed.loader().Parse(data, "every-key.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	g := c.Grants["reports-api"]
	if g.Type != GrantAuthorizationCode || g.AuthParams["audience"] != "https://reports.example.com" || g.RefreshTokenLifetime != 24*time.Hour || g.Schedule.String() != "0 3 * * *" {
		t.Errorf("grant decoded as %+v", g)
	}
	if gid, err := c.Listen.SocketGID(); gid != 992 || err != nil {
		t.Errorf("socket group: %d, %v", gid, err)
	}
	if _, gids, err := c.Operators.IDs(); err != nil || len(gids) != 1 || gids[0] != 991 {
		t.Errorf("operators: gids %v, %v", gids, err)
	}
	if uids, gids, err := g.Readers.IDs(); err != nil || len(uids) != 1 || uids[0] != 1200 || len(gids) != 0 {
		t.Errorf("readers: uids %v gids %v, %v", uids, gids, err)
	}
}

func TestConfigExampleFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	data, err := os.ReadFile("../tokend.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// As shipped, only its users and groups are unknown to a machine that
	// does not have them.
	_, _, err = testLoader.Parse(data, "tokend.example.yaml")
	for _, l := range errLines(err) {
		if !strings.Contains(l, "unknown user") && !strings.Contains(l, "unknown group") {
			t.Errorf("unexpected problem: %s", l)
		}
	}
	if n := len(errLines(err)); n != 5 {
		t.Errorf("%d problems, want 5 (tokend, tokend-admin, reports, monitoring, deploy):\n%v", n, err)
	}

	dir := t.TempDir()
	path := writeExample(t, dir)
	c, warns, err := exampleAccounts().loader().Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	if !c.Clients["corp-dynamic"].Dynamic() || c.Clients["corp-dynamic"].AuthMethod != "client_secret_basic" {
		t.Errorf("corp-dynamic = %+v", c.Clients["corp-dynamic"])
	}
	if c.Clients["legacy-cli"].AuthMethod != "none" {
		t.Errorf("public client auth method = %q", c.Clients["legacy-cli"].AuthMethod)
	}
	if len(c.Grants) != 4 || len(c.Providers) != 2 || len(c.Clients) != 3 {
		t.Errorf("counts: %d grants, %d providers, %d clients", len(c.Grants), len(c.Providers), len(c.Clients))
	}
}
