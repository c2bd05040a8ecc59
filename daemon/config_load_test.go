package daemon

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/oauth"
)

// minimal is a small valid configuration the table tests start from.
const minimal = `
providers:
  corp:
    issuer: https://id.example.com
clients:
  app:
    provider: corp
    client_id: tokend
grants:
  g:
    client: app
    type: authorization_code
    readers: {users: [root]}
`

func mustParse(t testing.TB, yml string) *Config {
	t.Helper()
	c, _, err := ParseConfig([]byte(yml), "x.yaml")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return c
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.yml), "x.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows a value: %q", err)
			}
			if strings.Contains(err.Error(), "not found in type") {
				t.Errorf("yaml.v3's message leaked through: %q", err)
			}
		})
	}
}

func TestConfigMergeKeysChecked(t *testing.T) {
	yml := minimal + "refresh:\n  <<: {fraction: 0.5, fracton: 0.4}\n"
	_, _, err := ParseConfig([]byte(yml), "x.yaml")
	if err == nil || !strings.Contains(err.Error(), `unknown key "fracton" in refresh`) {
		t.Fatalf("err = %v", err)
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
		{"unknown reader", strings.Replace(minimal, "users: [root]", "users: [root, no-such-user-tokend]", 1),
			[]string{`x.yaml:13: grants.g.readers.users[1]: unknown user "no-such-user-tokend"`}},
		{"unknown operator group", minimal + "operators:\n  groups: [no-such-group-tokend]\n",
			[]string{`x.yaml:15: operators.groups[0]: unknown group "no-such-group-tokend"`}},
		{"fraction and jitter out of range", minimal + "refresh:\n  fraction: 1.5\n  jitter: 0.5\n  concurrency: -1\n",
			[]string{`x.yaml:15: refresh.fraction: 1.5 must be between 0 and 1`, `x.yaml:16: refresh.jitter: 0.5 must be at least 0 and less than 0.5`, `x.yaml:17: refresh.concurrency: -1 must be at least 1`}},
		{"socket mode", minimal + "listen:\n  socket_mode: \"0999\"\n",
			[]string{`x.yaml:15: listen.socket_mode: "0999" is not an octal permission`}},
		{"callback not host:port", minimal + "listen:\n  callback: localhost\n",
			[]string{`x.yaml:15: listen.callback: "localhost" is not host:port`}},
		{"redirect without path", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    redirect_uri: http://127.0.0.1:8785", 1),
			[]string{`x.yaml:9: clients.app.redirect_uri: "http://127.0.0.1:8785" needs a path`}},
		{"callback off and no redirect", minimal + "listen:\n  callback: \"off\"\n",
			[]string{`x.yaml:12: grants.g.type: authorization_code needs a redirect_uri on client "app"`}},
		{"client_credentials with a public client", strings.Replace(minimal, "authorization_code", "client_credentials", 1),
			[]string{`x.yaml:12: grants.g.type: client_credentials needs a confidential client: client "app" has no client secret`}},
		{"password grant without credentials", strings.Replace(minimal, "authorization_code", "password", 1),
			[]string{`x.yaml:10: grants.g.username: the password grant needs a username`, `x.yaml:10: grants.g: the password grant needs password_file or password_credential`}},
		{"password fields on another grant", minimal + "    username: bob\n",
			[]string{`x.yaml:10: grants.g: username, password_file and password_credential apply to the password grant only`}},
		{"secret auth method without a secret", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    auth_method: client_secret_post", 1),
			[]string{`x.yaml:9: clients.app.auth_method: client_secret_post needs client_secret_file or client_secret_credential`}},
		{"unknown auth method", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    auth_method: private_key_jwt", 1),
			[]string{`x.yaml:9: clients.app.auth_method: "private_key_jwt" is not one of client_secret_basic, client_secret_post, none`}},
		{"relative secret file", strings.Replace(minimal, "client_id: tokend", "client_id: tokend\n    client_secret_file: app.secret", 1),
			[]string{`x.yaml:9: clients.app.client_secret_file: "app.secret" must be an absolute path`}},
		{"dynamic client with a secret", strings.Replace(minimal, "client_id: tokend", "client_secret_file: /etc/app.secret", 1),
			[]string{`x.yaml:6: clients.app: has a client secret but no client_id`}},
		{"bad grant name", strings.Replace(minimal, "  g:", "  \"my grant\":", 1),
			[]string{`x.yaml:10: grants.my grant: the name "my grant" may only use`}},
		{"log level", minimal + "log: {level: verbose}\n",
			[]string{`x.yaml:14: log.level: "verbose" is not one of debug, info, warn, error`}},
		{"duplicate key", minimal + "store: {path: /a.db}\nstore: {path: /b.db}\n",
			[]string{`x.yaml:15: mapping key "store" already defined at line 14`}},
		{"syntax error", "store:\n  path: [\n", []string{`x.yaml:2: did not find expected node content`}},
		{"top level is a list", "- a\n- b\n", []string{`x.yaml:1: the top level must be a mapping`}},
		{"two documents", minimal + "---\nstore: {}\n", []string{`x.yaml:14: only one YAML document is allowed`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseConfig([]byte(tt.yml), "x.yaml")
			lines := errLines(err)
			if len(lines) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(tt.want), err)
			}
		want:
			for _, w := range tt.want {
				for _, l := range lines {
					if strings.Contains(l, w) {
						continue want
					}
				}
				t.Errorf("no problem contains %q; got:\n%v", w, err)
			}
		})
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
		{"listen.socket_mode", c.Listen.SocketMode, "0660"},
		{"listen.callback", c.Listen.Callback, "127.0.0.1:8785"},
		{"listen.metrics", c.Listen.Metrics, "127.0.0.1:9785"},
		{"refresh.schedule", c.Refresh.Schedule, "@every 15s"},
		{"refresh.fraction", c.Refresh.Fraction, 0.75},
		{"refresh.jitter", c.Refresh.Jitter, 0.05},
		{"refresh.min_remaining", c.Refresh.MinRemaining, 60 * time.Second},
		{"refresh.concurrency", c.Refresh.Concurrency, 8},
		{"refresh.default_lifetime", c.Refresh.DefaultLifetime, time.Hour},
		{"refresh.max_interval", c.Refresh.MaxInterval, 24 * time.Hour},
		{"refresh.timeout", c.Refresh.Timeout, 30 * time.Second},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"public client auth", c.Clients["app"].AuthMethod, "none"},
		{"public client redirect", c.Clients["app"].RedirectURI, "http://127.0.0.1:8785/callback"},
		{"confidential client auth", c.Clients["confidential"].AuthMethod, "client_secret_basic"},
		{"no redirect without a code grant", c.Clients["confidential"].RedirectURI, ""},
		{"dynamic client auth", c.Clients["dynamic"].AuthMethod, "client_secret_basic"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if mode, err := c.Listen.Mode(); err != nil || mode != 0o660 {
		t.Errorf("Mode() = %v, %v", mode, err)
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
	if c.Refresh.Schedule != "*/5 * * * *" || c.Refresh.Fraction != 0.5 || c.Refresh.MinRemaining != 2*time.Minute || c.Listen.Metrics != "off" || c.Listen.SocketMode != "0600" {
		t.Errorf("explicit values lost: %+v %+v", c.Refresh, c.Listen)
	}
}

func TestConfigDesignExample(t *testing.T) {
	data, err := os.ReadFile("testdata/config/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// It decodes strictly; the only problems are the example's users and
	// groups, which this machine does not have.
	_, _, err = ParseConfig(data, "design.yaml")
	want := []string{
		`design.yaml:7: listen.socket_group: unknown group "tokend"`,
		`design.yaml:18: operators.groups[0]: unknown group "tokend-admin"`,
		`design.yaml:40: grants.reports-api.readers.users[0]: unknown user "reports"`,
	}
	if got := errLines(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	fixed := strings.NewReplacer("socket_group: tokend", "socket_group: root", "groups: [tokend-admin]", "groups: [root]", "users: [reports]", "users: [daemon]").Replace(string(data))
	c, warns, err := ParseConfig([]byte(fixed), "design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	g := c.Grants["reports-api"]
	if g.Type != GrantAuthorizationCode || g.AuthParams["audience"] != "https://reports.example.com" || g.RefreshTokenLifetime != 24*time.Hour || g.Schedule != "0 3 * * *" {
		t.Errorf("grant decoded as %+v", g)
	}
}

// exampleFiles writes the secret files tokend.example.yaml names into dir
// and returns the example with its paths, users and groups made to work on
// this machine.
func exampleFiles(t *testing.T, dir string) string {
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
	r := strings.NewReplacer(
		"/etc/tokend/", dir+"/",
		"socket_group: tokend", "socket_group: root",
		"groups: [tokend-admin]", "groups: [adm]",
		"users: [reports]", "users: [daemon]",
		"groups: [monitoring]", "groups: [staff]",
		"users: [deploy]", "users: [nobody]",
	)
	out := r.Replace(string(data))
	if strings.Contains(out, "/etc/tokend/") {
		t.Fatal("a path was not replaced")
	}
	return out
}

func TestConfigExampleFile(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	data, err := os.ReadFile("../tokend.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// As shipped, only its users and groups are unknown here.
	_, _, err = ParseConfig(data, "tokend.example.yaml")
	for _, l := range errLines(err) {
		if !strings.Contains(l, "unknown user") && !strings.Contains(l, "unknown group") {
			t.Errorf("unexpected problem: %s", l)
		}
	}
	if n := len(errLines(err)); n != 5 {
		t.Errorf("%d problems, want 5 (tokend, tokend-admin, reports, monitoring, deploy):\n%v", n, err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(exampleFiles(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, warns, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
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

func TestConfigSecretFiles(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	secretPath := filepath.Join(dir, "app.secret")
	const secret = "very-secret-value-42"
	if err := os.WriteFile(secretPath, []byte(secret+"\n"), 0o644); err != nil {
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
		c, warns, err := LoadConfig(write(withSecret))
		if err != nil {
			t.Fatal(err)
		}
		if len(warns) != 1 || !strings.Contains(warns[0], secretPath) || !strings.Contains(warns[0], "mode 0644") ||
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
		_, _, err := LoadConfig(write(yml))
		want := "config.yaml:9: clients.app.client_secret_file: cannot read " + missing + ": no such file or directory"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v\nwant %s", err, want)
		}
	})

	t.Run("never in messages", func(t *testing.T) {
		// An invalid config whose secret file is readable: every message
		// is checked for the secret.
		yml := strings.Replace(withSecret, "authorization_code", "bogus", 1) + "store: {key_file: " + secretPath + "}\n"
		_, warns, err := LoadConfig(write(yml))
		if err == nil {
			t.Fatal("no error")
		}
		all := err.Error() + strings.Join(warns, "\n")
		if strings.Contains(all, secret) {
			t.Errorf("secret in messages: %s", all)
		}
		if !strings.Contains(err.Error(), "store.key_file: "+secretPath) {
			t.Errorf("bad key not reported: %v", err)
		}
	})

	t.Run("empty file", func(t *testing.T) {
		empty := filepath.Join(dir, "empty.secret")
		if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadConfig(write(strings.Replace(withSecret, secretPath, empty, 1)))
		if err == nil || !strings.Contains(err.Error(), empty+" is empty") {
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
	_, _, err := LoadConfig(path)
	if err == nil || !strings.Contains(err.Error(), `clients.app.client_secret_credential: credential "app.secret" not found: $CREDENTIALS_DIRECTORY is not set`) {
		t.Fatalf("without systemd: %v", err)
	}

	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	_, _, err = LoadConfig(path)
	if got := errLines(err); len(got) != 1 || !strings.Contains(got[0], `config.yaml:19: grants.p.password_credential: credential "svc.pass" not found in $CREDENTIALS_DIRECTORY`) {
		t.Fatalf("missing credential: %v", err)
	}

	if err := os.WriteFile(filepath.Join(creds, "svc.pass"), []byte("pw\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	c, warns, err := LoadConfig(path)
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

func TestConfigValidateInCode(t *testing.T) {
	c := &Config{
		Providers: map[string]ProviderConfig{"p": {TokenEndpoint: "http://127.0.0.1:9/token"}},
		Clients:   map[string]ClientConfig{"c": {Provider: "p", ClientID: "id", Secret: oauth.NewSecret("s")}},
		Grants: map[string]GrantConfig{
			"cc": {Client: "c", Type: GrantClientCredentials},
			"pw": {Client: "c", Type: GrantPassword, Username: "u", Password: oauth.NewSecret("p")},
		},
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Clients["c"].AuthMethod != "client_secret_basic" {
		t.Errorf("auth method = %q", c.Clients["c"].AuthMethod)
	}

	c.Grants["dc"] = GrantConfig{Client: "c", Type: GrantDeviceCode}
	c.Refresh.Concurrency = 0
	err := c.Validate()
	want := []string{
		"daemon: config: grants.dc.type: device_code needs a device_authorization_endpoint or an issuer on provider \"p\"",
		"daemon: config: refresh.concurrency: 0 must be at least 1",
	}
	got := errLines(err)
	if len(got) != 2 || got[0] != want[1] || got[1] != want[0] {
		t.Errorf("Validate:\n%s", strings.Join(got, "\n"))
	}
}

func TestConfigListenMode(t *testing.T) {
	tests := []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0660", 0o660, true},
		{"600", 0o600, true},
		{"0o640", 0o640, true},
		{"0777", 0o777, true},
		{"01777", 0, false},
		{"0980", 0, false},
		{"rw-rw----", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ListenConfig{SocketMode: tt.in}.Mode()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Mode(%q) = %o, %v", tt.in, got, err)
		}
	}
}

func TestConfigReadersResolve(t *testing.T) {
	uids, gids, err := Readers{
		Users:  []string{"root", "4242"},
		Groups: []string{"root", "4343"},
		UIDs:   []int{1000},
		GIDs:   []int{1001},
	}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(uids) != 3 || uids[0] != 0 || uids[1] != 4242 || uids[2] != 1000 {
		t.Errorf("uids = %v", uids)
	}
	if len(gids) != 3 || gids[0] != 0 || gids[1] != 4343 || gids[2] != 1001 {
		t.Errorf("gids = %v", gids)
	}

	_, _, err = Readers{Users: []string{"no-such-user-x", "root"}, Groups: []string{"no-such-group-y"}, UIDs: []int{-1}}.Resolve()
	got := errLines(err)
	want := []string{`daemon: unknown user "no-such-user-x"`, `daemon: uid -1 is out of range`, `daemon: unknown group "no-such-group-y"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s", strings.Join(got, "\n"))
	}
}

func TestConfigParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		spec string
		next time.Time // zero: invalid
	}{
		{"@every 15s", from.Add(15 * time.Second)},
		{"0 3 * * *", time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)},
		{"*/20 * * * *", from.Add(20 * time.Minute)},
		{"0 3 * * * *", time.Time{}}, // six fields: seconds are not accepted
		{"@fortnightly", time.Time{}},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		s, err := ParseSchedule(tt.spec)
		if tt.next.IsZero() {
			if err == nil {
				t.Errorf("ParseSchedule(%q) accepted", tt.spec)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tt.spec, err)
			continue
		}
		if got := s.Next(from); !got.Equal(tt.next) {
			t.Errorf("ParseSchedule(%q).Next = %v, want %v", tt.spec, got, tt.next)
		}
	}
}

func TestConfigExplain(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(exampleFiles(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c.explain(&buf, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	out := buf.String()
	for _, want := range []string{
		"store:     /var/lib/tokend/tokend.db (sealed with AES-256-GCM, key from " + dir + "/store.key)",
		"socket:    /run/tokend/tokend.sock (mode 0660, group root)",
		"refreshes at 75% of a token's lifetime (±5%) or when less than 1m0s remains",
		"operators: root, groups adm",
		"  corp: discovery from https://id.example.com",
		"    token:                https://legacy.example.com/oauth/token",
		"  corp-app: provider corp, client_id tokend-prod, client_secret_basic, secret from " + dir + "/corp-app.secret",
		"  corp-dynamic: provider corp, dynamic registration, client_secret_basic, secret from registration",
		"  legacy-cli: provider legacy, client_id tokend-cli, none, no secret (public client)",
		"  reports-api: authorization_code via client corp-app (provider corp)",
		"    scopes:   openid offline_access reports:read",
		"    readers:  users daemon",
		`    schedule: "0 3 * * *", next forced refresh 2026-11-24T03:00:00Z`,
		"  legacy-batch: password via client legacy-cli (provider legacy)",
		"    username: svc-batch",
		"    readers:  uids 1001",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Explain lacks %q", want)
		}
	}
	for _, secret := range []string{"s3cret-client", "pa55-word", "0707070707"} {
		if strings.Contains(out, secret) {
			t.Errorf("Explain shows a secret %q", secret)
		}
	}
	if t.Failed() {
		t.Logf("Explain:\n%s", out)
	}
}
