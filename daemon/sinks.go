package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/childproc"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// Sinks. Every configured sink has a worker goroutine; publish hands it
// the grant's newest token (latest value wins) and never waits, so a slow
// or failing disk never holds up a refresh or a fetch. The worker writes
// the file, retries a failed write with backoff, and wakes the sink's
// command runner, which runs the command at most once at a time.

const (
	sinkRetryMin = time.Second
	sinkRetryMax = time.Minute
	// stderrRead is how much of the end of a sink command's stderr is
	// read; stderrTail is how much of it, once filtered (commandTail),
	// the grant's status keeps. Every reader of the grant sees it.
	stderrRead = 1024
	stderrTail = 256
)

// SinkMetrics is what a Metrics may also implement to count sink writes.
type SinkMetrics interface {
	ObserveSinkWrite(grant, result string)
}

type sinkWorker struct {
	d     *Daemon
	grant string
	cfg   config.Sink
	file  sinkFile

	latest atomic.Pointer[store.Token]
	wake   chan struct{}
	cmd    chan struct{}
	stop   chan struct{}
	done   sync.WaitGroup

	mu     sync.Mutex
	status api.SinkStatus
	// written is what the file holds: the fingerprint of the token
	// written, "" when removed or never written.
	written string
}

func (d *Daemon) newSinkWorker(grant string, s config.Sink) (*sinkWorker, error) {
	uid, gid, err := s.IDs()
	if err != nil {
		return nil, err
	}
	// A configuration built in code may skip Validate's defaults.
	if s.Mode.IsZero() {
		s.Mode = config.Mode(config.DefaultSinkMode)
	}
	if s.Format == "" {
		s.Format = config.DefaultSinkFormat
	}
	if s.CommandTimeout <= 0 {
		s.CommandTimeout = config.DefaultSinkCommandTimeout
	}
	w := &sinkWorker{
		d: d, grant: grant, cfg: s,
		file: sinkFile{path: s.Path, mode: s.Mode.Perm(), uid: uid, gid: gid, selfUID: int(d.selfUID)},
		wake: make(chan struct{}, 1),
		cmd:  make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	w.status.Path = s.Path
	return w, nil
}

func (w *sinkWorker) start() {
	w.done.Add(1)
	go w.run()
	if len(w.cfg.Command) > 0 {
		w.done.Add(1)
		go w.runCommands()
	}
}

// halt stops the worker and waits for it; a running command is killed.
func (w *sinkWorker) halt() {
	close(w.stop)
	w.done.Wait()
}

// offer hands the worker t; it never blocks.
func (w *sinkWorker) offer(t *store.Token) {
	w.latest.Store(t)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func fingerprint(t *store.Token) string {
	if t == nil || t.AccessToken == "" {
		return ""
	}
	return t.TokenType + " " + t.AccessToken + " " + strconv.FormatInt(t.Expiry.UnixNano(), 10)
}

func (w *sinkWorker) run() {
	defer w.done.Done()
	var retry *time.Timer
	var retryC <-chan time.Time
	delay := sinkRetryMin
	for {
		select {
		case <-w.stop:
			if retry != nil {
				retry.Stop()
			}
			return
		case <-w.wake:
			// A new token starts the backoff over.
			delay = sinkRetryMin
		case <-retryC:
			retryC = nil
		}
		err := w.apply()
		if err == nil {
			delay = sinkRetryMin
			if retry != nil {
				retry.Stop()
				retryC = nil
			}
			continue
		}
		if retry == nil {
			retry = time.NewTimer(delay)
		} else {
			retry.Reset(delay)
		}
		retryC = retry.C
		delay = min(delay*2, sinkRetryMax)
	}
}

// apply brings the file up to the latest token: written when there is an
// access token, removed when there is none (revoked, never authorized).
func (w *sinkWorker) apply() error {
	t := w.latest.Load()
	fp := fingerprint(t)
	w.mu.Lock()
	same := fp == w.written && w.status.OK
	w.mu.Unlock()
	if same {
		return nil
	}
	var err error
	result, what := "written", "written"
	if fp == "" {
		result, what = "removed", "removed"
		var existed bool
		existed, err = w.removeFile()
		if err == nil && !existed {
			result = "" // nothing was there: no removal to count
		}
	} else {
		_, p := w.d.config()
		err = w.file.write(sinkContent(w.cfg.Format, t, expiryOf(t, p), w.d.clock.Now()))
	}
	if err != nil {
		result = "error"
	}
	if m, ok := w.d.metrics.(SinkMetrics); ok && result != "" {
		m.ObserveSinkWrite(w.grant, result)
	}
	now := w.d.clock.Now().UTC()
	w.mu.Lock()
	if err != nil {
		repeat := w.status.Error == err.Error()
		w.status.OK, w.status.Error = false, err.Error()
		w.mu.Unlock()
		// Logged once at warning level; the retries' repeats go to debug.
		level := slog.LevelWarn
		if repeat {
			level = slog.LevelDebug
		}
		w.d.log.Log(context.Background(), level, "sink not "+what+"; retrying", "grant", w.grant, "path", w.cfg.Path, "err", err)
		return err
	}
	w.written = fp
	w.status.OK, w.status.Error = true, ""
	if fp != "" {
		w.status.WrittenAt = now
	} else {
		w.status.WrittenAt = time.Time{}
	}
	w.mu.Unlock()
	if result != "" {
		w.d.log.Debug("sink "+result, "grant", w.grant, "path", w.cfg.Path, "generation", t.Generation)
	}
	if fp != "" && len(w.cfg.Command) > 0 {
		select {
		case w.cmd <- struct{}{}:
		default:
		}
	}
	return nil
}

// removeFile removes the sink's file; existed says whether there was one
// to remove (a grant that never had a token has none).
func (w *sinkWorker) removeFile() (existed bool, err error) {
	_, serr := os.Lstat(w.cfg.Path)
	return !errors.Is(serr, os.ErrNotExist), w.file.remove()
}

// sinkContent renders t in format.
func sinkContent(format string, t *store.Token, exp, now time.Time) []byte {
	typ := t.TokenType
	if typ == "" {
		typ = "Bearer"
	}
	switch format {
	case config.SinkHeader:
		return []byte("Authorization: " + typ + " " + t.AccessToken + "\n")
	case config.SinkJSON:
		return appendTokenJSON(nil, t, exp, now)
	case config.SinkEnv:
		var b bytes.Buffer
		fmt.Fprintf(&b, "TOKEND_ACCESS_TOKEN=%s\nTOKEND_TOKEN_TYPE=%s\nTOKEND_EXPIRES_AT=%s\n",
			shellQuote(t.AccessToken), shellQuote(typ), exp.UTC().Format(time.RFC3339))
		return b.Bytes()
	}
	// raw: the token alone, no newline (Prometheus and most readers trim
	// nothing).
	return []byte(t.AccessToken)
}

// shellQuote quotes s for a POSIX shell's ". file" and for systemd's
// EnvironmentFile=, when it needs quoting at all.
func shellQuote(s string) string {
	plain := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~+/=:@%,", c)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runCommands runs the sink's command after writes, once at a time; writes
// that land while it runs cause one more run afterwards.
func (w *sinkWorker) runCommands() {
	defer w.done.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-w.cmd:
		}
		w.runCommand()
	}
}

func (w *sinkWorker) runCommand() {
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.CommandTimeout)
	defer cancel()
	go func() {
		select {
		case <-w.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// The token is in neither its argv nor its environment.
	c, stderr := childproc.Command(ctx, w.cfg.Command, childproc.Env("TOKEND_GRANT="+w.grant, "TOKEND_SINK_PATH="+w.cfg.Path), stderrRead, 5*time.Second)
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		code = -1
	}
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("killed after %s: %w", w.cfg.CommandTimeout, err)
		code = -1
	}
	w.mu.Lock()
	w.status.CommandExit = &code
	w.status.CommandStderrTail = commandTail(stderr.Bytes(), stderrTail)
	w.status.CommandAt = w.d.clock.Now().UTC()
	if err != nil {
		w.status.CommandError = err.Error()
	} else {
		w.status.CommandError = ""
	}
	w.mu.Unlock()
	if err != nil {
		// A command that fails on every write of a short-lived token
		// would otherwise log a line per write.
		w.d.warnLimited("sink command "+w.cfg.Path, "sink command failed", "grant", w.grant, "path", w.cfg.Path, "exit", code, "err", err)
		return
	}
	w.d.log.Debug("sink command ran", "grant", w.grant, "path", w.cfg.Path, "exit", code)
}

// commandTail is what the grant's status shows of a command's stderr b:
// one line of text, filtered as provider strings are (oauth.Printable:
// no terminal escapes, bidi controls or C1 controls reach a reader's
// terminal or a program that shows the JSON), at most n bytes from its
// end, cut between runes.
func commandTail(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(oauth.Printable(s)), " ")
	if len(s) > n {
		s = s[len(s)-n:]
		for s != "" && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
	}
	return s
}

func (w *sinkWorker) snapshot() api.SinkStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	if s.CommandExit != nil {
		c := *s.CommandExit
		s.CommandExit = &c
	}
	return s
}

// sinkSet is every sink worker, by grant, then path.
type sinkSet map[string]map[string]*sinkWorker

// syncSinks makes the running workers those of the configuration: it
// stops the workers of sinks that are gone or changed, removes the files
// of sinks that are gone, starts workers for new or changed sinks and
// offers every worker its grant's current token. It runs after the tokens
// are loaded (start-up, reload).
func (d *Daemon) syncSinks() {
	d.sinkMu.Lock()
	defer d.sinkMu.Unlock()
	cfg, _ := d.config()
	want := map[string]map[string]config.Sink{}
	for name, g := range cfg.Grants {
		for _, s := range g.Sinks {
			if want[name] == nil {
				want[name] = map[string]config.Sink{}
			}
			want[name][s.Path] = s
		}
	}
	paths := map[string]bool{}
	for _, ss := range want {
		for p := range ss {
			paths[p] = true
		}
	}
	next := sinkSet{}
	for name, ws := range d.sinks {
		for path, w := range ws {
			s, keep := want[name][path]
			if keep && sameSink(s, w.cfg) {
				if next[name] == nil {
					next[name] = map[string]*sinkWorker{}
				}
				next[name][path] = w
				continue
			}
			w.halt()
			if !paths[path] {
				if err := w.file.remove(); err != nil {
					d.log.Warn("removing the file of a sink no longer configured", "grant", name, "path", path, "err", err)
				} else {
					d.log.Info("sink removed from the configuration; file removed", "grant", name, "path", path)
				}
			}
		}
	}
	for name, ss := range want {
		for path, s := range ss {
			if next[name][path] != nil {
				continue
			}
			w, err := d.newSinkWorker(name, s)
			if err != nil {
				d.log.Error("sink not started", "grant", name, "path", path, "err", err)
				continue
			}
			if next[name] == nil {
				next[name] = map[string]*sinkWorker{}
			}
			next[name][path] = w
			w.start()
		}
	}
	d.sinks = next
	// Every grant's token state learns its workers, and each worker is
	// offered the current token: start-up brings every sink up to date.
	for _, g := range d.grantList() {
		if len(next[g.name]) == 0 {
			g.sinks.Store(nil) // no allocation for each grant without sinks
			continue
		}
		ws := slices.Collect(maps.Values(next[g.name]))
		slices.SortFunc(ws, func(a, b *sinkWorker) int { return strings.Compare(a.cfg.Path, b.cfg.Path) })
		g.sinks.Store(&ws)
		t := g.cur.Load()
		for _, w := range ws {
			w.offer(t)
		}
	}
}

// stopSinks halts every worker at shutdown; the files stay.
func (d *Daemon) stopSinks() {
	d.sinkMu.Lock()
	defer d.sinkMu.Unlock()
	for _, ws := range d.sinks {
		for _, w := range ws {
			w.halt()
		}
	}
	d.sinks = nil
	for _, g := range d.grantList() {
		g.sinks.Store(nil)
	}
}

// offerSinks hands t to the grant's sink workers.
func (ts *tokenState) offerSinks(t *store.Token) {
	if ws := ts.sinks.Load(); ws != nil {
		for _, w := range *ws {
			w.offer(t)
		}
	}
}

// sinkStatus lists the status of g's sinks.
func (g *grant) sinkStatus() []api.SinkStatus {
	ws := g.sinks.Load()
	if ws == nil || len(*ws) == 0 {
		return nil
	}
	out := make([]api.SinkStatus, 0, len(*ws))
	for _, w := range *ws {
		out = append(out, w.snapshot())
	}
	return out
}

func sameSink(a, b config.Sink) bool {
	return a.Path == b.Path && a.Format == b.Format && a.Mode == b.Mode && a.Owner == b.Owner && a.Group == b.Group &&
		slices.Equal(a.Command, b.Command) && a.CommandTimeout == b.CommandTimeout
}
