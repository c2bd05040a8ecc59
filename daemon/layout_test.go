package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The package doc's file map names every file of the package.
func TestDocNamesEveryFile(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "doc.go" {
			continue
		}
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(f) + `\b`).Match(doc) {
			t.Errorf("doc.go's file map does not name %s", f)
		}
	}
}

// The engine serves no connection itself: it imports neither package
// server nor the net/http server types (it is an HTTP client of
// providers only).
func TestEngineServesNoHTTP(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for line := range strings.Lines(string(out)) {
		if p := strings.TrimSpace(line); p == "github.com/tokend/tokend/server" {
			t.Errorf("daemon depends on %s", p)
		}
	}
	files, _ := filepath.Glob("*.go")
	server := regexp.MustCompile(`http\.(Server|ServeMux|NewServeMux|ResponseWriter|Handler|HandlerFunc|ListenAndServe)\b`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := server.Find(b); m != nil {
			t.Errorf("%s uses %s: serving is package server's", f, m)
		}
	}
}
