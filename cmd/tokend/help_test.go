package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

func TestCommandHelp(t *testing.T) {
	for _, cmd := range []string{"serve", "dev", "token", "status", "authorize", "refresh", "revoke", "reload", "credential", "exec", "mcp", "check-config", "rekey", "store copy"} {
		words := strings.Fields(cmd)
		viaHelp := newTestCLI()
		if code := viaHelp.run(append([]string{"help"}, words...)...); code != exitOK {
			t.Errorf("help %s: exit %d, stderr %q", cmd, code, viaHelp.errOut.String())
		}
		viaFlag := newTestCLI()
		if code := viaFlag.run(append(words, "--help")...); code != exitOK {
			t.Errorf("%s --help: exit %d, stderr %q", cmd, code, viaFlag.errOut.String())
		}
		if viaHelp.out.String() != viaFlag.out.String() {
			t.Errorf("help %s and %s --help differ:\n%s\n---\n%s", cmd, cmd, viaHelp.out.String(), viaFlag.out.String())
		}
		if viaFlag.errOut.Len() != 0 {
			t.Errorf("%s --help wrote to stderr: %q", cmd, viaFlag.errOut.String())
		}
		out := viaFlag.out.String()
		for _, want := range []string{"tokend " + cmd + ": ", "Usage:\n  tokend " + cmd, "Flags (-name and --name are the same):\n  --"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, out)
			}
		}
		if strings.Contains(out, "Usage of") || regexp.MustCompile(`\n  -[a-z]`).MatchString(out) {
			t.Errorf("%s --help shows bare flag output or single-dash flags:\n%s", cmd, out)
		}
		if cmd != "reload" && !strings.Contains(out, "Examples:\n  ") {
			t.Errorf("%s --help has no examples:\n%s", cmd, out)
		}
	}
}

func TestHelpOfCommandsWithoutFlags(t *testing.T) {
	for _, cmd := range []string{"version", "completion", "man"} {
		tc := newTestCLI()
		if code := tc.run(cmd, "--help"); code != exitOK || !strings.HasPrefix(tc.out.String(), "tokend "+cmd+": ") {
			t.Errorf("%s --help: exit %d, %q %q", cmd, code, tc.out.String(), tc.errOut.String())
		}
	}
}

func TestHelpFlagsSpelledWithTwoDashes(t *testing.T) {
	tc := newTestCLI()
	tc.run("dev", "--help")
	for _, want := range []string{"--config FILE", "--dir DIR", "--ttl DURATION", "--metrics ADDR"} {
		if !strings.Contains(tc.out.String(), want) {
			t.Errorf("dev --help lacks %q:\n%s", want, tc.out.String())
		}
	}
}

func TestTimeoutHelpPerCommand(t *testing.T) {
	help := func(cmd string) string {
		tc := newTestCLI()
		tc.run(cmd, "--help")
		for _, line := range strings.Split(tc.out.String(), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "--timeout") {
				return line
			}
		}
		t.Fatalf("%s --help has no --timeout", cmd)
		return ""
	}
	if !strings.Contains(help("token"), "a fetch may wait for a refresh") {
		t.Errorf("token --timeout: %q", help("token"))
	}
	for _, cmd := range []string{"status", "revoke", "reload", "refresh", "authorize"} {
		if h := help(cmd); strings.Contains(h, "a fetch may wait") {
			t.Errorf("%s --timeout speaks of a fetch: %q", cmd, h)
		}
	}
	if h := help("reload"); !strings.Contains(h, "new configuration") {
		t.Errorf("reload --timeout: %q", h)
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	for typed, want := range map[string]string{"stauts": "status", "tokn": "token", "revok": "revoke", "chek-config": "check-config"} {
		tc := newTestCLI()
		if code := tc.run(typed); code != exitUsage {
			t.Errorf("%s: exit %d", typed, code)
		}
		if !strings.Contains(tc.errOut.String(), "Did you mean this?\n\t"+want+"\n") {
			t.Errorf("%s: stderr %q, want a suggestion of %s", typed, tc.errOut.String(), want)
		}
	}
	tc := newTestCLI()
	tc.run("frobnicate")
	if strings.Contains(tc.errOut.String(), "Did you mean") {
		t.Errorf("frobnicate: suggested %q", tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("help", "stauts"); code != exitUsage || !strings.Contains(tc.errOut.String(), "\tstatus\n") {
		t.Errorf("help stauts: exit %d, %q", code, tc.errOut.String())
	}
}

// The man page is generated from the help's source: every visible command
// and every flag of its FlagSet appear, and a real man(1) renders it
// without warnings.
func TestManPage(t *testing.T) {
	tc := newTestCLI()
	if code := tc.run("man"); code != exitOK {
		t.Fatalf("man: exit %d, %s", code, tc.errOut.String())
	}
	page := tc.out.String()
	if !strings.Contains(page, ".TH TOKEND 1 ") {
		t.Fatalf("no .TH line:\n%s", page)
	}
	for _, d := range commandDocs {
		if d.group == "" {
			if strings.Contains(page, ".SS \""+roff("tokend "+d.name)) {
				t.Errorf("hidden command %s in the man page", d.name)
			}
			continue
		}
		if !strings.Contains(page, ".SS \""+roff("tokend "+d.usage)) {
			t.Errorf("man page lacks command %s", d.name)
		}
		if fs := tc.commandFlags(d); fs != nil {
			for _, f := range flagNames(fs) {
				if f != "--help" && !strings.Contains(page, `\fB`+roff(f)+`\fR`) {
					t.Errorf("man page lacks %s's flag %s", d.name, f)
				}
			}
		}
	}
	if code := newTestCLI().run("man", "x"); code != exitUsage {
		t.Errorf("man x: exit %d", code)
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed")
	}
	cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", "-")
	cmd.Stdin = strings.NewReader(page)
	cmd.Env = append(cmd.Environ(), "MANWIDTH=80", "MAN_KEEP_FORMATTING=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// man drops privileges and reads back what it wrote: the 077 umask
	// that tokend dev and serve, run in-process by other tests, leave
	// truncates its output.
	defer syscall.Umask(syscall.Umask(0o022))
	if err := cmd.Run(); err != nil {
		t.Fatalf("man: %v: %s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("man --warnings: %s", stderr.String())
	}
	// man's terminal output emboldens by overstriking: "t\bt".
	rendered := regexp.MustCompile(".\b").ReplaceAllString(stdout.String(), "")
	rendered = strings.Join(strings.Fields(rendered), " ")
	if !strings.Contains(rendered, "tokend token NAME") {
		t.Errorf("rendered page lacks the token command:\n%s", stdout.String())
	}
}

// Flags keep both spellings, -name and --name, with = or a separate
// value, before or after NAME; serve and dev included.
func TestFlagSpellings(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/demo":        {{200, "at-1\n"}},
		"GET /v1/tokens/demo/status": {{200, `{"name":"demo","state":"valid"}`}},
	})
	for _, args := range [][]string{
		{"token", "-socket", f.socket, "demo"},
		{"token", "demo", "-socket=" + f.socket},
		{"token", "--socket=" + f.socket, "demo", "-timeout", "5s"},
		{"status", "demo", "-json", "--socket", f.socket},
	} {
		tc := newTestCLI()
		if code := tc.run(args...); code != exitOK {
			t.Errorf("%q: exit %d, %s", args, code, tc.errOut.String())
		}
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, args := range [][]string{
		{"serve", "-config", missing},
		{"serve", "--config=" + missing},
		{"dev", "-config", missing, "-dir", t.TempDir(), "-metrics", "127.0.0.1:0", "-provider", "127.0.0.1:0"},
	} {
		tc := newTestCLI()
		if code := tc.run(args...); code != exitError || !strings.Contains(tc.errOut.String(), "none.yaml") {
			t.Errorf("%q: exit %d, stderr %q", args, code, tc.errOut.String())
		}
	}
	tc := newTestCLI()
	if code := tc.run("serve", "extra"); code != exitUsage || !strings.Contains(tc.errOut.String(), `unexpected argument "extra"`) {
		t.Errorf("serve extra: exit %d, %q", code, tc.errOut.String())
	}
	tc = newTestCLI()
	if code := tc.run("dev", "--bogus"); code != exitUsage || !strings.Contains(tc.errOut.String(), "usage: tokend dev") {
		t.Errorf("dev --bogus: exit %d, %q", code, tc.errOut.String())
	}
}
