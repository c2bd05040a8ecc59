package config

// Reading and decoding the file. The YAML library parses the text into a
// node tree (the grants section a block of grants at a time, when its
// text allows: see decode); the loader then checks that tree itself
// against the Config type, by reflection: every key (with a suggestion
// for a misspelt one), the kind of every value, and every scalar the way
// the decoder will take it. Its messages are its own, with file, line and
// key path; it never reads the text of the library's errors. Only a tree
// that passed is decoded. A syntax error, which the parser finds before
// any of this, is reported as the parser words it, after the file name.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokend/tokend/internal/gcburst"
)

// Load reads, strictly decodes, defaults and validates the YAML file at
// path, looks up the users and groups it names, and resolves the secrets
// it names: client secrets and passwords from files or systemd
// credentials, and the store key. It returns warnings (such as a secret
// file readable by others) separately from errors; the error, when not nil,
// joins every problem found, each naming the file, line and key path.
// Secrets never appear in either.
func Load(path string) (*Config, []string, error) { return Loader{}.Load(path) }

// Parse decodes data strictly (name is the file name used in messages),
// applies defaults, validates and looks up users and groups. Unlike Load it
// reads no files: secret files and credentials are not resolved, so
// Secret, Password and Key stay zero.
func Parse(data []byte, name string) (*Config, []string, error) { return Loader{}.Parse(data, name) }

// parseGCPercent is the garbage collector's GOGC while a file is parsed,
// checked and decoded (gcburst.Lower: never raised). The heap only grows
// while the Config is built (each grant decoded is kept) as the garbage of
// parsing comes and goes; at GOGC 100 the heap grew to twice what was live
// at the last collection.
const parseGCPercent = 50

// largeFile is the size of a file from which Load and Parse, once done,
// collect the garbage of parsing it and give the memory back to the
// system (debug.FreeOSMemory). That garbage is several times the Config
// (about 600 MB allocated for 100,000 grants, for a 60 MB Config), and
// the heap it left, free but held, was where what came next (the
// daemon's start) grew from: the collector's goal after a load was twice
// what was live during it, key lines and warnings included. One
// collection (tens of milliseconds at 100,000 grants) is nothing against
// the parse; for a small file it is not worth one.
const largeFile = 1 << 20

// Load is the package's Load, looking users and groups up with l.
func (l Loader) Load(path string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	size := len(data)
	c, warns, err := l.load(data, path, true)
	releaseParse(size)
	return c, warns, err
}

// Parse is the package's Parse, looking users and groups up with l.
func (l Loader) Parse(data []byte, name string) (*Config, []string, error) {
	c, warns, err := l.load(data, name, false)
	releaseParse(len(data))
	return c, warns, err
}

// load is Load (secrets true: resolve the secrets) or Parse of data.
func (l Loader) load(data []byte, name string, secrets bool) (*Config, []string, error) {
	defer gcburst.Lower(parseGCPercent)()
	c, p := decode(data, name)
	if c == nil {
		return nil, p.warns, p.err()
	}
	if l.Preset != nil {
		l.Preset(c)
	}
	c.ApplyDefaults()
	c.validate(p, l)
	if secrets {
		c.resolveSecrets(p)
	}
	if err := p.err(); err != nil {
		return nil, p.warns, err
	}
	return c, p.warns, nil
}

// releaseParse gives the memory of parsing a file of size bytes back to
// the system once it is garbage, for a large file (largeFile).
func releaseParse(size int) {
	if size >= largeFile {
		debug.FreeOSMemory()
	}
}

// decode parses data and checks and decodes its one document into a
// Config. It returns nil and the problems when the file cannot be
// decoded; otherwise the Config and the problems so far (values that
// did not parse, reported with the rest after validation). It keeps the
// line of every key for later messages.
//
// The YAML library parses a whole document into a tree before anything
// can be checked, and that tree is by far the largest thing a load holds
// (about 150 MB for 100,000 grants, three times the Config made of it).
// So the grants section, when its text can be cut at its entries (see
// splitGrants), is never parsed whole: the rest of the document is parsed
// with the section's lines left blank, then the grants a block of entries
// at a time, each block's tree dropped once decoded. Any doubt about the
// cut (text the cut does not foresee, an anchor, a key given twice, a
// block that does not parse as the cut said) falls back to parsing the
// whole document, which decodes the same and words every problem.
func decode(data []byte, name string) (*Config, *problems) {
	if sp := splitGrants(data); sp != nil {
		if c, p, ok := decodeSplit(data, name, sp); ok {
			return c, p
		}
	}
	return decodeWhole(data, name)
}

// parseRoot parses data's one document and returns its top-level mapping
// and whether a second document (or what follows the first) stops the
// decode. When done is true there is nothing to check: c and p are
// decode's answer.
func parseRoot(data []byte, name string, p *problems) (root *yaml.Node, stop, done bool, c *Config) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF): // no document at all
		p.warnf("", "the file is empty")
		return nil, false, true, &Config{}
	case err != nil:
		p.add(0, fmt.Sprintf("%s: %v", name, err))
		return nil, false, true, nil
	}
	// A second document is refused, whatever it holds; the first is still
	// checked, so that every problem is reported at once.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(extra.Line, fmt.Sprintf("%s:%d: only one YAML document is allowed", name, extra.Line))
		stop = true
	case !errors.Is(err, io.EOF):
		p.add(0, fmt.Sprintf("%s: %v", name, err))
		stop = true
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		if stop {
			return nil, stop, true, nil
		}
		p.warnf("", "the file is empty")
		return nil, stop, true, &Config{}
	}
	root = doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, fmt.Sprintf("%s:%d: the top level must be a mapping of keys (store, listen, providers, ...)", name, root.Line))
		return nil, stop, true, nil
	}
	return root, stop, false, nil
}

// decodeWhole is decode from a tree of the whole document. The grants are
// taken out of the tree before the check, and checked and decoded a block
// at a time, their nodes dropped as they are decoded, so that the Config
// and the key lines grow as the tree shrinks instead of on top of it.
func decodeWhole(data []byte, name string) (*Config, *problems) {
	p := &problems{name: name, lines: map[string]int{}}
	root, stop, done, c := parseRoot(data, name, p)
	if done {
		return c, p
	}
	grantsKey, grants := detachGrants(root)
	ck := &checker{p: p, done: map[visit]bool{}}
	ck.check(root, reflect.TypeFor[Config](), "")
	c = &Config{}
	var err error
	if !ck.fatal && !stop {
		err = root.Decode(c)
	}
	if grants != nil {
		ck.setLine("grants", grantsKey.Line)
		c.Grants = make(map[string]Grant, len(grants.Content)/2)
		for len(grants.Content) > 0 {
			n := min(len(grants.Content), 2*grantBlock)
			block := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: grants.Line, Column: grants.Column, Content: grants.Content[:n]}
			err = ck.decodeGrants(c, block, err, stop)
			grants.Content = grants.Content[n:]
		}
	}
	return decoded(c, p, ck, stop, err)
}

// decodeSplit is decode with the grants section cut out of the text by
// splitGrants. ok is false when the parser does not see the document as
// the cut did; decode then starts again from the whole document.
func decodeSplit(data []byte, name string, sp *grantsText) (c *Config, p *problems, ok bool) {
	p = &problems{name: name, lines: map[string]int{}}
	root, stop, done, _ := parseRoot(sp.rest, name, p)
	if done || !sp.keyAlone(root) {
		return nil, nil, false
	}
	ck := &checker{p: p, done: map[visit]bool{}}
	ck.check(root, reflect.TypeFor[Config](), "")
	c = &Config{}
	var err error
	if !ck.fatal && !stop {
		err = root.Decode(c)
	}
	c.Grants = make(map[string]Grant, len(sp.entries))
	seen := make(map[string]struct{}, len(sp.entries))
	for i := 0; i < len(sp.entries); i += grantBlock {
		block, ok := sp.parseBlock(data, i, min(i+grantBlock, len(sp.entries)), seen)
		if !ok {
			return nil, nil, false
		}
		err = ck.decodeGrants(c, block, err, stop)
	}
	c, p = decoded(c, p, ck, stop, err)
	return c, p, true
}

// decodeGrants checks block, a mapping of grants, and decodes each grant
// into c.Grants (unless an error so far, err, stops decoding), letting go
// of each grant's nodes once done with them. It returns the decoder's
// first error.
func (ck *checker) decodeGrants(c *Config, block *yaml.Node, err error, stop bool) error {
	ck.check(block, yamlFields(reflect.TypeFor[Config]())["grants"], "grants")
	for i := 0; i+1 < len(block.Content); i += 2 {
		if err == nil && !ck.fatal && !stop {
			var g Grant
			err = block.Content[i+1].Decode(&g)
			c.Grants[block.Content[i].Value] = g
		}
		block.Content[i], block.Content[i+1] = nil, nil
	}
	if grantBlockDone != nil {
		grantBlockDone()
	}
	return err
}

// decoded is decode's answer once everything was checked and decoded.
func decoded(c *Config, p *problems, ck *checker, stop bool, err error) (*Config, *problems) {
	if ck.fatal || stop {
		return nil, p
	}
	if err != nil {
		// The check above accepts only what the decoder takes, so this is
		// what it cannot see: a document that expands aliases beyond the
		// decoder's limit. Reported as the decoder words it.
		p.undecoded = err
		p.add(0, fmt.Sprintf("%s: %v", p.name, err))
		return nil, p
	}
	return c, p
}

// grantsText is the grants section of a document, found in its text by
// splitGrants: the line of its key and where each entry (a grant) starts.
type grantsText struct {
	keyLine int    // 1-based line of "grants:"
	indent  int    // column of the entries' keys, 0-based
	entries []span // each entry's text in the document
	end     int    // offset just past the section
	// rest is the document with the section's entries blanked out (an
	// empty line for each of theirs, so every line keeps its number).
	rest []byte
}

// span is an entry's text, data[start:end], which starts at line.
type span struct {
	start, end, line int
}

// splitGrants finds the grants section in data's text and where each of
// its entries starts, or returns nil when the text is not of the one shape
// it cuts: a line "grants:" at the top level (nothing after the colon but
// a comment), then entries all at one indentation, each starting with a
// line "name:" (a plain name: letters, digits, "_", "-", "."), every
// other line of the section indented further, blank, or a comment, up to
// the next line that starts in the first column. decodeSplit then checks
// that the parser sees the same: one grants key on that line with nothing
// under it in the rest, and in each block exactly the entries found here,
// on their lines.
func splitGrants(data []byte) *grantsText {
	sp := &grantsText{indent: -1}
	line, inSection := 0, false
	for off := 0; off < len(data); {
		next := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			next = off + i + 1
		}
		text := bytes.TrimRight(data[off:next], "\r\n")
		line++
		if inSection && !blankOrComment(text) && text[0] != ' ' {
			inSection = false // a line in the first column ends the section
		}
		switch {
		case !inSection:
			if isGrantsKey(text) {
				if sp.keyLine != 0 {
					return nil // given twice: the whole document's check says so
				}
				sp.keyLine, sp.end, inSection = line, next, true
			}
		case blankOrComment(text):
		default:
			indent := len(text) - len(bytes.TrimLeft(text, " "))
			if sp.indent < 0 {
				sp.indent = indent
			}
			switch {
			case indent < sp.indent:
				return nil
			case indent == sp.indent:
				if !isEntryKey(text[indent:]) {
					return nil
				}
				if n := len(sp.entries); n > 0 {
					sp.entries[n-1].end = off
				}
				sp.entries = append(sp.entries, span{start: off, line: line})
			}
			if len(sp.entries) == 0 {
				return nil
			}
			sp.end = next
		}
		off = next
	}
	if len(sp.entries) == 0 {
		return nil
	}
	sp.entries[len(sp.entries)-1].end = sp.end
	// rest: the document with every line of the entries blanked.
	from, to := sp.entries[0].start, sp.end
	rest := make([]byte, 0, len(data)-(to-from)+bytes.Count(data[from:to], []byte{'\n'}))
	rest = append(rest, data[:from]...)
	for range bytes.Count(data[from:to], []byte{'\n'}) {
		rest = append(rest, '\n')
	}
	sp.rest = append(rest, data[to:]...)
	return sp
}

// isGrantsKey reports whether a line is the top-level key "grants:" with
// nothing after it but spaces and a comment.
func isGrantsKey(text []byte) bool {
	after, ok := bytes.CutPrefix(text, []byte("grants:"))
	return ok && blankOrComment(after)
}

// blankOrComment reports whether text is empty, spaces, or a comment.
func blankOrComment(text []byte) bool {
	t := bytes.TrimLeft(text, " \t")
	return len(t) == 0 || t[0] == '#'
}

// isEntryKey reports whether text (a line from its first non-space
// character) starts a grant: a plain name, then ":" at the end of the line
// or before a space.
func isEntryKey(text []byte) bool {
	name, after, ok := bytes.Cut(text, []byte(":"))
	if !ok || len(name) == 0 || (len(after) > 0 && after[0] != ' ') {
		return false
	}
	for _, b := range name {
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-', b == '.':
		default:
			return false
		}
	}
	return true
}

// keyAlone reports whether the parser found in the rest of the document
// what splitGrants did: the top-level key grants once, on its line, with
// nothing under it (its entries were blanked), and no merge at the top,
// which could bring grants of its own.
func (sp *grantsText) keyAlone(root *yaml.Node) bool {
	found := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if isMerge(k) {
			return false
		}
		if k.Kind == yaml.ScalarNode && k.Value == "grants" {
			if found || k.Line != sp.keyLine || k.Column != 1 || k.ShortTag() != "!!str" || k.Anchor != "" ||
				!isNull(v) || v.Value != "" || v.Anchor != "" {
				return false
			}
			found = true
		}
	}
	return found
}

// parseBlock parses the entries [from, to) of the section as one mapping,
// with the lines of the whole document, and checks that the parser sees
// what splitGrants did: one document, a mapping of exactly those entries,
// each key a plain string on the line where the entry starts, and in
// none of the blocks before (seen, to which it adds the keys), no anchor
// or alias. ok is false otherwise.
func (sp *grantsText) parseBlock(data []byte, from, to int, seen map[string]struct{}) (block *yaml.Node, ok bool) {
	first, last := sp.entries[from], sp.entries[to-1]
	dec := yaml.NewDecoder(bytes.NewReader(data[first.start:last.end]))
	var doc, extra yaml.Node
	if dec.Decode(&doc) != nil || !errors.Is(dec.Decode(&extra), io.EOF) || len(doc.Content) != 1 {
		return nil, false
	}
	block = doc.Content[0]
	if block.Kind != yaml.MappingNode || block.Anchor != "" || len(block.Content) != 2*(to-from) {
		return nil, false
	}
	shift := first.line - 1
	for i := 0; i < len(block.Content); i += 2 {
		k, v := block.Content[i], block.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || isMerge(k) || k.Anchor != "" ||
			k.Line+shift != sp.entries[from+i/2].line || k.Column != sp.indent+1 || hasAlias(v) {
			return nil, false
		}
		if _, dup := seen[k.Value]; dup {
			return nil, false
		}
		seen[k.Value] = struct{}{}
		addLines(k, shift)
		addLines(v, shift)
	}
	block.Line += shift
	return block, true
}

// addLines moves n and every node under it down by shift lines.
func addLines(n *yaml.Node, shift int) {
	n.Line += shift
	for _, c := range n.Content {
		addLines(c, shift)
	}
}

// grantBlock is how many grants decode checks and decodes at a time.
const grantBlock = 1024

// grantBlockDone, when set (tests), is called after each block of grants.
var grantBlockDone func()

// detachGrants takes the grants mapping out of root, for decode to check
// and decode grant by grant, and returns it and its key; nil (root
// untouched) unless it is a plain mapping of distinct names, given once,
// in a document without merges at the top. The YAML decoder checks a
// mapping's keys for duplicates pairwise, which took 150 s for 100,000
// grants; a map finds them here, and a mapping with a duplicate is left
// in the tree, for the check to report. A mapping with merge keys,
// aliases or anchors is left to the decoder, which counts alias expansion
// over the whole document.
func detachGrants(root *yaml.Node) (key, grants *yaml.Node) {
	if slices.ContainsFunc(root.Content, isMerge) {
		return nil, nil // merged keys may bring grants of their own
	}
	at := -1
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "grants" {
			if at >= 0 {
				return nil, nil // given twice: the check says so
			}
			at = i
		}
	}
	if at < 0 {
		return nil, nil
	}
	k, v := root.Content[at], root.Content[at+1]
	if v.Kind != yaml.MappingNode || v.Anchor != "" || k.Anchor != "" || hasAlias(v) {
		return nil, nil
	}
	seen := make(map[string]struct{}, len(v.Content)/2)
	for j := 0; j+1 < len(v.Content); j += 2 {
		gk := v.Content[j]
		if gk.Kind != yaml.ScalarNode || gk.ShortTag() != "!!str" || isMerge(gk) {
			return nil, nil
		}
		if _, dup := seen[gk.Value]; dup {
			return nil, nil
		}
		seen[gk.Value] = struct{}{}
	}
	root.Content = slices.Delete(slices.Clone(root.Content), at, at+2)
	return k, v
}

// hasAlias reports whether n or a node under it is an alias or an anchor.
func hasAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c) {
			return true
		}
	}
	return false
}

// checker walks a node tree against a Go type.
type checker struct {
	p *problems
	// fatal is set by a problem that stops decoding: an unknown or
	// duplicate key, or a value of the wrong kind or type. A value of one
	// of the package's own types that does not parse is not fatal: it is
	// reported, blanked in the tree, and the rest is decoded and validated.
	fatal bool
	// done holds the anchored nodes already checked against a type: a
	// node that aliases use many times is checked once (and an alias
	// inside the node it names ends there).
	done map[visit]bool
	// merging counts the merges (<<) being checked.
	merging int
}

type visit struct {
	n *yaml.Node
	t reflect.Type
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	scalarValueType = reflect.TypeFor[scalarValue]()
)

// fail reports a problem that stops decoding, at line.
func (ck *checker) fail(line int, path, format string, args ...any) {
	ck.fatal = true
	ck.p.errorAt(line, path, format, args...)
}

// check checks n, found at path, against t.
func (ck *checker) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		v := visit{n.Alias, t}
		if n.Alias == nil || ck.done[v] {
			return
		}
		ck.done[v] = true
		ck.check(n.Alias, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer: // an optional section (grants.*.assertion)
		if !isNull(n) {
			ck.check(n, t.Elem(), path)
		}
		return
	case reflect.Interface: // free-form values (assertion claims): any YAML
		return
	}
	if reflect.PointerTo(t).Implements(scalarValueType) {
		ck.checkValue(n, t, path)
		return
	}
	switch n.Kind {
	case yaml.ScalarNode:
		ck.checkScalar(n, t, path)
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct, reflect.Map:
			ck.checkMapping(n, t, path)
		default:
			ck.fail(n.Line, path, "expected %s, found a mapping", expected(t))
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice {
			ck.fail(n.Line, path, "expected %s, found a list", expected(t))
			return
		}
		for i, e := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			ck.setLine(ip, e.Line)
			ck.check(e, t.Elem(), ip)
		}
	default:
		ck.fail(n.Line, path, "expected %s", expected(t))
	}
}

// checkScalar checks that the decoder takes the scalar n as a t, by
// asking it to: its decision, not a copy of its rules, is what the later
// decode does.
func (ck *checker) checkScalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Decode(reflect.New(t).Interface()) == nil {
		return
	}
	kind, value := tagName(n), shown(n.Value)
	switch {
	case t == durationType:
		ck.fail(n.Line, path, "invalid duration %q: use a Go duration with a unit, such as \"90s\" or \"24h\"", value)
	case t.Kind() == reflect.Slice:
		ck.fail(n.Line, path, "expected a list, found %s %q", kind, value)
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		ck.fail(n.Line, path, "expected a mapping of keys, found %s %q", kind, value)
	case isNumber(t):
		ck.fail(n.Line, path, "expected a number, found %q", value)
	case t.Kind() == reflect.Bool:
		ck.fail(n.Line, path, "expected true or false, found %q", value)
	default:
		ck.fail(n.Line, path, "expected %s, found %s %q", expected(t), kind, value)
	}
}

// checkValue checks a value of one of the package's own types with its
// parser. One that does not parse is reported and blanked, so that the
// decoder leaves the field unset and the rest of the file is validated.
func (ck *checker) checkValue(n *yaml.Node, t reflect.Type, path string) {
	v := reflect.New(t).Interface().(scalarValue)
	text, ok := scalarText(n)
	if !ok {
		ck.fail(n.Line, path, "expected %s, found %s", v.expected(), kindName(n))
		return
	}
	if text == "" {
		return
	}
	err := v.parseValue(text)
	if err == nil {
		return
	}
	var ve *valueError
	if !errors.As(err, &ve) {
		ck.fail(n.Line, path, "%v", err)
		return
	}
	ck.p.errorAt(n.Line, path, "%s", ve.msg)
	n.Kind, n.Tag, n.Value, n.Style, n.Content = yaml.ScalarNode, "!!null", "", 0, nil
}

// checkMapping checks the keys and values of a mapping against a struct
// (every key must name a field) or a map (any key). Merge keys (<<) bring
// in the keys of other mappings, which are checked too.
func (ck *checker) checkMapping(n *yaml.Node, t reflect.Type, path string) {
	// The decoder refuses a mapping that repeats a key; so does the check,
	// with the path.
	type key struct {
		kind  yaml.Kind
		value string
	}
	first := make(map[key]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if line, ok := first[key{k.Kind, k.Value}]; ok {
			ck.fail(k.Line, path, "key %q is already defined at line %d", k.Value, line)
			continue
		}
		first[key{k.Kind, k.Value}] = k.Line
	}
	var fields map[string]reflect.Type
	if t.Kind() == reflect.Struct {
		fields = yamlFields(t)
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || !plainKey(k) {
			ck.fail(k.Line, path, "a key must be a plain name, found %s", kindName(k))
			continue
		}
		kp := keyPath(path, k.Value)
		var vt reflect.Type
		if fields == nil {
			vt = t.Elem() // a map's values
		} else {
			ft, ok := fields[k.Value]
			if !ok {
				in := path
				if in == "" {
					in = "the top level"
				}
				ck.fatal = true
				ck.p.add(k.Line, fmt.Sprintf("%s:%d: unknown key %q in %s%s", ck.p.name, k.Line, k.Value, in, suggest(k.Value, fields)))
				continue
			}
			vt = ft
		}
		ck.setLine(kp, k.Line)
		ck.check(v, vt, kp)
	}
	for _, m := range merges {
		ck.checkMerge(m, t, path)
	}
}

// checkMerge checks the value of a merge key: a mapping, or a list of
// mappings, each checked as if written in place.
func (ck *checker) checkMerge(v *yaml.Node, t reflect.Type, path string) {
	ck.merging++
	defer func() { ck.merging-- }()
	switch {
	case isMapping(v):
		ck.check(v, t, path)
	case v.Kind == yaml.SequenceNode: // not an alias of one: the decoder takes none
		for _, m := range v.Content {
			if !isMapping(m) {
				ck.fail(m.Line, path, "<< takes a mapping or a list of mappings, found %s in the list", kindName(m))
				continue
			}
			ck.check(m, t, path)
		}
	default:
		target := v
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			target = v.Alias
		}
		ck.fail(v.Line, path, "<< takes a mapping or a list of mappings, found %s", kindName(target))
	}
}

// isMapping reports whether n is a mapping or an alias of one.
func isMapping(n *yaml.Node) bool {
	return n.Kind == yaml.MappingNode || n.Kind == yaml.AliasNode && n.Alias != nil && n.Alias.Kind == yaml.MappingNode
}

// setLine records the line of the key at path. A key merged in (<<) does
// not replace the line of one written in place, which is the one in effect.
func (ck *checker) setLine(path string, line int) {
	if _, ok := ck.p.lines[path]; ok && ck.merging > 0 {
		return
	}
	ck.p.lines[path] = line
}

// isMerge reports whether k is the merge key <<, as the decoder decides it.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

// plainKey reports whether the decoder reads the key k as its text (not,
// say, a null or base64 of something else).
func plainKey(k *yaml.Node) bool {
	var s string
	return k.Decode(&s) == nil && s == k.Value
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// expected says what a value of type t looks like, for messages.
func expected(t reflect.Type) string {
	switch {
	case t == durationType:
		return `a duration such as "90s"`
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "a mapping of keys"
	case isNumber(t):
		return "a number"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "a single value"
}

// kindName names the kind of node n, for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return tagName(n) + " " + strconv.Quote(shown(n.Value))
}

// tagName is the YAML type of a scalar: str, int, float, bool, null, ...
func tagName(n *yaml.Node) string {
	return strings.TrimPrefix(n.ShortTag(), "!!")
}

// shown is a value as messages show it: cut short, as a secret written in
// the wrong place must not end up whole in a log.
func shown(v string) string {
	if r := []rune(v); len(r) > 10 {
		return string(r[:7]) + "..."
	}
	return v
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldsOf caches yamlFields by type: the check asks for the fields of
// every mapping it meets, one per grant among them, and building the map
// each time was the largest allocation of a load (about 200 MB at
// 100,000 grants).
var fieldsOf sync.Map // reflect.Type -> map[string]reflect.Type

// yamlFields maps the YAML key names of struct t to their field types.
// The map is shared: callers must not modify it.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldsOf.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := buildYAMLFields(t)
	fieldsOf.Store(t, m)
	return m
}

func buildYAMLFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// suggest proposes a known key close to an unknown one (a typo).
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

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
