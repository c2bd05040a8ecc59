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
	ck, c, err := checkRoot(root, p, stop)
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

// checkRoot checks the document's tree (its grants taken out) against
// Config and decodes it into a new Config unless the check found a fatal
// problem or parsing stopped; the grants are then checked and decoded a
// block at a time with the checker it returns.
func checkRoot(root *yaml.Node, p *problems, stop bool) (*checker, *Config, error) {
	ck := &checker{p: p, done: map[visit]bool{}}
	ck.check(root, reflect.TypeFor[Config](), "")
	c := &Config{}
	if ck.fatal || stop {
		return ck, c, nil
	}
	return ck, c, root.Decode(c)
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
