package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompleteWords(t *testing.T) {
	list := `{"grants":[{"name":"demo","state":"valid"},{"name":"demo-user","state":"pending_authorization"},{"name":"github","state":"valid"}]}`
	f := newFakeDaemon(t, map[string][]reply{"GET /v1/tokens": {{200, list}}})
	tests := []struct {
		words []string
		env   string
		want  string
	}{
		{[]string{"st"}, "", "store\nstatus\n"},
		{[]string{""}, "", strings.Join(visibleCommandNames(), "\n") + "\n"},
		{[]string{"token", "--so"}, "", "--socket\n"},
		{[]string{"status", "-"}, "", "--json\n--socket\n--timeout\n--help\n"},
		// Grant names from the socket typed on the line, or the environment.
		{[]string{"token", "--socket", f.socket, "de"}, "", "demo\ndemo-user\n"},
		{[]string{"token", "-socket=" + f.socket, ""}, "", "demo\ndemo-user\ngithub\n"},
		{[]string{"authorize", "g"}, f.socket, "github\n"},
		{[]string{"credential", "kubectl", "gi"}, f.socket, "github\n"},
		{[]string{"exec", "demo", "gi"}, f.socket, "github\n"},
		{[]string{"token", "demo", ""}, f.socket, ""},
		// A flag's value and exec's command are the shell's (files).
		{[]string{"token", "--socket", ""}, f.socket, ""},
		{[]string{"exec", "demo", "--", "c"}, f.socket, ""},
		{[]string{"credential", ""}, "", "git\nkubectl\ndocker\nheaders\n"},
		{[]string{"credential", "git", ""}, "", "get\nstore\nerase\n"},
		{[]string{"completion", ""}, "", "bash\nzsh\nfish\n"},
		{[]string{"store", ""}, "", "copy\n"},
		{[]string{"store", "copy", "--f"}, "", "--force\n--from\n"},
		{[]string{"help", "to"}, "", "token\n"},
		{[]string{"dev", "--c"}, "", "--config\n"},
		// No daemon there: nothing, quickly.
		{[]string{"token", "--socket", "/nonexistent/s", ""}, "", ""},
	}
	for _, tt := range tests {
		tc := newTestCLI()
		if tt.env != "" {
			tc.env["TOKEND_SOCKET"] = tt.env
		}
		if code := tc.run(append([]string{"__complete"}, tt.words...)...); code != exitOK {
			t.Errorf("%q: exit %d", tt.words, code)
		}
		if tc.out.String() != tt.want {
			t.Errorf("%q: got %q, want %q", tt.words, tc.out.String(), tt.want)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		tc := newTestCLI()
		if code := tc.run("completion", sh); code != exitOK || !strings.Contains(tc.out.String(), "__complete") {
			t.Errorf("completion %s: exit %d, %q", sh, code, tc.out.String())
		}
	}
	tc := newTestCLI()
	if code := tc.run("completion", "tcsh"); code != exitUsage {
		t.Errorf("completion tcsh: exit %d", code)
	}
	tc = newTestCLI()
	if code := tc.run("completion"); code != exitUsage {
		t.Errorf("completion: exit %d", code)
	}
}

// The bash script, loaded in a real bash, completes from what
// `tokend __complete` prints (here a stand-in that records its words).
func TestBashCompletionScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "tokend")
	os.WriteFile(stub, []byte("#!/bin/sh\nprintf '%s|' \"$@\" > \""+dir+"/words\"\nprintf 'demo\\ndemo-user\\ngithub\\n'\n"), 0o755)
	script := filepath.Join(dir, "completion.bash")
	tc := newTestCLI()
	tc.run("completion", "bash")
	os.WriteFile(script, tc.out.Bytes(), 0o644)
	out, err := exec.Command(bash, "-c", `source "$1"; COMP_WORDS=("$2" token --socket /s de); COMP_CWORD=4; _tokend; printf '%s\n' "${COMPREPLY[@]}"`, "bash", script, stub).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if string(out) != "demo\ndemo-user\n" {
		t.Errorf("COMPREPLY %q", out)
	}
	words, _ := os.ReadFile(filepath.Join(dir, "words"))
	if string(words) != "__complete|token|--socket|/s|de|" {
		t.Errorf("__complete got %q", words)
	}
}
