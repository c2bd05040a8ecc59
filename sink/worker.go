package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
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
)

// A worker writes the grant's newest token (latest value wins) and never
// makes its caller wait, so a slow or failing disk never holds up a
// refresh or a fetch. It writes the file, retries a failed write with
// backoff, and wakes the sink's command runner, which runs the command at
// most once at a time.

const (
	retryMin = time.Second
	retryMax = time.Minute
	// stderrRead is how much of the end of a sink command's stderr is
	// read; stderrTail is how much of it, once filtered (commandTail),
	// the grant's status keeps. Every reader of the grant sees it.
	stderrRead = 1024
	stderrTail = 256
)

// Token is what a sink writes of a grant's token.
type Token struct {
	AccessToken string
	TokenType   string
	Scope       string
	// Expiry is the token's own expiry (zero when the provider gave
	// none); a new Expiry is a new token to write.
	Expiry time.Time
	// ExpiresAt is the expiry the API reports and the file carries.
	ExpiresAt time.Time
	// Generation is logged with each write.
	Generation uint64
}

// Metrics counts sink writes.
type Metrics interface {
	// ObserveSinkWrite counts one write, removal or error of a grant's
	// sink; result is "written", "removed" or "error".
	ObserveSinkWrite(grant, result string)
}

// Engine is what a worker needs of the engine that runs it.
type Engine struct {
	// SelfUID is tokend's own uid, which may own sink directories.
	SelfUID int
	// Now is the engine's clock.
	Now func() time.Time
	// Log takes the worker's log lines.
	Log *slog.Logger
	// WarnLimited logs a warning that may repeat at most so often per key.
	WarnLimited func(key, msg string, args ...any)
	// Metrics, if not nil, counts writes.
	Metrics Metrics
}

// Worker keeps one sink's file, and runs its command, for one grant.
type Worker struct {
	eng   Engine
	grant string
	cfg   config.Sink
	file  file

	latest atomic.Pointer[Token]
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

// NewWorker returns the (not yet started) worker of grant's sink s.
func NewWorker(eng Engine, grant string, s config.Sink) (*Worker, error) {
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
	w := &Worker{
		eng: eng, grant: grant, cfg: s,
		file: file{path: s.Path, mode: s.Mode.Perm(), uid: uid, gid: gid, selfUID: eng.SelfUID},
		wake: make(chan struct{}, 1),
		cmd:  make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	w.status.Path = s.Path
	return w, nil
}

// Config is the sink the worker keeps, with its defaults filled in.
func (w *Worker) Config() config.Sink { return w.cfg }

// Start starts the worker's goroutines.
func (w *Worker) Start() {
	w.done.Add(1)
	go w.run()
	if len(w.cfg.Command) > 0 {
		w.done.Add(1)
		go w.runCommands()
	}
}

// Halt stops the worker and waits for it; a running command is killed.
func (w *Worker) Halt() {
	close(w.stop)
	w.done.Wait()
}

// Offer hands the worker t, nil or without an access token to remove the
// file; it never blocks.
func (w *Worker) Offer(t *Token) {
	w.latest.Store(t)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// RemoveFile removes the sink's file, for a sink no longer configured;
// the worker must be halted.
func (w *Worker) RemoveFile() error { return w.file.remove() }

func fingerprint(t *Token) string {
	if t == nil || t.AccessToken == "" {
		return ""
	}
	return t.TokenType + " " + t.AccessToken + " " + strconv.FormatInt(t.Expiry.UnixNano(), 10)
}

func (w *Worker) run() {
	defer w.done.Done()
	var retry *time.Timer
	var retryC <-chan time.Time
	delay := retryMin
	for {
		select {
		case <-w.stop:
			if retry != nil {
				retry.Stop()
			}
			return
		case <-w.wake:
			// A new token starts the backoff over.
			delay = retryMin
		case <-retryC:
			retryC = nil
		}
		err := w.apply()
		if err == nil {
			delay = retryMin
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
		delay = min(delay*2, retryMax)
	}
}

// apply brings the file up to the latest token: written when there is an
// access token, removed when there is none (revoked, never authorized).
func (w *Worker) apply() error {
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
		err = w.file.write(Content(w.cfg.Format, t, w.eng.Now()))
	}
	if err != nil {
		result = "error"
	}
	if w.eng.Metrics != nil && result != "" {
		w.eng.Metrics.ObserveSinkWrite(w.grant, result)
	}
	now := w.eng.Now().UTC()
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
		w.eng.Log.Log(context.Background(), level, "sink not "+what+"; retrying", "grant", w.grant, "path", w.cfg.Path, "err", err)
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
		var gen uint64
		if t != nil {
			gen = t.Generation
		}
		w.eng.Log.Debug("sink "+result, "grant", w.grant, "path", w.cfg.Path, "generation", gen)
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
func (w *Worker) removeFile() (existed bool, err error) {
	_, serr := os.Lstat(w.cfg.Path)
	return !errors.Is(serr, os.ErrNotExist), w.file.remove()
}

// runCommands runs the sink's command after writes, once at a time; writes
// that land while it runs cause one more run afterwards.
func (w *Worker) runCommands() {
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

func (w *Worker) runCommand() {
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
	w.status.CommandAt = w.eng.Now().UTC()
	if err != nil {
		w.status.CommandError = err.Error()
	} else {
		w.status.CommandError = ""
	}
	w.mu.Unlock()
	if err != nil {
		// A command that fails on every write of a short-lived token
		// would otherwise log a line per write.
		w.eng.WarnLimited("sink command "+w.cfg.Path, "sink command failed", "grant", w.grant, "path", w.cfg.Path, "exit", code, "err", err)
		return
	}
	w.eng.Log.Debug("sink command ran", "grant", w.grant, "path", w.cfg.Path, "exit", code)
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

// Status is the sink's status as the API reports it.
func (w *Worker) Status() api.SinkStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	if s.CommandExit != nil {
		c := *s.CommandExit
		s.CommandExit = &c
	}
	return s
}
