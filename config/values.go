package config

// Values the file writes as text and the rest of tokend takes typed: a file
// mode and a cron schedule. Each has one parser here; the loader calls it
// while it checks the file (so a bad value is reported with its line and
// key path) and the YAML decoder calls it through UnmarshalYAML.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// FileMode is a permission as the file writes it, in octal: "0660", "660"
// or "0o660", at most 0777. The zero FileMode is unset (ApplyDefaults gives
// DefaultSocketMode); an explicit "0000" is a mode of its own.
type FileMode struct {
	perm os.FileMode
	set  bool
}

// Mode returns perm as a FileMode, for a Config built in code. It panics
// when perm has bits beyond 0777.
func Mode(perm os.FileMode) FileMode {
	if perm&^os.ModePerm != 0 {
		panic(fmt.Sprintf("config.Mode(%#o): not a permission of at most 0777", uint32(perm)))
	}
	return FileMode{perm: perm, set: true}
}

// ParseFileMode parses an octal permission of at most 0777: "0660", "660"
// or "0o660" (also "0O660").
func ParseFileMode(s string) (FileMode, error) {
	m, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0O"), 8, 32)
	if err != nil || m > 0o777 {
		return FileMode{}, &valueError{msg: fmt.Sprintf("%q is not an octal permission of at most 0777, such as \"0660\"", s)}
	}
	return FileMode{perm: os.FileMode(m), set: true}, nil
}

// Perm returns the permission bits.
func (m FileMode) Perm() os.FileMode { return m.perm }

// IsZero reports whether m is unset.
func (m FileMode) IsZero() bool { return !m.set }

// String returns m in octal, such as "0660".
func (m FileMode) String() string { return fmt.Sprintf("%04o", uint32(m.perm)) }

// UnmarshalYAML decodes a scalar with ParseFileMode; "" is unset.
func (m *FileMode) UnmarshalYAML(n *yaml.Node) error { return unmarshalScalar(n, m) }

func (m *FileMode) parseValue(s string) (err error) {
	*m, err = ParseFileMode(s)
	return err
}

func (*FileMode) expected() string { return `an octal permission such as "0660"` }

// Schedule is a cron schedule: five fields ("0 3 * * *"), an optional
// CRON_TZ= prefix, or a descriptor such as "@every 15s", "@hourly" or
// "@daily". It keeps its spec, for messages, and the parsed schedule, whose
// Next it answers: a Schedule is a cron.Schedule. The zero Schedule is
// unset; one that is not zero was parsed.
type Schedule struct {
	// p is shared by copies (it never changes once parsed): one word
	// rather than four keeps config.Grant, which has a Schedule, small.
	p *parsedSchedule
}

type parsedSchedule struct {
	spec  string
	sched cron.Schedule
}

// ParseSchedule parses a cron spec the way the daemon runs it.
func ParseSchedule(spec string) (Schedule, error) {
	if (strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")) && !strings.Contains(spec, " ") {
		// robfig/cron v3.0.1 panics on a time zone with nothing after it.
		return Schedule{}, &valueError{msg: fmt.Sprintf("invalid schedule %q: a time zone must be followed by a space and the schedule, such as \"CRON_TZ=Europe/Paris 0 3 * * *\"", spec)}
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return Schedule{}, &valueError{
			msg:   fmt.Sprintf("invalid schedule %q: %v (use 5 cron fields such as \"0 3 * * *\", or \"@every 15s\", \"@daily\")", spec, err),
			cause: err,
		}
	}
	return Schedule{&parsedSchedule{spec: spec, sched: s}}, nil
}

// MustParseSchedule is ParseSchedule for a spec written in code; it panics
// if spec does not parse.
func MustParseSchedule(spec string) Schedule {
	s, err := ParseSchedule(spec)
	if err != nil {
		panic(err)
	}
	return s
}

// Next returns the first activation after t; the zero time for an unset
// Schedule.
func (s Schedule) Next(t time.Time) time.Time {
	if s.p == nil {
		return time.Time{}
	}
	return s.p.sched.Next(t)
}

// IsZero reports whether s is unset.
func (s Schedule) IsZero() bool { return s.p == nil }

// String returns the spec as written.
func (s Schedule) String() string {
	if s.p == nil {
		return ""
	}
	return s.p.spec
}

// UnmarshalYAML decodes a scalar with ParseSchedule; "" is unset.
func (s *Schedule) UnmarshalYAML(n *yaml.Node) error { return unmarshalScalar(n, s) }

func (s *Schedule) parseValue(spec string) (err error) {
	*s, err = ParseSchedule(spec)
	return err
}

func (*Schedule) expected() string { return `a cron schedule such as "0 3 * * *" or "@every 15s"` }

// scalarValue is implemented by the types above. The loader's check finds
// them by it and calls parseValue itself; so does UnmarshalYAML.
type scalarValue interface {
	// parseValue sets the value from its text, which is not empty.
	parseValue(s string) error
	// expected says what a value looks like, for messages.
	expected() string
}

// unmarshalScalar decodes a scalar node into v; an empty one leaves v unset.
func unmarshalScalar(n *yaml.Node, v scalarValue) error {
	text, ok := scalarText(n)
	if !ok {
		return fmt.Errorf("config: line %d: expected %s", n.Line, v.expected())
	}
	if text == "" {
		return nil
	}
	return v.parseValue(text)
}

// scalarText is the text of a scalar as the decoder takes it for a string
// (the value as written; decoded, for a !!binary one). ok is false for a
// list, a mapping, or a scalar that is not text.
func scalarText(n *yaml.Node) (text string, ok bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	return text, n.Decode(&text) == nil
}

// valueError is a value that does not parse. Its message names the value
// and what was expected, without the package prefix, for the loader to
// put after a file, line and key path.
type valueError struct {
	msg   string
	cause error
}

func (e *valueError) Error() string { return "config: " + e.msg }
func (e *valueError) Unwrap() error { return e.cause }
