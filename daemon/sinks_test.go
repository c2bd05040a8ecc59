package daemon

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/metrics"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/sink"
	"github.com/tokend/tokend/store"
)

var _ sink.Metrics = (*metrics.Metrics)(nil)

func sinkDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sinks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func withSinks(name string, sinks ...config.Sink) func(*config.Config) {
	return func(c *config.Config) {
		g := c.Grants[name]
		g.Sinks = sinks
		c.Grants[name] = g
	}
}

func readOr(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	waitFor(t, path+" holding "+want, func() bool { return readOr(path) == want })
}

func TestSinkFollowsTheToken(t *testing.T) {
	dir := sinkDir(t)
	raw, hdr, env, js := filepath.Join(dir, "cc.token"), filepath.Join(dir, "cc.header"), filepath.Join(dir, "cc.env"), filepath.Join(dir, "cc.json")
	m := metrics.New(metrics.BuildInfo{})
	h := newHarness(t, harnessOpts{noRun: true, config: withSinks("cc",
		config.Sink{Path: raw, Mode: config.Mode(0o640)},
		config.Sink{Path: hdr, Format: config.SinkHeader},
		config.Sink{Path: env, Format: config.SinkEnv},
		config.Sink{Path: js, Format: config.SinkJSON},
	)})
	h.startWith(Options{Metrics: m})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	tok := h.token("cc")
	waitFile(t, raw, tok.AccessToken)
	waitFile(t, hdr, "Authorization: Bearer "+tok.AccessToken+"\n")
	waitFor(t, "env sink", func() bool {
		return strings.HasPrefix(readOr(env), "TOKEND_ACCESS_TOKEN="+tok.AccessToken+"\nTOKEND_TOKEN_TYPE=Bearer\nTOKEND_EXPIRES_AT=")
	})
	waitFor(t, "json sink", func() bool { return strings.Contains(readOr(js), `"access_token":"`+tok.AccessToken+`"`) })
	for path, mode := range map[string]os.FileMode{raw: 0o640, hdr: 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	// A new token reaches every sink.
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	tok2 := h.token("cc")
	if tok2.AccessToken == tok.AccessToken {
		t.Fatal("refresh gave the same token")
	}
	waitFile(t, raw, tok2.AccessToken)
	waitFile(t, hdr, "Authorization: Bearer "+tok2.AccessToken+"\n")
	st := h.status("cc")
	if len(st.Sinks) != 4 {
		t.Fatalf("status sinks: %+v", st.Sinks)
	}
	for _, s := range st.Sinks {
		if !s.OK || s.WrittenAt.IsZero() || s.Error != "" {
			t.Errorf("sink status %+v", s)
		}
	}
	if n := sinkWrites(t, m, "cc", "written"); n < 8 {
		t.Errorf("tokend_sink_writes_total{grant=cc,result=written} = %v, want at least 8", n)
	}
	// No temporary file is left beside them.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 {
		t.Errorf("directory holds %d entries, want 4", len(ents))
	}

	// A reload that drops a sink removes its file; the others stay.
	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{}
	for k, v := range h.cfg.Grants {
		cfg.Grants[k] = v
	}
	g := cfg.Grants["cc"]
	g.Sinks = g.Sinks[:2]
	cfg.Grants["cc"] = g
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dropped sinks removed", func() bool {
		_, e1 := os.Stat(env)
		_, e2 := os.Stat(js)
		return os.IsNotExist(e1) && os.IsNotExist(e2)
	})
	if readOr(raw) != tok2.AccessToken {
		t.Fatal("kept sink changed")
	}

	// Revocation removes the file.
	if code, body := h.do(http.MethodPost, "/v1/tokens/cc/revoke"); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	waitFor(t, "revoked sink removed", func() bool { _, err := os.Stat(raw); return os.IsNotExist(err) })
	h.logMustNotContain(tok.AccessToken, tok2.AccessToken)
}

func sinkWrites(t *testing.T, m *metrics.Metrics, grant, result string) float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokend_sink_writes_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["grant"] == grant && l["result"] == result {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestSinkDirectoryAttacks: a symlink anywhere in the path, a directory
// another user owns or may write, and in a sticky shared directory a file
// that is not ours are refused; status and the counter say so, and
// refreshes and fetches go on.
func TestSinkDirectoryAttacks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to play another user")
	}
	base := t.TempDir()
	real := filepath.Join(base, "real")
	link := filepath.Join(base, "link")
	other := filepath.Join(base, "other")
	open := filepath.Join(base, "open")
	sticky := filepath.Join(base, "sticky")
	for _, d := range []string{real, other, open, sticky} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	must(t, os.Chown(other, 65534, 65534))
	must(t, os.Chmod(open, 0o777))
	must(t, os.Chmod(sticky, 0o777|os.ModeSticky))
	planted := filepath.Join(sticky, "cc.token")
	must(t, os.WriteFile(planted, []byte("planted"), 0o644))
	must(t, os.Chown(planted, 65534, 65534))
	viaLink := filepath.Join(link, "cc.token")
	m := metrics.New(metrics.BuildInfo{})
	h := newHarness(t, harnessOpts{noRun: true, config: withSinks("cc",
		config.Sink{Path: viaLink},
		config.Sink{Path: filepath.Join(other, "cc.token")},
		config.Sink{Path: filepath.Join(open, "cc.token")},
		config.Sink{Path: planted},
		config.Sink{Path: filepath.Join(sticky, "mine.token")},
	)})
	h.startWith(Options{Metrics: m})
	if code, body := h.do(http.MethodPost, "/v1/tokens/cc/refresh"); code != 200 {
		t.Fatalf("refresh with failing sinks: %d %s", code, body)
	}
	tok := h.token("cc")
	waitFile(t, filepath.Join(sticky, "mine.token"), tok.AccessToken)
	want := map[string]string{
		viaLink:                          "symbolic link",
		filepath.Join(other, "cc.token"): "owned by uid 65534",
		filepath.Join(open, "cc.token"):  "writable by other users and not sticky",
		planted:                          "belongs to uid 65534",
	}
	waitFor(t, "every attack refused in status", func() bool {
		n := 0
		for _, s := range h.status("cc").Sinks {
			if w, ok := want[s.Path]; ok && !s.OK && strings.Contains(s.Error, w) {
				n++
			}
		}
		return n == len(want)
	})
	if got := readOr(planted); got != "planted" {
		t.Errorf("planted file now holds %q", got)
	}
	for _, p := range []string{filepath.Join(real, "cc.token"), filepath.Join(other, "cc.token"), filepath.Join(open, "cc.token")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: written (%v)", p, err)
		}
	}
	if n := sinkWrites(t, m, "cc", "error"); n < 4 {
		t.Errorf("sink errors counted %v, want at least 4", n)
	}
	// The failures are retried: fix one directory and it is written.
	must(t, os.Chmod(open, 0o755))
	waitFile(t, filepath.Join(open, "cc.token"), tok.AccessToken)
	if _, err := sink.CheckPath(viaLink, 0); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("sink.CheckPath(%s) = %v", viaLink, err)
	}
}

func TestSinkCommand(t *testing.T) {
	dir := sinkDir(t)
	out := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "cmd.sh")
	// Records its argv and environment, reads the sink, fails with a message.
	must(t, os.WriteFile(script, []byte("#!/bin/sh\n{ echo \"$@\"; env; } >> "+out+"\ncat \"$TOKEND_SINK_PATH\" > "+out+".sink\necho something went wrong >&2\nexit 3\n"), 0o755))
	path := filepath.Join(dir, "cc.token")
	h := newHarness(t, harnessOpts{config: withSinks("cc", config.Sink{Path: path, Command: []string{script, "arg"}, CommandTimeout: 10 * time.Second})})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	tok := h.token("cc")
	waitFile(t, out+".sink", tok.AccessToken)
	waitFor(t, "command status", func() bool {
		s := h.status("cc").Sinks
		return len(s) == 1 && s[0].CommandExit != nil && *s[0].CommandExit == 3 && strings.Contains(s[0].CommandStderrTail, "something went wrong")
	})
	if b := readOr(out); strings.Contains(b, tok.AccessToken) || !strings.Contains(b, "TOKEND_GRANT=cc") {
		t.Errorf("command's argv and environment:\n%s", b)
	}
}

// TestSinkCommandStderrFiltered: a sink command (any program tokend's
// user runs) writes terminal escape sequences, bidi overrides and C1
// controls to stderr. The grant's status, as every reader gets it from
// the API, holds the text without any of them, in at most 256 bytes cut
// between runes.
func TestSinkCommandStderrFiltered(t *testing.T) {
	dir := sinkDir(t)
	script := filepath.Join(t.TempDir(), "cmd.sh")
	must(t, os.WriteFile(script, []byte(`#!/bin/sh
# Many two-byte runes first, so that a cut at a fixed byte count would
# split one.
i=0; while [ $i -lt 300 ]; do printf 'é' >&2; i=$((i+1)); done
printf 'x\033[2J\033[31mred\033[0m \033]0;title\007 \033]8;;http://evil.example/\033\\link\033]8;;\033\\\n' >&2
printf 'bidi \342\200\256evil\342\200\254 \342\201\246iso\342\201\251 ' >&2
printf 'c1 \302\233 31m \302\235 raw \233 \205 nel \302\205 end\r\n' >&2
exit 1
`), 0o755))
	h := newHarness(t, harnessOpts{config: withSinks("cc", config.Sink{Path: filepath.Join(dir, "cc.token"), Command: []string{script}, CommandTimeout: 10 * time.Second})})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	var body []byte
	var tail string
	waitFor(t, "command status", func() bool {
		code, b := h.do(http.MethodGet, "/v1/tokens/cc/status")
		var st api.GrantStatus
		if code != 200 || json.Unmarshal(b, &st) != nil || len(st.Sinks) != 1 || st.Sinks[0].CommandExit == nil {
			return false
		}
		body, tail = b, st.Sinks[0].CommandStderrTail
		return true
	})
	for _, bad := range []string{"\\u001b", "\\u0007", "\\u009b", "\\u009d", "\\u0085", "\\r", "\\n", "\\ufffd", "\u202e", "\u202c", "\u2066", "\u2069", "\x1b", "\x9b"} {
		if strings.Contains(string(body), bad) {
			t.Errorf("the status's JSON holds %q: %s", bad, body)
		}
	}
	if oauth.Printable(tail) != tail || !utf8.ValidString(tail) {
		t.Errorf("stderr tail not printable: %q", tail)
	}
	if len(tail) > 256 || !strings.HasPrefix(tail, "é") || !strings.HasSuffix(tail, "nel end") || !strings.Contains(tail, "[31mred") || !strings.Contains(tail, "bidi evil iso") {
		t.Errorf("stderr tail (%d bytes): %q", len(tail), tail)
	}
}

func TestSinkCommandTimeout(t *testing.T) {
	dir := sinkDir(t)
	h := newHarness(t, harnessOpts{config: withSinks("cc", config.Sink{Path: filepath.Join(dir, "t"), Command: []string{"sleep", "60"}, CommandTimeout: 200 * time.Millisecond})})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	waitFor(t, "command killed", func() bool {
		s := h.status("cc").Sinks
		return len(s) == 1 && s[0].CommandExit != nil && strings.Contains(s[0].CommandError, "killed after")
	})
}

// TestJSONSinkIsTheFetchAnswer: a json sink holds the bytes a fetch of
// the same token answers at the same moment.
func TestJSONSinkIsTheFetchAnswer(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	p := Policy{DefaultLifetime: time.Hour}
	for _, tok := range []*store.Token{
		{AccessToken: "at_ABC.def-123~", TokenType: "Bearer", Scope: "read write", Expiry: now.Add(90*time.Minute + 500*time.Millisecond).In(time.FixedZone("x", 3600))},
		{AccessToken: "odd\"quote\\and<tag>&\u00e9\x01", TokenType: "bearer", Scope: "ü", Obtained: now.Add(-time.Minute)},
	} {
		// What encoding/json writes of the answer is what the socket API
		// writes by hand (package server's tests hold it to that).
		exp := expiryOf(tok, p)
		var want bytes.Buffer
		_ = json.NewEncoder(&want).Encode(api.TokenResponse{AccessToken: tok.AccessToken, TokenType: tok.TokenType,
			ExpiresIn: int64(exp.Sub(now) / time.Second), ExpiresAt: exp.UTC(), Scope: tok.Scope})
		if got := sink.Content(config.SinkJSON, sinkToken(tok, p), now); string(got) != want.String() {
			t.Errorf("json sink %s\nfetch     %s", got, want.String())
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSinkDirectoryCreated: a missing sink directory is created when its
// parent is tokend's own (the default /run/tokend/sinks).
func TestSinkDirectoryCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sinks")
	path := filepath.Join(dir, "cc.token")
	// As under the unit's UMask=0077: the directory is 0755 all the same.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	h := newHarness(t, harnessOpts{config: withSinks("cc", config.Sink{Path: path})})
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	waitFile(t, path, h.token("cc").AccessToken)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("sink directory: %v %v", fi.Mode(), err)
	}
}

// TestSinkGrantDroppedAndStartUp: a reload that drops the grant removes
// its sink; at start-up a stale file is brought up to date.
func TestSinkGrantDroppedAndStartUp(t *testing.T) {
	dir := sinkDir(t)
	path := filepath.Join(dir, "cc.token")
	must(t, os.WriteFile(path, []byte("stale"), 0o600))
	h := newHarness(t, harnessOpts{noRun: true, config: withSinks("cc", config.Sink{Path: path})})
	h.start()
	h.do(http.MethodPost, "/v1/tokens/cc/refresh")
	tok := h.token("cc")
	waitFile(t, path, tok.AccessToken)
	h.stop()
	must(t, os.WriteFile(path, []byte("stale"), 0o600))
	h.start()
	waitFile(t, path, tok.AccessToken)

	cfg := *h.cfg
	cfg.Grants = map[string]config.Grant{"other": {Client: "app", Type: config.GrantClientCredentials}}
	if err := h.d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dropped grant's sink removed", func() bool { _, err := os.Stat(path); return os.IsNotExist(err) })
}
