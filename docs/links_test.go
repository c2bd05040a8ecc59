// Package docs holds no code: its tests keep the relative links of
// README.md, ARCHITECTURE.md and docs/*.md pointing at files and headings
// that exist, and a runbook entry in docs/operations.md for every alerting
// rule of deploy/prometheus.
package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// pages returns the Markdown files whose links are checked, relative to the
// repository root.
func pages(t *testing.T, root string) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md"), filepath.Join(root, "ARCHITECTURE.md")}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, more...)
}

var (
	linkRe     = regexp.MustCompile(`\]\(([^()\s]+)\)`)
	codeSpanRe = regexp.MustCompile("`[^`]*`")
	// anchorDrop is what GitHub removes from a heading to make its anchor:
	// everything but letters, digits, spaces, '-' and '_'.
	anchorDrop = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// prose returns a Markdown file's lines, those in fenced code blocks
// (and the fences) blanked.
func prose(text string) []string {
	lines := strings.Split(text, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
		} else if fenced {
			lines[i] = ""
		}
	}
	return lines
}

// anchors returns the anchors GitHub gives the headings of a Markdown text:
// lower case, punctuation removed except '-' and '_', spaces as '-', and
// "-1", "-2", … after a repeated one.
func anchors(text string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, l := range prose(text) {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		a := strings.ReplaceAll(anchorDrop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if n := seen[a]; n > 0 {
			out[a+"-"+strconv.Itoa(n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// brokenLinks returns a message for each relative link in file that names
// a missing file, or a heading its target does not have.
func brokenLinks(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var broken []string
	for n, l := range prose(string(b)) {
		l = codeSpanRe.ReplaceAllString(l, "")
		for _, m := range linkRe.FindAllStringSubmatch(l, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
			}
			if _, err := os.Stat(dest); err != nil {
				broken = append(broken, file+":"+strconv.Itoa(n+1)+": "+target+": no file "+dest)
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				broken = append(broken, file+":"+strconv.Itoa(n+1)+": "+target+": an anchor into a file that is not Markdown")
				continue
			}
			db, err := os.ReadFile(dest)
			if err != nil {
				return nil, err
			}
			if !anchors(string(db))[anchor] {
				broken = append(broken, file+":"+strconv.Itoa(n+1)+": "+target+": "+dest+" has no heading #"+anchor)
			}
		}
	}
	return broken, nil
}

// TestRelativeLinks fails on a relative link of README.md,
// ARCHITECTURE.md or docs/*.md to a file that does not exist or to a
// heading its target does not have.
func TestRelativeLinks(t *testing.T) {
	files := pages(t, "..")
	if len(files) < 4 {
		t.Fatalf("only %d pages found: %v", len(files), files)
	}
	for _, f := range files {
		broken, err := brokenLinks(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range broken {
			t.Error(b)
		}
	}
}

// TestBrokenLinksFound checks the checker on a page with a good link, a
// link to a missing file and a link to a missing heading.
func TestBrokenLinksFound(t *testing.T) {
	dir := t.TempDir()
	page := "# Title\n\n## Shell and other programs: `tokend exec`\n\n## Title\n\n" +
		"[ok](#shell-and-other-programs-tokend-exec) [ok](#title-1) [ok](other.md#a_b-c)\n" +
		"[gone](missing.md) [no heading](other.md#nowhere)\n" +
		"`[code](not-checked.md)` [web](https://example.com/x)\n```\n[fenced](not-checked.md)\n```\n"
	if err := os.WriteFile(filepath.Join(dir, "page.md"), []byte(page), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.md"), []byte("# A_B C?\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken, err := brokenLinks(filepath.Join(dir, "page.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(broken) != 2 || !strings.Contains(broken[0], "missing.md") || !strings.Contains(broken[1], "#nowhere") {
		t.Fatalf("broken links found: %q", broken)
	}
}

// TestEveryAlertHasARunbookEntry fails when an alerting rule of
// deploy/prometheus has no heading of its own name in docs/operations.md.
func TestEveryAlertHasARunbookEntry(t *testing.T) {
	rules, err := filepath.Glob(filepath.Join("..", "deploy", "prometheus", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := os.ReadFile("operations.md")
	if err != nil {
		t.Fatal(err)
	}
	entries := anchors(string(ops))
	alerts := 0
	for _, f := range rules {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(b), -1) {
			alerts++
			if !entries[strings.ToLower(m[1])] {
				t.Errorf("%s: alert %s has no runbook entry (a heading ### %s) in docs/operations.md", f, m[1], m[1])
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerting rules found in deploy/prometheus")
	}
}
