package metrics

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The package doc and the operations guide list every series the package
// declares, so a reader of either sees them all.
func TestDocListsEverySeries(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`"(tokend_[a-z_]+)"`)
	listed := regexp.MustCompile(`(?m)^//\t(tokend_[a-z_]+)`)
	ops, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for _, m := range listed.FindAllSubmatch(doc, -1) {
		inDoc[string(m[1])] = true
	}
	declared := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "doc.go" {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			declared++
			if !inDoc[string(m[1])] {
				t.Errorf("%s declares %s, which the package doc's list of series leaves out", f, m[1])
			}
			if !strings.Contains(string(ops), "`"+string(m[1])) {
				t.Errorf("%s declares %s, which docs/operations.md does not name", f, m[1])
			}
		}
	}
	if declared < 20 {
		t.Fatalf("found %d series names in the package's files; the pattern no longer matches how they are declared", declared)
	}
}
