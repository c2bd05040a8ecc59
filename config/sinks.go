package config

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Sink formats: the values of grants.*.sinks[].format.
const (
	SinkRaw    = "raw"    // the access token alone
	SinkHeader = "header" // Authorization: <type> <token>
	SinkJSON   = "json"   // as GET /v1/tokens/NAME answers
	SinkEnv    = "env"    // TOKEND_ACCESS_TOKEN=…, TOKEND_TOKEN_TYPE=…, TOKEND_EXPIRES_AT=…
)

// SinkFormats lists the valid sink formats, in the order messages show them.
var SinkFormats = []string{SinkRaw, SinkHeader, SinkJSON, SinkEnv}

// Sink defaults.
const (
	DefaultSinkMode           = 0o600
	DefaultSinkFormat         = SinkRaw
	DefaultSinkCommandTimeout = 30 * time.Second
	// DefaultSinkDir is where sinks belong by default: under tokend's
	// RuntimeDirectory, which the systemd unit lets it write.
	DefaultSinkDir = "/run/tokend/sinks"
)

// Sink is a file tokend keeps holding a grant's current access token:
// written atomically on every new token, removed on revocation and when a
// reload drops it.
type Sink struct {
	Path   string   `yaml:"path"`   // absolute; no symlinks in it
	Format string   `yaml:"format"` // raw (default) | header | json | env
	Mode   FileMode `yaml:"mode"`   // default 0600
	Owner  string   `yaml:"owner"`  // user name or uid; default tokend's own user
	Group  string   `yaml:"group"`  // group name or gid; default tokend's own group
	// Command runs (argv, no shell) after each write, never two at once;
	// the token is in neither its argv nor its environment.
	Command        []string      `yaml:"command"`
	CommandTimeout time.Duration `yaml:"command_timeout"` // default 30s

	// uid and gid are Owner and Group resolved (-1: not set).
	uid, gid int
	resolved bool
}

// IDs returns the uid and gid the sink's file is to be given, -1 for
// "leave it to tokend's own". It never looks a name up: a Sink built in
// code that names an owner or group must go through Validate first.
func (s Sink) IDs() (uid, gid int, err error) {
	if !s.resolved {
		if s.Owner == "" && s.Group == "" {
			return -1, -1, nil
		}
		return -1, -1, fmt.Errorf("config: the owner and group of sink %s were never resolved (Load, Parse and Validate resolve them)", s.Path)
	}
	return s.uid, s.gid, nil
}

// validateSinks checks and completes the sinks of one grant.
func (l Loader) validateSinks(p *problems, path string, sinks []Sink) {
	for i := range sinks {
		s := &sinks[i]
		at := fmt.Sprintf("%s.sinks[%d]", path, i)
		switch {
		case s.Path == "":
			p.errorf(at+".path", "must be set")
		case !filepath.IsAbs(s.Path):
			p.errorf(at+".path", "%q must be an absolute path", s.Path)
		case filepath.Clean(s.Path) != s.Path || strings.HasSuffix(s.Path, "/"):
			p.errorf(at+".path", "%q is not a clean path (write %q)", s.Path, filepath.Clean(s.Path))
		case filepath.Dir(s.Path) == "/":
			p.errorf(at+".path", "%q: a sink does not go in / (use a directory such as %s)", s.Path, DefaultSinkDir)
		}
		if s.Format == "" {
			s.Format = DefaultSinkFormat
		} else if !slices.Contains(SinkFormats, s.Format) {
			p.errorf(at+".format", "unknown format %q: valid formats are %s", s.Format, strings.Join(SinkFormats, ", "))
		}
		if s.Mode.IsZero() {
			s.Mode = Mode(DefaultSinkMode)
		} else if s.Mode.Perm()&0o004 != 0 {
			p.warnf(at+".mode", "%s lets every user read the token", s.Mode)
		}
		if s.CommandTimeout < 0 {
			p.errorf(at+".command_timeout", "%s must not be negative", s.CommandTimeout)
		} else if s.CommandTimeout == 0 {
			s.CommandTimeout = DefaultSinkCommandTimeout
		}
		if len(s.Command) > 0 && s.Command[0] == "" {
			p.errorf(at+".command", "the program (first element) must not be empty")
		}
		s.uid, s.gid, s.resolved = -1, -1, false
		ok := true
		if s.Owner != "" {
			id, err := l.userID(s.Owner)
			if err != nil {
				p.errorf(at+".owner", "%v", err)
				ok = false
			} else {
				s.uid = int(id)
			}
		}
		if s.Group != "" {
			id, err := l.groupID(s.Group)
			if err != nil {
				p.errorf(at+".group", "%v", err)
				ok = false
			} else {
				s.gid = int(id)
			}
		}
		s.resolved = ok
	}
}

// checkSinkPaths refuses two sinks writing one file.
func (c *Config) checkSinkPaths(p *problems) {
	seen := map[string]string{}
	for _, name := range sortedKeys(c.Grants) {
		for i, s := range c.Grants[name].Sinks {
			if s.Path == "" {
				continue
			}
			at := fmt.Sprintf("grants.%s.sinks[%d].path", name, i)
			if prev, dup := seen[s.Path]; dup {
				p.errorf(at, "%q is already the sink of %s", s.Path, prev)
				continue
			}
			if s.Path == c.Listen.Socket || s.Path == c.Store.Path {
				p.errorf(at, "%q is tokend's own socket or store", s.Path)
			}
			seen[s.Path] = at
		}
	}
}

// explainSinks says what tokend does with each sink of a grant.
func explainSinks(w io.Writer, sinks []Sink) {
	for _, s := range sinks {
		what := map[string]string{
			SinkRaw:    "the token alone",
			SinkHeader: `"Authorization: <type> <token>"`,
			SinkJSON:   "JSON as GET /v1/tokens/NAME",
			SinkEnv:    "TOKEND_ACCESS_TOKEN=, TOKEND_TOKEN_TYPE=, TOKEND_EXPIRES_AT= lines",
		}[s.Format]
		owner, group := s.Owner, s.Group
		if owner == "" {
			owner = "tokend's user"
		}
		if group == "" {
			group = "tokend's group"
		}
		fmt.Fprintf(w, "    sink:     %s: %s, mode %s, owner %s, group %s;\n", s.Path, what, s.Mode, owner, group)
		fmt.Fprintf(w, "              rewritten atomically on every new token, removed on revoke or when dropped from the configuration\n")
		if len(s.Command) > 0 {
			fmt.Fprintf(w, "              then runs %q (timeout %s, never two at once; the token is not in its argv or environment)\n", s.Command, s.CommandTimeout)
		}
	}
}
