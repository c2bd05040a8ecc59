package config

// Checking a node tree against the Config type by reflection, before
// anything is decoded: every key (with a suggestion for a misspelt one),
// the kind of every value, and every scalar the way the decoder takes it.

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

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
