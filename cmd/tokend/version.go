package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// Left empty, the version comes from the build information the Go
// toolchain records (see versionString).
var version = ""

// readBuildInfo is debug.ReadBuildInfo, replaceable in tests.
var readBuildInfo = debug.ReadBuildInfo

// buildVersion is what the binary knows of its origin: the version
// (-ldflags, else the module version go build derives from the VCS), the
// VCS revision and whether the tree had uncommitted changes.
type buildVersion struct {
	version, revision string
	modified          bool
}

func currentBuild() buildVersion {
	b := buildVersion{version: version}
	bi, ok := readBuildInfo()
	if ok {
		if b.version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.revision = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if b.version == "" {
		// go run, or a build without VCS information (-buildvcs=false,
		// a source tree that is not a checkout).
		b.version = "(devel)"
	}
	return b
}

// versionString is the version with the revision: "v1.2.3",
// "v0.0.0-20261207152930-6c58427abcde+dirty", "(devel) 6c58427abcde+dirty".
func versionString() string {
	b := currentBuild()
	s := b.version
	if b.revision != "" && !containsRevision(s, b.revision) {
		rev := b.revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " " + rev
		if b.modified {
			s += "+dirty"
		}
	}
	return s
}

// containsRevision reports whether a version names the revision already
// (a pseudo-version ends with its first 12 hex digits).
func containsRevision(v, rev string) bool {
	if len(rev) > 12 {
		rev = rev[:12]
	}
	for i := 0; i+len(rev) <= len(v); i++ {
		if v[i:i+len(rev)] == rev {
			return true
		}
	}
	return false
}

// buildRevision is the VCS revision the binary was built from (with
// "+dirty" for uncommitted changes), "unknown" if not recorded.
func buildRevision() string {
	b := currentBuild()
	if b.revision == "" {
		return "unknown"
	}
	if b.modified {
		return b.revision + "+dirty"
	}
	return b.revision
}

// cmdVersion prints "tokend <version> (<go version>)".
func (c *cli) cmdVersion(_ context.Context, args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(c.stderr, "tokend: version: unexpected argument %q\n", args[0])
		return exitUsage
	}
	fmt.Fprintf(c.stdout, "tokend %s (%s)\n", versionString(), runtime.Version())
	return exitOK
}
