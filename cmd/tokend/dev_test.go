package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// readmeDevConfig returns the YAML of the README's tokend dev --config
// example, with its directory replaced by dir.
func readmeDevConfig(t *testing.T, dir string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- the YAML below is run by TestReadmeDevConfig \\(cmd/tokend\\) -->\n```yaml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README: the tokend dev --config example is missing")
	}
	return strings.ReplaceAll(string(m[1]), "/tmp/tokend-try", dir)
}

// waitFor polls cond until it holds or the deadline passes: the daemon
// runs on real time here, its first token and hook being asynchronous.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The README's dev configuration, run as a newcomer runs it: tokend dev
// --config against the development provider, whose provider "dev" and
// client "dev-app" the file names without defining them. The sink is
// written, the hook runs, and the git credential helper answers with the
// sink's token.
func TestReadmeDevConfig(t *testing.T) {
	dir := testutil.ShortDir(t)
	cfgPath := filepath.Join(dir, "dev.yaml")
	if err := os.WriteFile(cfgPath, []byte(readmeDevConfig(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}

	tc := newTestCLI()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- tc.cli.run(ctx, []string{"dev", "--config", cfgPath, "--dir", dir, "--metrics", "127.0.0.1:0", "--provider", "127.0.0.1:0"})
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("tokend dev: exit %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("tokend dev did not stop")
		}
	}()

	sink := filepath.Join(dir, "demo.json")
	hookLog := filepath.Join(dir, "hook.log")
	waitFor(t, "the json sink and the hook", 30*time.Second, func() bool {
		_, e1 := os.Stat(sink)
		_, e2 := os.Stat(hookLog)
		return e1 == nil && e2 == nil
	})
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresAt   string `json:"expires_at"`
	}
	data, err := os.ReadFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("sink %s: %v %q", sink, err, data)
	}
	log, _ := os.ReadFile(hookLog)
	if !strings.Contains(string(log), " demo refreshed") {
		t.Errorf("hook log %q", log)
	}

	helper := newTestCLI()
	code := helper.cmdCredential(context.Background(), []string{"git", "get", "--socket", filepath.Join(dir, "tokend.sock")},
		strings.NewReader("protocol=https\nhost=git.example.com\n\n"))
	if code != exitOK {
		t.Fatalf("credential git get: exit %d, %s", code, helper.errOut.String())
	}
	// Tokens live 30 s: no refresh lands between the two reads.
	if !strings.Contains(helper.out.String(), "password="+tok.AccessToken+"\n") {
		t.Errorf("credential git get: %q", helper.out.String())
	}
}

// tokend dev prints the provider's clients and how to point tokend serve
// at it.
func TestDevBannerTellsHowToUseTheProvider(t *testing.T) {
	var b strings.Builder
	env := devEnv{dir: "/d", issuer: "http://127.0.0.1:8786", callback: "127.0.0.1:8785", metrics: "127.0.0.1:9785"}
	writeDevBanner(&b, devConfig(env), env.issuer, 30*time.Second, env.metrics, false)
	for _, want := range []string{
		"client_id " + devClientID + ", client_secret " + devClientSecret,
		"client_id " + devPublicClientID,
		`providers: {dev: {issuer: "http://127.0.0.1:8786"}}`,
		"tokend dev --config FILE",
		"go run ./cmd/tokend token demo --socket /d/tokend.sock",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, b.String())
		}
	}
}
