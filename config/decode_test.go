package config

import (
	"fmt"
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
const grantsDoc = `
providers:
  corp:
    issuer: https://id.example.com
clients:
  app:
    provider: corp
    client_id: tokend
grants:
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

// While decode goes through the grants, what it holds does not grow: the
// nodes of the grants decoded are let go as the Config and the lines of
// their keys grow. Holding the whole tree to the end, as a load did, put
// the Config on top of it (at 100,000 grants: a 150 MB tree, a 57 MB
// Config, 64 MB of key lines).
func TestDecodeLetsGrantNodesGo(t *testing.T) {
	const n = 16 * grantBlock
	var s strings.Builder
	s.WriteString("providers:\n  p:\n    issuer: https://id.example.com\nclients:\n  app:\n    provider: p\n    client_id: x\n    client_secret_file: /nonexistent\ngrants:\n")
	for i := range n {
		fmt.Fprintf(&s, "  grant-%06d:\n    client: app\n    type: client_credentials\n    scopes: [read]\n", i)
	}
	data := []byte(s.String())
	var live []uint64
	grantBlockDone = func() {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		live = append(live, ms.HeapAlloc)
	}
	defer func() { grantBlockDone = nil }()
	c, p := decode(data, "x.yaml")
	if c == nil || len(c.Grants) != n {
		t.Fatalf("decode: %v", p.err())
	}
	first, last := live[0], live[len(live)-1]
	t.Logf("live heap after the first block %d KiB, after the last %d KiB", first>>10, last>>10)
	if last > first {
		t.Errorf("live heap grew from %d KiB to %d KiB while decoding the grants: their nodes are held", first>>10, last>>10)
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
