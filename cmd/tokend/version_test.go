package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

// fakeBuildInfo makes readBuildInfo return bi (and version be v) for the
// test.
func fakeBuildInfo(t *testing.T, v string, bi *debug.BuildInfo) {
	t.Helper()
	oldRead, oldVersion := readBuildInfo, version
	readBuildInfo = func() (*debug.BuildInfo, bool) { return bi, bi != nil }
	version = v
	t.Cleanup(func() { readBuildInfo, version = oldRead, oldVersion })
}

func vcs(rev string, modified bool) []debug.BuildSetting {
	m := "false"
	if modified {
		m = "true"
	}
	return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: m}}
}

// A go build or go install binary knows its version and revision from
// the build information; neither is ever the placeholder "dev".
func TestVersionFromBuildInfo(t *testing.T) {
	const rev = "6c58427abcde0123456789abcdef0123456789ab"
	tests := []struct {
		name        string
		ldflags     string
		bi          *debug.BuildInfo
		version     string
		revision    string
		versionLine string
	}{
		{"go build in a checkout", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261207152930-6c58427abcde+dirty"}, Settings: vcs(rev, true)},
			"v0.0.0-20261207152930-6c58427abcde+dirty", rev + "+dirty", "tokend v0.0.0-20261207152930-6c58427abcde+dirty ("},
		{"go install module@v1.2.3", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}},
			"v1.2.3", "unknown", "tokend v1.2.3 ("},
		{"no module version, a revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, false)},
			"(devel)", rev, "tokend (devel) 6c58427abcde ("},
		{"ldflags win", "v2.0.0", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, true)},
			"v2.0.0", rev + "+dirty", "tokend v2.0.0 6c58427abcde+dirty ("},
		{"no build information", "", nil, "(devel)", "unknown", "tokend (devel) ("},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeBuildInfo(t, tt.ldflags, tt.bi)
			if got := currentBuild().version; got != tt.version {
				t.Errorf("version %q, want %q", got, tt.version)
			}
			if got := buildRevision(); got != tt.revision {
				t.Errorf("revision %q, want %q", got, tt.revision)
			}
			tc := newTestCLI()
			if code := tc.run("version"); code != exitOK {
				t.Fatalf("exit %d", code)
			}
			if !strings.HasPrefix(tc.out.String(), tt.versionLine) {
				t.Errorf("tokend version: %q, want %q...", tc.out.String(), tt.versionLine)
			}
			if strings.Contains(tc.out.String(), " dev ") {
				t.Errorf("tokend version says dev: %q", tc.out.String())
			}
		})
	}
}
