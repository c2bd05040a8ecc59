package testutil

import (
	"os"
	"strings"
	"testing"
)

// TokendConfig is a tokend configuration file as the end-to-end tests
// write it: the store, fleet, listen, refresh, operators and log sections
// from their lines, then one provider and the clients and grants as
// given: the template every e2e package shares, with what a test varies
// (its refresh timing, its grants) in the fields. A section without lines is left out.
type TokendConfig struct {
	// Comment, if not empty, is the first line, after "# ".
	Comment string
	// Store, Fleet, Refresh and Operators are their sections' lines, each
	// "key: value" as YAML has it under the section (indented here).
	Store, Fleet []string
	// Socket is listen.socket; Listen more lines of the listen section
	// (socket_mode, ...), after it.
	Socket string
	Listen []string
	// Callback and Metrics are the listeners' addresses, or "off" (written
	// quoted, as YAML would read a bare off as false); empty is left out.
	Callback, Metrics string
	Refresh           []string
	Operators         []string
	// LogLevel is log.level; empty leaves the section out.
	LogLevel string
	// Provider and Issuer name the one provider and its issuer; an empty
	// Issuer leaves providers out.
	Provider, Issuer string
	// Clients and Grants are those sections' bodies: YAML indented by two
	// spaces. Empty Clients leaves the section out; grants is always there.
	Clients, Grants string
}

// String is the configuration's YAML.
func (c TokendConfig) String() string {
	var b strings.Builder
	if c.Comment != "" {
		b.WriteString("# " + c.Comment + "\n")
	}
	section := func(name string, lines []string) {
		if len(lines) == 0 {
			return
		}
		b.WriteString(name + ":\n")
		for _, l := range lines {
			b.WriteString("  " + l + "\n")
		}
	}
	section("store", c.Store)
	section("fleet", c.Fleet)
	listen := []string{"socket: " + c.Socket}
	listen = append(listen, c.Listen...)
	for _, l := range []struct{ key, addr string }{{"callback", c.Callback}, {"metrics", c.Metrics}} {
		switch l.addr {
		case "":
		case "off":
			listen = append(listen, l.key+`: "off"`)
		default:
			listen = append(listen, l.key+": "+l.addr)
		}
	}
	section("listen", listen)
	section("refresh", c.Refresh)
	section("operators", c.Operators)
	if c.LogLevel != "" {
		section("log", []string{"level: " + c.LogLevel})
	}
	if c.Issuer != "" {
		b.WriteString("providers:\n  " + c.Provider + ":\n    issuer: " + c.Issuer + "\n")
	}
	if c.Clients != "" {
		b.WriteString("clients:\n" + strings.TrimRight(c.Clients, "\n") + "\n")
	}
	b.WriteString("grants:\n" + strings.TrimRight(c.Grants, "\n") + "\n")
	return b.String()
}

// Write writes the configuration to path, mode 0600, and returns path.
func (c TokendConfig) Write(t testing.TB, path string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
