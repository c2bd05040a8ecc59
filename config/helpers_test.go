package config

import (
	"os/user"
	"strings"
	"testing"
)

// corpApp is the head of the documents the table tests parse: provider
// corp and its client app (client_id tokend), to which a test may add
// settings of the client before the grants.
const corpApp = `
providers:
  corp:
    issuer: https://id.example.com
clients:
  app:
    provider: corp
    client_id: tokend
`

// minimal is a small valid configuration the table tests start from.
const minimal = corpApp + `grants:
  g:
    client: app
    type: authorization_code
    readers: {users: [root]}
`

// accounts is a user database of the test's own: tests resolve users and
// groups through it, never through the machine's, whose accounts differ
// from one host to the next (tokend's own package creates the tokend user
// and the tokend and tokend-admin groups).
type accounts struct {
	users, groups map[string]string // name → id
}

// baseAccounts holds what every test may name: root and a few system
// accounts, with made-up ids where the test does not care.
func baseAccounts() accounts {
	return accounts{
		users:  map[string]string{"root": "0", "daemon": "1", "nobody": "65534"},
		groups: map[string]string{"root": "0", "adm": "4", "staff": "50"},
	}
}

// with returns a copy of a with more users and groups.
func (a accounts) with(users, groups map[string]string) accounts {
	b := accounts{users: map[string]string{}, groups: map[string]string{}}
	for _, m := range []struct{ dst, a, b map[string]string }{{b.users, a.users, users}, {b.groups, a.groups, groups}} {
		for k, v := range m.a {
			m.dst[k] = v
		}
		for k, v := range m.b {
			m.dst[k] = v
		}
	}
	return b
}

func (a accounts) loader() Loader {
	return Loader{
		LookupUser: func(name string) (*user.User, error) {
			if id, ok := a.users[name]; ok {
				return &user.User{Username: name, Uid: id}, nil
			}
			return nil, user.UnknownUserError(name)
		},
		LookupGroup: func(name string) (*user.Group, error) {
			if id, ok := a.groups[name]; ok {
				return &user.Group{Name: name, Gid: id}, nil
			}
			return nil, user.UnknownGroupError(name)
		},
	}
}

// testLoader resolves against baseAccounts.
var testLoader = baseAccounts().loader()

func parse(yml string) (*Config, []string, error) {
	return testLoader.Parse([]byte(yml), "x.yaml")
}

func mustParse(t testing.TB, yml string) *Config {
	t.Helper()
	c, _, err := parse(yml)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// wantProblems fails unless err has exactly one line per want, each
// containing its want, in any order: with no want, unless err is nil.
func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	lines := errLines(err)
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
next:
	for _, w := range want {
		for _, l := range lines {
			if strings.Contains(l, w) {
				continue next
			}
		}
		t.Errorf("no problem contains %q; got:\n%v", w, err)
	}
}
