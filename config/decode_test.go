package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// grantsDoc has grants of every shape decode takes apart: schedules,
// sinks, readers, parameters, an assertion with free-form claims,
// token exchange lists, and a key that reads as another type.
const grantsDoc = corpApp + `grants:
  web:
    client: app
    type: authorization_code
    scopes: [openid, email]
    auth_params: {prompt: consent}
    schedule: "@every 1h"
    readers: {users: [root], uids: [1000]}
    match: [https://git.example.com/]
    sinks:
      - path: /run/t/web
        mode: "0600"
  "123":
    client: app
    type: jwt_bearer
    assertion:
      issuer: svc
      private_key_file: /etc/k.pem
      claims: {tenant: {id: 7, tags: [a, b]}}
  down:
    client: app
    type: token_exchange
    subject_grant: web
    audience: [api, other]
    resource: [https://api.example.com/]
    dpop: true
    refresh_token_lifetime: 12h
`

// decode decodes the grants one by one; the result must be what the
// decoder makes of the whole document.
func TestDecodeGrantByGrant(t *testing.T) {
	for name, doc := range map[string]string{
		"plain": grantsDoc,
		// Fallbacks to the whole document: an anchor and alias among the
		// grants, a merge key in the grants, a merge at the top level.
		"alias": strings.Replace(grantsDoc, "    scopes: [openid, email]", "    scopes: &s [openid, email]", 1) +
			"  more:\n    client: app\n    type: client_credentials\n    scopes: *s\n",
		"merge in grants": grantsDoc + "  <<: {m: {client: app, type: client_credentials}}\n",
		"merge at top":    grantsDoc + "<<: {grants: {m: {client: app, type: client_credentials}}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			var want Config
			if err := yaml.Unmarshal([]byte(doc), &want); err != nil {
				t.Fatal(err)
			}
			got, p := decode([]byte(doc), "x.yaml")
			if got == nil {
				t.Fatal(p.err())
			}
			if len(got.Grants) < 3 || !reflect.DeepEqual(got.Grants, want.Grants) {
				t.Errorf("grants decoded\n%#v\nwant\n%#v", got.Grants, want.Grants)
			}
			got.Grants, want.Grants = nil, nil
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("rest decoded\n%#v\nwant\n%#v", got, &want)
			}
		})
	}
}

// BenchmarkParseGrants parses a file of n client_credentials grants: it
// grows linearly (the decoder's own duplicate check was quadratic: 150 s
// for 100,000 grants).
func BenchmarkParseGrants(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		var s strings.Builder
		s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n")
		for i := range n {
			fmt.Fprintf(&s, "  grant-%06d:\n    client: app\n    type: client_credentials\n    scopes: [read]\n    readers: {uids: [1000]}\n", i)
		}
		data := []byte(s.String())
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Parse(data, "x.yaml"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseAllocationsPerGrant bounds what parsing a file of many grants
// allocates per grant. The check asks for the YAML fields of every
// mapping it meets; building that table for each grant's mapping was
// about a quarter of a load's allocations (2.5 KB a grant: 10.4 KB in
// all, 8.0 KB with the table built once; 200 MB at 100,000
// grants), garbage the heap grew to hold at start-up. It is built once per
// type.
func TestParseAllocationsPerGrant(t *testing.T) {
	const n = 2000
	var s strings.Builder
	s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n")
	for i := range n {
		fmt.Fprintf(&s, "  grant-%06d:\n    client: app\n    type: client_credentials\n    scopes: [read]\n    readers: {uids: [1000]}\n", i)
	}
	data := []byte(s.String())
	if _, _, err := Parse(data, "x.yaml"); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, _, err := Parse(data, "x.yaml"); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	perGrant := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("%d bytes allocated per grant", perGrant)
	if limit := uint64(9000); perGrant > limit {
		t.Errorf("Parse allocated %d bytes per grant, over %d", perGrant, limit)
	}
}

// decode never holds the tree of the whole grants section: while it goes
// through the grants, the live heap above what it held before is about
// the part of the Config (and of the key lines) decoded so far, plus one
// block's tree. Parsing the whole document first held a tree of every
// grant, about three times the Config made of it (at 100,000 grants a
// 150 MB tree for a 57 MB Config and 64 MB of key lines), and the heap
// peaked on top of it.
func TestDecodeNeverHoldsTheGrantsTree(t *testing.T) {
	const blocks = 32
	const n = blocks * grantBlock
	var s strings.Builder
	s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n")
	for i := range n {
		fmt.Fprintf(&s, "  grant-%06d:\n    client: app\n    type: client_credentials\n    scopes: [read]\n", i)
	}
	data := []byte(s.String())
	liveHeap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var live []uint64
	grantBlockDone = func() { live = append(live, liveHeap()) }
	defer func() { grantBlockDone = nil }()
	base := liveHeap()
	c, p := decode(data, "x.yaml")
	if c == nil || len(c.Grants) != n {
		t.Fatalf("decode: %v", p.err())
	}
	grantBlockDone = nil
	kept := liveHeap() - base // the Config and the key lines
	runtime.KeepAlive(c)
	runtime.KeepAlive(p)
	if len(live) != blocks {
		t.Fatalf("%d blocks of grants decoded, want %d", len(live), blocks)
	}
	t.Logf("%d grants: %d KiB kept after decode; above it while decoding: after the first block %d KiB, after the last %d KiB",
		n, kept>>10, (live[0]-base)>>10, (live[blocks-1]-base)>>10)
	for i, l := range live {
		// What the blocks decoded so far keep, and one block's tree
		// (about three times what a block keeps) with room to spare.
		limit := kept*uint64(i+1)/blocks + 8*kept/blocks
		if l-base > limit {
			t.Fatalf("after block %d of %d, %d KiB live above the start, over %d KiB: decode holds more than the blocks decoded so far", i+1, blocks, (l-base)>>10, limit>>10)
		}
	}
	runtime.KeepAlive(data)
}

// A file is parsed, checked and decoded with GOGC at parseGCPercent and
// GOGC is given back after, so that the heap does not grow to twice the
// document's tree; a lower GOGC set by whoever runs the process is kept.
// Not parallel: GOGC belongs to the process.
func TestParseLowersGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	gogc := func() int {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	doc := []byte("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n  g:\n    client: app\n    type: client_credentials\n")
	var during int
	grantBlockDone = func() { during = gogc() }
	defer func() { grantBlockDone = nil }()
	for _, tc := range []struct{ set, during int }{{100, parseGCPercent}, {20, 20}} {
		debug.SetGCPercent(tc.set)
		if _, _, err := Parse(doc, "x.yaml"); err != nil {
			t.Fatal(err)
		}
		if during != tc.during || gogc() != tc.set {
			t.Errorf("GOGC %d: %d while parsing, %d after; want %d, then %d", tc.set, during, gogc(), tc.during, tc.set)
		}
	}
}

// splitDoc is grantsDoc without its quoted key, which decode cuts at
// its grants.
var splitDoc = strings.Replace(grantsDoc, `  "123":`, "  jwt:", 1)

// decode cuts the grants section out of the text and parses it a block of
// grants at a time when it can (splitGrants), and parses the whole
// document otherwise. Both must come to the same: the same Config, the
// same problems on the same lines, the same key lines. The documents below
// are of the shape decode cuts (cut: true) and of shapes it must leave
// whole, some of them parsing differently if cut where a grant seems to
// start.
func TestDecodeCutSameAsWhole(t *testing.T) {
	many := func(n int, extra string) string {
		var s strings.Builder
		s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\ngrants:\n")
		for i := range n {
			fmt.Fprintf(&s, "  grant-%04d:\n    client: app\n    type: client_credentials\n", i)
		}
		return s.String() + extra
	}
	for _, tc := range []struct {
		name string
		doc  string
		cut  bool
	}{
		{"plain", splitDoc, true},
		{"minimal", minimal, true},
		{"grants first, then other sections", "grants:\n  g:\n    client: app\n    type: device_code\n" + strings.Replace(minimal, "grants:\n  g:\n", "x:\n  g:\n", 1), true},
		{"comments and blank lines among the grants", strings.Replace(splitDoc, "  down:\n", "# a comment in the first column\n\n    # an indented one\n  down:   # a comment after the key\n", 1) + "\n# trailing\n", true},
		{"CRLF line ends", strings.ReplaceAll(splitDoc, "\n", "\r\n"), true},
		{"several blocks", many(2*grantBlock+10, "refresh:\n  fraction: 0.5\n"), true},
		{"an unknown key in a grant", minimal + "    scops: [a]\n", true},
		{"a grant of the wrong kind", minimal + "  h: everything\n", true},
		{"a value that does not parse", minimal + "    schedule: \"0 3 * *\"\n", true},
		{"problems in a later block and elsewhere", many(grantBlock+5, "    typo: 1\nrefresh:\n  fraction: most\n"), true},
		{"a second document", minimal + "---\nstore: {}\n", true},
		{"a multi-line value", minimal + "    token_params:\n      a: |\n        line one\n\n        line two\n      b: >-\n        folded\n        text\n", true},

		{"a quoted grant name", grantsDoc, false},
		{"a name the decoder reads as a number", strings.Replace(splitDoc, "  jwt:", "  123:", 1), false},
		{"a name the decoder reads as null", strings.Replace(splitDoc, "  jwt:", "  null:", 1), false},
		{"a grant given twice", minimal + "  g:\n    client: app\n    type: device_code\n", false},
		{"a grant given twice, in another block", many(grantBlock+5, "  grant-0001:\n    client: app\n    type: device_code\n"), false},
		{"grants given twice", minimal + "grants:\n  h:\n    client: app\n    type: device_code\n", false},
		{"grants in flow style", strings.Replace(minimal, "grants:\n  g:\n    client: app\n    type: authorization_code\n    readers: {users: [root]}\n", "grants: {g: {client: app, type: authorization_code}}\n", 1), false},
		{"grants as a list", minimal + "grants:\n  - g\n", false},
		{"an anchor in a grant, an alias in another", strings.Replace(splitDoc, "    scopes: [openid, email]", "    scopes: &s [openid, email]", 1) + "  more:\n    client: app\n    type: client_credentials\n    scopes: *s\n", false},
		{"an alias to a grant's anchor elsewhere", strings.Replace(splitDoc, "    scopes: [openid, email]", "    scopes: &s [openid, email]", 1) + "refresh: *s\n", false},
		{"a merge in the grants", splitDoc + "  <<: {m: {client: app, type: client_credentials}}\n", false},
		{"a merge at the top", splitDoc + "<<: {grants: {m: {client: app, type: client_credentials}}}\n", false},
		{"a quoted value over lines that look like grants", minimal + "    scope_param: \"a\n  h:\n    client: app\n  \"\n", false},
		{"a quoted value over the first column", minimal + "    scope_param: \"a\nb\"\n", false},
		{"grants: inside a quoted value", "x: \"a\ngrants:\n  g:\n    client: app\n\"\n", false},
		{"a tab among the grants", minimal + "\t\n  h:\n    client: app\n    type: device_code\n", false},
		{"entries at two indentations", minimal + "   h:\n    client: app\n", false},
		{"a syntax error among the grants", minimal + "  h: [\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.doc)
			want, wp := decodeWhole(data, "x.yaml")
			cut := false
			if sp := splitGrants(data); sp != nil {
				_, _, cut = decodeSplit(data, "x.yaml", sp)
			}
			if cut != tc.cut {
				t.Errorf("cut at the grants: %v, want %v", cut, tc.cut)
			}
			got, gp := decode(data, "x.yaml")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Config\n%#v\nwant (from the whole document)\n%#v", got, want)
			}
			if gp.err() == nil != (wp.err() == nil) || gp.err() != nil && gp.err().Error() != wp.err().Error() {
				t.Errorf("problems\n%v\nwant (from the whole document)\n%v", gp.err(), wp.err())
			}
			if !reflect.DeepEqual(gp.warns, wp.warns) || !reflect.DeepEqual(gp.lines, wp.lines) {
				t.Errorf("warnings %q, key lines %v\nwant (from the whole document) %q, %v", gp.warns, gp.lines, wp.warns, wp.lines)
			}
			if tc.cut && want != nil && len(want.Grants) == 0 {
				t.Error("no grants decoded")
			}
		})
	}
}

// Whatever the file, decode (cutting the grants section out of the text
// when it can) comes to what decoding the whole document does.
func FuzzDecodeCutSameAsWhole(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, path := range append(files, "../tokend.example.yaml", "testdata/every-key.yaml") {
		if b, err := os.ReadFile(path); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(splitDoc))
	f.Add([]byte(minimal + "    scopes: openid\n  h: x\nrefresh:\n  fraction: most\n"))
	f.Add([]byte(minimal + "    scope_param: \"a\n  h:\n    client: app\n  \"\n"))
	f.Add([]byte(strings.ReplaceAll(minimal, "\n", "\r\n") + "# c\n\t\n"))
	f.Add([]byte("x: &a {client: app}\ngrants:\n  g: *a\n  h:\n    <<: *a\n"))
	f.Add([]byte("grants:\n  g:\n    token_params:\n      a: |\n        x\n  h: [\n---\ngrants:\n  i: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, wp := decodeWhole(data, "x.yaml")
		got, gp := decode(data, "x.yaml")
		if !reflect.DeepEqual(got, want) && !bytes.Contains(bytes.ToLower(data), []byte("nan")) {
			t.Fatalf("Config\n%#v\nwant (from the whole document)\n%#v", got, want)
		}
		if ge, we := gp.err(), wp.err(); ge == nil != (we == nil) || ge != nil && ge.Error() != we.Error() {
			t.Fatalf("problems\n%v\nwant (from the whole document)\n%v", ge, we)
		}
		if !reflect.DeepEqual(gp.warns, wp.warns) || !reflect.DeepEqual(gp.lines, wp.lines) {
			t.Fatalf("warnings %q, key lines %v\nwant (from the whole document) %q, %v", gp.warns, gp.lines, wp.warns, wp.lines)
		}
	})
}

// Parsing a large file leaves garbage several times the Config it makes;
// Parse collects it and gives the memory back to the system before it
// returns, so that what the process does next (the daemon's start) does
// not grow from a heap of free memory the size of the parse.
func TestParseOfALargeFileGivesItsMemoryBack(t *testing.T) {
	var s strings.Builder
	s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n")
	for i := 0; s.Len() < largeFile; i++ {
		fmt.Fprintf(&s, "  grant-%06d:\n    client: app\n    type: client_credentials\n    scopes: [read]\n    readers: {uids: [1000]}\n", i)
	}
	data := []byte(s.String())
	c, _, err := Parse(data, "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	held := ms.HeapSys - ms.HeapReleased // heap memory the process holds, in use or free
	runtime.GC()
	runtime.ReadMemStats(&ms)
	live := ms.HeapAlloc
	t.Logf("%d grants: %d KiB of heap held after Parse, %d KiB live", len(c.Grants), held>>10, live>>10)
	if limit := live*3/2 + 2<<20; held > limit {
		t.Errorf("after Parse of a %d KiB file the process holds %d KiB of heap for %d KiB live, over %d KiB: the parse's memory was not given back", len(data)>>10, held>>10, live>>10, limit>>10)
	}
	runtime.KeepAlive(c)
}
