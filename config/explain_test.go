package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestConfigExplain(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	dir := t.TempDir()
	c, _, err := exampleAccounts().loader().Load(writeExample(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c.explain(&buf, time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	out := buf.String()
	for _, want := range []string{
		"store:     /var/lib/tokend/tokend.db (sealed with AES-256-GCM, key from " + dir + "/store.key)",
		"socket:    /run/tokend/tokend.sock (mode 0660, group tokend-clients)",
		`refresh:   wakes on "@every 15s"; refreshes at 75% of a token's lifetime (±5%) or when less than 1m0s remains`,
		"operators: root, groups tokend-admin",
		"  corp: discovery from https://id.example.com",
		"    token:                https://legacy.example.com/oauth/token",
		"  corp-app: provider corp, client_id tokend-prod, client_secret_basic, secret from " + dir + "/corp-app.secret",
		"  corp-dynamic: provider corp, dynamic registration, client_secret_basic, secret from registration",
		"  legacy-cli: provider legacy, client_id tokend-cli, none, no secret (public client)",
		"  reports-api: authorization_code via client corp-app (provider corp)",
		"    scopes:   openid offline_access reports:read",
		"    readers:  users reports",
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

	// The mode is shown as tokend applies it, however the file wrote it.
	c = mustParse(t, minimal+"listen: {socket_mode: 0o640}\n")
	buf.Reset()
	c.Explain(&buf)
	if !strings.Contains(buf.String(), "(mode 0640)") {
		t.Errorf("Explain:\n%s", buf.String())
	}
}
