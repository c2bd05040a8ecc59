package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func hookConfig(t *testing.T, secret, hooks string) string {
	t.Helper()
	return `
store: {path: /tmp/x.db}
providers: {p: {token_endpoint: "https://id.example.com/token"}}
clients: {c: {provider: p, client_id: app, client_secret_file: ` + secret + `}}
grants: {g: {client: c, type: client_credentials, readers: {uids: [0]}}}
hooks:
` + hooks
}

func TestHooksValidate(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, hooks, want string
	}{
		{"http non-loopback", `  - {events: [refreshed], url: "http://hooks.example.com/x", secret_file: ` + secret + `}`, `hooks[0].url: "http://hooks.example.com/x" uses http to a non-loopback host: use https`},
		{"credentials in url kept out", `  - {events: [refreshed], url: "http://user:pw@hooks.example.com/x?k=v", secret_file: ` + secret + `}`, `"http://…@hooks.example.com/x?…" uses http`},
		{"no secret", `  - {events: [refreshed], url: "https://hooks.example.com/x"}`, "needs secret_file or secret_credential"},
		{"unknown event", `  - {events: [refreshd], command: [true]}`, `hooks[0].events[0]: "refreshd" is not one of refreshed, failing`},
		{"no events", `  - {command: [true]}`, "hooks[0].events: must list at least one"},
		{"unknown grant", `  - {events: [failing], grants: [nope], command: [true]}`, `grant "nope" is not defined`},
		{"both", `  - {events: [failing], command: [true], url: "https://h.example.com/", secret_file: ` + secret + `}`, "has both a command and a url"},
		{"neither", `  - {events: [failing]}`, "needs a command"},
		{"unknown key", `  - {events: [failing], command: [true], shell: true}`, "shell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(path, []byte(hookConfig(t, secret, tc.hooks)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") || strings.Contains(err.Error(), "k=v") {
				t.Fatalf("error shows the URL's credentials: %v", err)
			}
		})
	}
}

func TestHooksLoadAndExplain(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hook.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.yaml")
	hooks := `  - {events: [refreshed, recovered], command: [systemctl, reload, nginx]}
  - {name: alerts, events: [failing, reauthorization_required], grants: [g], url: "http://127.0.0.1:9000/hook?token=abc", secret_file: ` + secret + `, timeout: 3s}
`
	if err := os.WriteFile(path, []byte(hookConfig(t, secret, hooks)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hooks[0].Timeout != DefaultHookTimeout || c.Hooks[1].Timeout.String() != "3s" {
		t.Fatalf("timeouts %s, %s", c.Hooks[0].Timeout, c.Hooks[1].Timeout)
	}
	if c.Hooks[1].Secret.Reveal() != "s3cret" || c.Hooks[0].Label(0) != "hook0" || c.Hooks[1].Label(1) != "alerts" {
		t.Fatalf("hooks: %+v", c.Hooks)
	}
	if !c.Hooks[1].Wants("failing", "g") || c.Hooks[1].Wants("failing", "other") || c.Hooks[1].Wants("refreshed", "g") {
		t.Fatal("Wants")
	}
	var b strings.Builder
	c.Explain(&b)
	out := b.String()
	for _, want := range []string{
		"hooks (2):",
		`hook0: on refreshed, recovered of every grant; timeout 10s`,
		`runs "systemctl reload nginx" (no shell)`,
		"alerts: on failing, reauthorization_required of grants g; timeout 3s",
		"http://127.0.0.1:9000/hook?…",
		"signed with HMAC-SHA256 (secret from " + secret + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "token=abc") || strings.Contains(out, "s3cret") {
		t.Fatalf("explain shows a secret:\n%s", out)
	}
}
