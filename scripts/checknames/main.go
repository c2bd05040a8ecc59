// Command checknames fails when a name or a comment says when something
// was added instead of what it is: an issue, finding or review number in a
// tracked file's name, in a declared Go identifier, or in a comment of a Go,
// shell, Makefile, YAML or JavaScript file. It also fails on a Go source
// file that grew long without its package saying why. `make lint` runs it:
//
//	go run ./scripts/checknames [DIR]
//
// It lists the files git tracks in DIR (default: the current directory),
// prints FILE:LINE: WHAT (FILE: WHAT for a whole file) for each name,
// comment or file it refuses, and exits 1 when there is one.
//
// What it refuses:
//   - in comments (and every line of a non-Go file): the word issue,
//     finding(s) or review(s) followed by a number, with or without "#" or
//     "-", also when the number starts the next comment line;
//   - in file names and declared Go identifiers (functions, methods, types,
//     top-level constants and variables): "issue", "finding" or "review"
//     followed by a digit, and a one- or two-digit number that ends a word
//     (explainGrant14, Setup0, TestHarness14DPoP, grants14.go), unless the
//     word is one of the few in allowedWord (oauth2, utf8, int64, kill9,
//     ...) or a version (APIV2). A single letter and its index (t0, k1),
//     numbers inside a word (e2e, k8s, b2f) and numbers of three or more
//     digits (x509, sha256, Fault503, rfc8414) are what they name;
//   - a Go file other than a test or generated code that is over maxLines
//     (600) lines, unless its package's doc comment (doc.go, usually) has
//     a "# Long files" section with a paragraph that names the file and
//     says why it is long (some words beside its name). A long file is
//     usually several concepts; split it by concept, or give the reason.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

var (
	// issuePhrase is a reference to an issue, finding or review by number
	// in prose. A line break (with its comment marker) may separate the
	// word from the number.
	issuePhrase = regexp.MustCompile(`(?i)\b(?:issue|findings?|reviews?)[ \t-]*(?:\n[ \t]*(?://|#|\*)?[ \t]*)?#?[0-9]+\b`)

	// issueWord is an issue, finding or review number glued to its word
	// in a name: the word, maybe a "-" or "_", and a digit.
	issueWord = regexp.MustCompile(`(?i)(?:issue|finding|review)[-_]?[0-9]`)

	// wordNumber is a run of letters, a number, and what ends the word:
	// an upper-case letter (the next camel-case word), '_', '.', '-' or
	// the end of the name.
	wordNumber = regexp.MustCompile(`([A-Za-z]+)([0-9]+)(?:[A-Z_.\-]|$)`)

	// allowedWord are words that end in a number of their own. Keep it
	// short: each entry is a real name, not an exception for one file.
	allowedWord = regexp.MustCompile(`(?i)(?:oauth2|http2|utf8|utf16|sha1|md5|base32|base64|b64|u?int(?:8|16|32|64)|float(?:32|64)|pkcs[18]|ipv[46]|tls1[0-3]|kill9)$`)
)

// Problem is one refused name or comment.
type Problem struct {
	File string
	Line int
	What string
}

// String is FILE:LINE: WHAT, or FILE: WHAT for a file's name.
func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.What)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.What)
}

// numberedName says why name carries an issue number, or "" when it does
// not.
func numberedName(name string) string {
	if issueWord.MatchString(name) {
		return fmt.Sprintf("%q names an issue, finding or review by number: name it for what it is", name)
	}
	for _, m := range wordNumber.FindAllStringSubmatch(name, -1) {
		letters, digits := m[1], m[2]
		if len(digits) > 2 || len(letters) == 1 || allowedWord.MatchString(letters+digits) || strings.HasSuffix(letters, "V") {
			continue
		}
		return fmt.Sprintf("%q ends a word with a number (%s%s): name it for what it is", name, letters, digits)
	}
	return ""
}

// checkedText reports whether the comments of file (a path relative to the
// checked tree) are checked, as lines of text; Go files are parsed instead.
func checkedText(file string) bool {
	base := path.Base(file)
	switch path.Ext(base) {
	case ".sh", ".yaml", ".yml", ".mjs", ".js":
		return true
	}
	return base == "Makefile" || path.Dir(file) == "scripts" && path.Ext(base) == ""
}

// Check checks files (paths relative to root, slash-separated) and returns
// what it refuses, sorted by file and line.
func Check(root string, files []string) ([]Problem, error) {
	var ps []Problem
	for _, f := range files {
		if why := numberedName(path.Base(f)); why != "" {
			ps = append(ps, Problem{f, 0, "file name " + why})
		}
		isGo := strings.HasSuffix(f, ".go")
		if !isGo && !checkedText(f) {
			continue
		}
		src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, still in the index
		}
		if err != nil {
			return nil, fmt.Errorf("checknames: %w", err)
		}
		if isGo {
			ps = append(ps, checkGo(f, src)...)
			if p, ok := longFile(root, files, f, src); !ok {
				ps = append(ps, p)
			}
		} else {
			ps = append(ps, phrases(f, 1, string(src))...)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
	return ps, nil
}

// maxLines is the length of a Go source file past which its package must
// say why it is that long.
const maxLines = 600

// generated is the line that marks a generated Go file (go help generate).
var generated = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// longFile checks the length of file (a Go file among files, read as src):
// ok unless it is a non-test, non-generated file over maxLines lines whose
// package doc does not say why.
func longFile(root string, files []string, file string, src []byte) (Problem, bool) {
	if strings.HasSuffix(file, "_test.go") || generated.Match(src) {
		return Problem{}, true
	}
	n := bytes.Count(src, []byte("\n"))
	if len(src) > 0 && src[len(src)-1] != '\n' {
		n++
	}
	if n <= maxLines {
		return Problem{}, true
	}
	base := path.Base(file)
	if longFileReason(packageDoc(root, files, path.Dir(file)), base) {
		return Problem{}, true
	}
	return Problem{file, 0, fmt.Sprintf("%d lines, over %d: split it by concept, or say why in a paragraph naming %s in the package doc's \"# Long files\" section", n, maxLines, base)}, false
}

// packageDoc returns the package doc comments of the non-test Go files
// among files in directory dir (slash-separated, relative to root).
func packageDoc(root string, files []string, dir string) string {
	var doc strings.Builder
	for _, f := range files {
		if path.Dir(f) != dir || !strings.HasSuffix(f, ".go") || strings.HasSuffix(f, "_test.go") {
			continue
		}
		pf, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(f)), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil || pf.Doc == nil {
			continue
		}
		doc.WriteString(pf.Doc.Text())
		doc.WriteString("\n")
	}
	return doc.String()
}

// longFileReason reports whether doc's "# Long files" section has a
// paragraph that names file and says something beside it.
func longFileReason(doc, file string) bool {
	name := regexp.MustCompile(`(^|[^\w.])` + regexp.QuoteMeta(file) + `($|[^\w])`)
	in := false
	for _, para := range strings.Split(doc, "\n\n") {
		para = strings.TrimSpace(para)
		if strings.HasPrefix(para, "# ") {
			in = strings.EqualFold(strings.TrimSpace(para[2:]), "Long files")
			continue
		}
		if !in || !name.MatchString(para) {
			continue
		}
		// The reason: a few words that are not the file's name.
		if len(strings.Fields(name.ReplaceAllString(para, " "))) >= 4 {
			return true
		}
	}
	return false
}

// phrases finds issuePhrase in text, whose first line is line first of
// file.
func phrases(file string, first int, text string) []Problem {
	var ps []Problem
	for _, loc := range issuePhrase.FindAllStringIndex(text, -1) {
		m := strings.Join(strings.Fields(text[loc[0]:loc[1]]), " ")
		ps = append(ps, Problem{file, first + strings.Count(text[:loc[0]], "\n"),
			fmt.Sprintf("%q: say what the comment guards, not which issue or finding it came from", m)})
	}
	return ps
}

// checkGo checks a Go file's comments and declared names. A file that does
// not parse is left to the compiler.
func checkGo(file string, src []byte) []Problem {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return nil
	}
	var ps []Problem
	for _, g := range f.Comments {
		// The group as written, markers included, so that a number on
		// the next line is found and lines are counted right.
		start, end := fset.Position(g.Pos()), fset.Position(g.End())
		ps = append(ps, phrases(file, start.Line, string(src[start.Offset:end.Offset]))...)
	}
	name := func(id *ast.Ident) {
		if id == nil || id.Name == "_" {
			return
		}
		if why := numberedName(id.Name); why != "" {
			ps = append(ps, Problem{file, fset.Position(id.Pos()).Line, why})
		}
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name(d.Name)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					name(s.Name)
				case *ast.ValueSpec:
					for _, id := range s.Names {
						name(id)
					}
				}
			}
		}
	}
	// Types declared inside functions are names too.
	ast.Inspect(f, func(n ast.Node) bool {
		if fd, ok := n.(*ast.FuncDecl); ok && fd.Body != nil {
			ast.Inspect(fd.Body, func(n ast.Node) bool {
				if ts, ok := n.(*ast.TypeSpec); ok {
					name(ts.Name)
				}
				return true
			})
			return false
		}
		return true
	})
	return ps
}

// tracked lists the files git tracks under dir.
func tracked(dir string) ([]string, error) {
	cmd := exec.Command("git", "-C", dir, "ls-files", "-z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("checknames: git ls-files: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var files []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, 0); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		files = append(files, sc.Text())
	}
	return files, sc.Err()
}

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	files, err := tracked(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ps, err := Check(dir, files)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, p := range ps {
		fmt.Println(p)
	}
	if len(ps) > 0 {
		fmt.Fprintf(os.Stderr, "checknames: %d names, comments or files refused: name them for what they are; split a long file or say why it is long\n", len(ps))
		os.Exit(1)
	}
}
