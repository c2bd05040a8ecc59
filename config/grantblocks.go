package config

// The grants section a block of entries at a time: cutting it out of the
// text (splitGrants), parsing and checking each block of grantBlock
// entries on the document's own lines, and, for a document parsed whole,
// taking the grants mapping out of the tree (detachGrants). decode falls
// back to the whole document whenever the cut is in doubt.

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"slices"

	"go.yaml.in/yaml/v3"
)

// decodeSplit is decode with the grants section cut out of the text by
// splitGrants. ok is false when the parser does not see the document as
// the cut did; decode then starts again from the whole document.
func decodeSplit(data []byte, name string, sp *grantsText) (c *Config, p *problems, ok bool) {
	p = &problems{name: name, lines: map[string]int{}}
	root, stop, done, _ := parseRoot(sp.rest, name, p)
	if done || !sp.keyAlone(root) {
		return nil, nil, false
	}
	ck, c, err := checkRoot(root, p, stop)
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
