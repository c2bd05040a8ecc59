package api

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

// WaitingClient is a Client whose calls ride out a restarting daemon: a
// call that finds the socket refused or absent (the daemon stopped or
// restarting) is made again, backing off from 50 ms to 1 s, for up to
// Wait and while its context lasts, and then returns its last error. A
// call that may be sent twice is also made again when the connection broke
// before its answer (the daemon died during the call); StepUp, which
// counts against the grant's bound, is made again only when it never
// reached the daemon.
//
// tokend proxy and tokend mcp fetch their tokens through one, so that a
// restart of the daemon is a wait for their clients rather than an error.
type WaitingClient struct {
	Client *Client
	// Wait bounds how long one call waits for a daemon that cannot be
	// reached; zero is a single try.
	Wait time.Duration
	// Try bounds each try; zero leaves it to the caller's context.
	Try time.Duration
	// Sleep waits between tries; nil is Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Token is Client.Token, made again while the daemon cannot be reached.
func (w *WaitingClient) Token(ctx context.Context, name string) (*TokenResponse, error) {
	return untilAnswered(ctx, w, true, func(ctx context.Context) (*TokenResponse, error) {
		return w.Client.Token(ctx, name)
	})
}

// DPoP is Client.DPoP, made again while the daemon cannot be reached.
func (w *WaitingClient) DPoP(ctx context.Context, name string, req DPoPRequest) (*DPoPResponse, error) {
	return untilAnswered(ctx, w, true, func(ctx context.Context) (*DPoPResponse, error) {
		return w.Client.DPoP(ctx, name, req)
	})
}

// Rejected is Client.Rejected, made again while the daemon cannot be
// reached: the daemon refreshes once for a refused token, however often it
// is reported.
func (w *WaitingClient) Rejected(ctx context.Context, name string, req RejectedRequest) (*TokenResponse, error) {
	return untilAnswered(ctx, w, true, func(ctx context.Context) (*TokenResponse, error) {
		return w.Client.Rejected(ctx, name, req)
	})
}

// StepUp is Client.StepUp, made again only while it cannot have reached
// the daemon: each one counts against the grant's bound.
func (w *WaitingClient) StepUp(ctx context.Context, name string, req StepUpRequest) (*GrantStatus, error) {
	return untilAnswered(ctx, w, false, func(ctx context.Context) (*GrantStatus, error) {
		return w.Client.StepUp(ctx, name, req)
	})
}

// untilAnswered makes call, each try bounded by w.Try, and tries again
// while the daemon is away (daemonAway), backing off from 50 ms to 1 s,
// for up to w.Wait and while ctx lasts. The last error is returned.
func untilAnswered[T any](ctx context.Context, w *WaitingClient, repeatable bool, call func(context.Context) (*T, error)) (*T, error) {
	sleep := w.Sleep
	if sleep == nil {
		sleep = Sleep
	}
	deadline := time.Now().Add(w.Wait)
	delay := 50 * time.Millisecond
	for {
		cctx, cancel := w.bound(ctx)
		v, err := call(cctx)
		cancel()
		if err == nil || !daemonAway(err, repeatable) || time.Now().Add(delay).After(deadline) {
			return v, err
		}
		if sleep(ctx, delay) != nil {
			return v, err
		}
		delay = min(2*delay, time.Second)
	}
}

// bound applies w.Try to one try.
func (w *WaitingClient) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.Try > 0 {
		return context.WithTimeout(ctx, w.Try)
	}
	return context.WithCancel(ctx)
}

// daemonAway reports whether err says the daemon could not be reached (its
// socket refused or absent: stopped, restarting), or, for a call that may
// be sent twice, that the connection broke before its answer (the daemon
// died during the call).
func daemonAway(err error, repeatable bool) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return true
	}
	return repeatable && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF))
}

// Sleep waits d, or until ctx ends and then returns ctx's error. It is a
// WaitingClient's wait between tries unless another is given, and the
// real clock of the programs that take a sleep function to be tested
// without waiting.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
