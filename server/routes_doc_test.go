package server

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// Every route the socket API serves is listed in package api's doc (what a
// Go program reads) and in docs/api.md (what a person reads).
func TestEveryRouteIsDocumented(t *testing.T) {
	src, err := os.ReadFile("api.go")
	if err != nil {
		t.Fatal(err)
	}
	routes := regexp.MustCompile(`mux\.HandleFunc\("(GET|POST) (/v1/[^"]+)"`).FindAllSubmatch(src, -1)
	if len(routes) < 10 {
		t.Fatalf("found %d routes in api.go; the pattern no longer matches how they are registered", len(routes))
	}
	for _, doc := range []string{filepath.Join("..", "api", "doc.go"), filepath.Join("..", "docs", "api.md")} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			method, path := string(r[1]), string(r[2])
			if !regexp.MustCompile(regexp.QuoteMeta(method) + `\s+` + regexp.QuoteMeta(path) + `($|[\s` + "`" + `?])`).Match(b) {
				t.Errorf("%s does not list %s %s", doc, method, path)
			}
		}
	}
}
