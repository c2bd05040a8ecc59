package daemon

// Hooks tell commands and webhooks about grant events (config/hooks.go
// lists them). Emitting never blocks a refresh, an authorization or a
// fetch: an event goes into its hook's bounded queue (the oldest is dropped
// and counted when it is full) and the hook's one worker delivers the queue
// in order, so events of one grant arrive in the order they happened. A
// command or request that outlives the hook's timeout is killed; a
// webhook is retried with backoff on network errors, 429 and 5xx. Neither
// ever sees a token: the event carries the grant's name, state, error and
// times.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/childproc"
	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// HookMetrics is implemented by a Metrics that also counts hook
// deliveries (metrics.Metrics does): result is success, failure, timeout
// or dropped, and d the time from the event to the end of its delivery.
type HookMetrics interface {
	ObserveHook(hook, result string, d time.Duration)
}

const (
	// hookQueueSize bounds the events waiting for one hook.
	hookQueueSize = 256
	// hookAttempts bounds the requests of one webhook delivery.
	hookAttempts = 4
	// hookBackoffMax caps the wait between two webhook attempts.
	hookBackoffMax = 30 * time.Second
	// hookStderrTail is how much of a failed command's stderr is logged.
	hookStderrTail = 512
	// Webhook headers: the signature is "sha256=" and the hex of
	// HMAC-SHA256(secret, timestamp + "." + body).
	HeaderSignature = "X-Tokend-Signature"
	HeaderTimestamp = "X-Tokend-Timestamp"
	HeaderEvent     = "X-Tokend-Event"
	HeaderDelivery  = "X-Tokend-Delivery"
)

// HookEvent is what a hook is told: the JSON body of a webhook, and the
// TOKEND_EVENT_* variables of a command. It never holds a token.
type HookEvent struct {
	ID         string    `json:"id"`    // unique per event; the same in every retry
	Event      string    `json:"event"` // config.HookEvents
	Grant      string    `json:"grant"`
	State      string    `json:"state"` // the grant's state after the event
	Error      string    `json:"error,omitempty"`
	ErrorCode  string    `json:"error_code,omitempty"`
	Time       time.Time `json:"time"`                 // when it happened
	ExpiresAt  time.Time `json:"expires_at,omitzero"`  // the current access token's expiry, if any
	Generation uint64    `json:"generation,omitempty"` // the token set's generation

	queued time.Time // wall clock at emit, for the latency metric
}

// SignHook returns the X-Tokend-Signature value of a webhook request:
// "sha256=" and the hex of HMAC-SHA256(secret, timestamp "." body), where
// timestamp is the X-Tokend-Timestamp header (Unix seconds). A receiver
// recomputes it, compares in constant time and refuses a timestamp far
// from its clock (replays).
func SignHook(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// hooks are the runners of the configured hooks, replaced on reload.
type hooks struct {
	mu      sync.Mutex // guards runners and stopped; held while enqueueing
	runners []*hookRunner
	stopped bool            // no more workers start: wg.Add happens before wg.Wait
	ctx     context.Context // cancelled when Run ends: kills what runs, drops what waits
	stop    context.CancelFunc
	wg      sync.WaitGroup
	backoff time.Duration // first wait between webhook attempts (tests shorten it)
	client  *http.Client
}

type hookRunner struct {
	h     *hooks
	d     *Daemon
	cfg   config.Hook
	label string

	mu      sync.Mutex
	queue   []*HookEvent
	running bool
}

func (hs *hooks) init() {
	hs.ctx, hs.stop = context.WithCancel(context.Background())
	hs.backoff = time.Second
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hs.client = &http.Client{
		Transport: tr,
		// A redirect could lead to plain http or another host; the
		// receiver must answer itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// configureHooks installs the hooks of cfg. A hook whose configuration
// did not change keeps its runner and queue, so a reload does not reorder
// its events.
func (d *Daemon) configureHooks(cfg *config.Config) {
	hs := &d.hooks
	hs.mu.Lock()
	defer hs.mu.Unlock()
	runners := make([]*hookRunner, 0, len(cfg.Hooks))
	for i, hc := range cfg.Hooks {
		label := hc.Label(i)
		var r *hookRunner
		for _, o := range hs.runners {
			if o.label == label && reflect.DeepEqual(o.cfg, hc) {
				r = o
				break
			}
		}
		if r == nil {
			r = &hookRunner{h: hs, d: d, cfg: hc, label: label}
			if r.cfg.Timeout <= 0 {
				r.cfg.Timeout = config.DefaultHookTimeout
			}
		}
		runners = append(runners, r)
	}
	hs.runners = runners
}

// stopHooks kills what hooks run, drops what waits and waits (a little)
// for the workers to end.
func (d *Daemon) stopHooks() {
	d.hooks.mu.Lock()
	d.hooks.stopped = true
	d.hooks.mu.Unlock()
	d.hooks.stop()
	done := make(chan struct{})
	go func() { d.hooks.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		d.log.Warn("hooks still running at exit")
	}
}

// emit tells the hooks that want it about event on g, whose record is now
// t. It never blocks.
func (d *Daemon) emit(g *grant, event string, t *store.Token) {
	hs := &d.hooks
	hs.mu.Lock() // enqueue never blocks: a short hold
	defer hs.mu.Unlock()
	if hs.stopped {
		return
	}
	var e *HookEvent
	for _, r := range hs.runners {
		if !r.cfg.Wants(event, g.name) {
			continue
		}
		if e == nil {
			e = &HookEvent{ID: rand.Text(), Event: event, Grant: g.name, State: t.State,
				Error: t.LastError, ErrorCode: t.LastErrorCode, Time: d.clock.Now().UTC(),
				Generation: t.Generation, queued: time.Now()}
			if t.AccessToken != "" {
				e.ExpiresAt = t.Expiry.UTC()
			}
		}
		r.enqueue(e)
	}
}

// emitFailure emits event for a failed attempt of g, with the record the
// failure gives it.
func (d *Daemon) emitFailure(g *grant, p Policy, event string, err error) {
	n := d.withFailure(g, p, err)
	d.emit(g, event, &n)
}

// emitObtained emits refreshed for a new token set n, and recovered when
// the grant was in trouble before (prior is its state then).
func (d *Daemon) emitObtained(g *grant, prior string, n *store.Token) {
	d.emit(g, config.EventRefreshed, n)
	switch prior {
	case api.StateFailing, api.StateExpired, api.StateReauthorizationRequired, api.StateCredentialsError, api.StateConfigurationError:
		d.emit(g, config.EventRecovered, n)
	}
}

// emitTransition emits reauthorization_required or expired when a failure
// moves g into that state from another (prior).
func (d *Daemon) emitTransition(g *grant, prior string, n *store.Token) {
	if n.State == prior {
		return
	}
	switch n.State {
	case api.StateReauthorizationRequired:
		d.emit(g, config.EventReauthorizationRequired, n)
	case api.StateExpired:
		d.emit(g, config.EventExpired, n)
	}
}

// enqueue queues e; the caller holds r.h.mu.
func (r *hookRunner) enqueue(e *HookEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= hookQueueSize {
		old := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.observe("dropped", 0)
		r.d.warnLimited("hook dropped "+r.label, "hook queue full: dropped the oldest events",
			"hook", r.label, "last_event", old.Event, "last_grant", old.Grant)
	}
	r.queue = append(r.queue, e)
	if !r.running {
		r.running = true
		r.h.wg.Add(1)
		go r.loop()
	}
}

func (r *hookRunner) loop() {
	defer r.h.wg.Done()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 || r.h.ctx.Err() != nil {
			r.queue = nil
			r.running = false
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		r.mu.Unlock()
		r.deliver(e)
	}
}

func (r *hookRunner) observe(result string, d time.Duration) {
	if m, ok := r.d.metrics.(HookMetrics); ok {
		m.ObserveHook(r.label, result, d)
	}
}

func (r *hookRunner) deliver(e *HookEvent) {
	var result string
	var err error
	if len(r.cfg.Command) > 0 {
		result, err = r.runCommand(e)
	} else {
		result, err = r.post(e)
	}
	if r.h.ctx.Err() != nil {
		return // shutting down: not the hook's failure
	}
	latency := time.Since(e.queued)
	r.observe(result, latency)
	if result == "success" {
		r.d.log.Debug("hook delivered", "hook", r.label, "event", e.Event, "grant", e.Grant, "latency", latency)
		return
	}
	r.d.warnLimited("hook failed "+r.label, "hook failed", "hook", r.label, "event", e.Event, "grant", e.Grant, "result", result, "err", err)
}

// hookEnv is tokend's environment without what belongs to tokend alone
// (systemd's sockets and credentials, TOKEND_* settings), and the event.
func hookEnv(e *HookEvent) []string {
	env := childproc.Env()
	add := func(k, v string) { env = append(env, "TOKEND_EVENT_"+k+"="+v) }
	add("ID", e.ID)
	add("NAME", e.Event)
	add("GRANT", e.Grant)
	add("STATE", e.State)
	add("ERROR", e.Error)
	add("ERROR_CODE", e.ErrorCode)
	add("TIME", e.Time.Format(time.RFC3339Nano))
	exp := ""
	if !e.ExpiresAt.IsZero() {
		exp = e.ExpiresAt.Format(time.RFC3339)
	}
	add("EXPIRES_AT", exp)
	add("GENERATION", strconv.FormatUint(e.Generation, 10))
	return env
}

func (r *hookRunner) runCommand(e *HookEvent) (string, error) {
	ctx, cancel := context.WithTimeout(r.h.ctx, r.cfg.Timeout)
	defer cancel()
	cmd, stderr := childproc.Command(ctx, r.cfg.Command, hookEnv(e), hookStderrTail, time.Second)
	err := cmd.Run()
	switch {
	case err == nil:
		return "success", nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "timeout", fmt.Errorf("killed after %s", r.cfg.Timeout)
	}
	if tail := strings.TrimSpace(oauth.Printable(string(stderr.Bytes()))); tail != "" {
		err = fmt.Errorf("%w; stderr: %s", err, tail)
	}
	return "failure", err
}

// post delivers e to the webhook, retrying with backoff on network
// errors, 429 and 5xx.
func (r *hookRunner) post(e *HookEvent) (string, error) {
	if err := oauth.CheckEndpointURL(r.cfg.URL); err != nil {
		return "failure", errors.New("webhook URL refused: https is required unless the host is loopback")
	}
	body, err := json.Marshal(e)
	if err != nil {
		return "failure", err
	}
	wait := r.h.backoff
	result := "failure"
	for attempt := 1; ; attempt++ {
		var retry bool
		result, retry, err = r.postOnce(e, body)
		if !retry || attempt == hookAttempts {
			return result, err
		}
		r.d.log.Debug("webhook failed, retrying", "hook", r.label, "event", e.Event, "grant", e.Grant, "attempt", attempt, "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.h.ctx.Done():
			t.Stop()
			return result, err
		}
		wait = min(2*wait, hookBackoffMax)
	}
}

func (r *hookRunner) postOnce(e *HookEvent, body []byte) (result string, retry bool, err error) {
	ctx, cancel := context.WithTimeout(r.h.ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return "failure", false, errors.New("webhook URL does not parse")
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokend-hook")
	req.Header.Set(HeaderEvent, e.Event)
	req.Header.Set(HeaderDelivery, e.ID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, SignHook([]byte(r.cfg.Secret.Reveal()), ts, body))
	resp, err := r.h.client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "timeout", true, fmt.Errorf("no answer within %s", r.cfg.Timeout)
		}
		// The error names the URL, which may carry credentials: keep
		// only the reason.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap()
		}
		return "failure", true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return "success", false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "failure", true, fmt.Errorf("webhook answered %s", resp.Status)
	}
	return "failure", false, fmt.Errorf("webhook answered %s", resp.Status)
}
