package config

// Collecting errors and warnings, each located by file, line and key
// path, and reporting them at once in the order of their lines.

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// problems collects errors and warnings, each located by key path and,
// when the config came from YAML, by file and line.
type problems struct {
	name  string         // file name; "" for a Config built in code
	lines map[string]int // key path → line of the key
	errs  []problem
	warns []string
	// undecoded is the decoder's error for a tree the check passed.
	undecoded error
	// socketGID is the gid that may connect to the socket (-1: none),
	// which no secret file may be readable by; set by resolveSecrets.
	socketGID int
}

// problem is one error and the line it is about (0: none), by which
// problems are sorted.
type problem struct {
	line int
	msg  string
}

func (p *problems) add(line int, msg string) {
	p.errs = append(p.errs, problem{line, msg})
}

// where locates path: "file:line: path", or "config: path" for a Config
// built in code.
func (p *problems) where(line int, path string) string {
	if p.name == "" {
		if path == "" {
			return "config"
		}
		return "config: " + path
	}
	loc := p.name
	if line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	if path == "" {
		return loc
	}
	return loc + ": " + path
}

// line returns the line of path, or of its nearest ancestor present in the
// file (a missing key is reported where its parent is).
func (p *problems) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// errorf reports a problem of path, at the line of its key.
func (p *problems) errorf(path, format string, args ...any) {
	p.errorAt(p.line(path), path, format, args...)
}

// errorAt reports a problem of path at line.
func (p *problems) errorAt(line int, path, format string, args ...any) {
	p.add(line, p.where(line, path)+": "+fmt.Sprintf(format, args...))
}

func (p *problems) warnf(path, format string, args ...any) {
	p.warns = append(p.warns, p.where(p.line(path), path)+": "+fmt.Sprintf(format, args...))
}

// err joins the problems, in the order of their lines in the file.
func (p *problems) err() error {
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].line < p.errs[j].line })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = errors.New(e.msg)
	}
	return errors.Join(errs...)
}
