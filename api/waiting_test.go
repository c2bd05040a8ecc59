package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil"
)

// While the daemon's socket is gone (a restart) a call waits, backing off,
// and is answered once the socket is back.
func TestWaitingClientWaitsForARestartingDaemon(t *testing.T) {
	var got seen
	sock := fakeAPI(t, 200, `{"access_token":"tok-1","token_type":"Bearer","expires_in":60}`, &got)
	away := sock + ".away"
	if err := os.Rename(sock, away); err != nil {
		t.Fatal(err)
	}
	var slept []time.Duration
	w := &WaitingClient{Client: NewClient(sock), Wait: 30 * time.Second, Try: time.Second,
		Sleep: func(_ context.Context, d time.Duration) error {
			slept = append(slept, d)
			if len(slept) == 3 {
				return os.Rename(away, sock)
			}
			return nil
		}}
	tr, err := w.Token(context.Background(), "notes")
	if err != nil || tr.AccessToken != "tok-1" {
		t.Fatalf("token %+v, %v", tr, err)
	}
	if want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}; !slices.Equal(slept, want) {
		t.Errorf("waited %v, want %v", slept, want)
	}
}

// Gone for longer than the wait: the connection error, after a few tries.
func TestWaitingClientGivesUpAfterItsWait(t *testing.T) {
	sock := testutil.ShortDir(t) + "/absent.sock"
	var slept []time.Duration
	w := &WaitingClient{Client: NewClient(sock), Wait: 300 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }}
	_, err := w.Token(context.Background(), "notes")
	if err == nil || !strings.Contains(err.Error(), "is tokend running?") || len(slept) == 0 || len(slept) > 3 {
		t.Errorf("error %v after waiting %v", err, slept)
	}

	// A wait that ends with the caller's context ends the call.
	slept = nil
	w.Wait = 30 * time.Second
	w.Sleep = func(_ context.Context, d time.Duration) error { slept = append(slept, d); return context.Canceled }
	if _, err := w.Token(context.Background(), "notes"); err == nil || len(slept) != 1 {
		t.Errorf("error %v after waiting %v", err, slept)
	}

	// No wait: one try.
	slept = nil
	w.Wait = 0
	if _, err := w.Token(context.Background(), "notes"); err == nil || len(slept) != 0 {
		t.Errorf("error %v after waiting %v", err, slept)
	}
}

// A call whose connection breaks before its answer may have reached the
// daemon: a token fetch is made again, a step-up (which counts against the
// grant's bound) is not.
func TestWaitingClientRepeatsOnlyRepeatableCalls(t *testing.T) {
	var calls atomic.Int32
	sock := testutil.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			// The daemon dies during the call: the connection closes
			// with no answer.
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.Close()
			return
		}
		if r.Method == http.MethodPost {
			io.WriteString(w, `{"name":"notes","state":"valid"}`)
			return
		}
		io.WriteString(w, `{"access_token":"tok-2","token_type":"Bearer","expires_in":60}`)
	}))
	noSleep := func(context.Context, time.Duration) error { return nil }

	w := &WaitingClient{Client: NewClient(sock), Wait: 30 * time.Second, Sleep: noSleep}
	if _, err := w.StepUp(context.Background(), "notes", StepUpRequest{Scope: "write"}); err == nil || calls.Load() != 1 {
		t.Errorf("step-up: %v after %d calls; want the broken connection's error after one", err, calls.Load())
	}

	calls.Store(0)
	w = &WaitingClient{Client: NewClient(sock), Wait: 30 * time.Second, Sleep: noSleep}
	tr, err := w.Token(context.Background(), "notes")
	if err != nil || tr.AccessToken != "tok-2" || calls.Load() != 2 {
		t.Errorf("token %+v, %v after %d calls; want tok-2 after two", tr, err, calls.Load())
	}
}

// A step-up that never reached the daemon (its socket was gone) is made
// again like the others.
func TestWaitingClientRepeatsAStepUpNeverSent(t *testing.T) {
	var got seen
	sock := fakeAPI(t, 200, `{"name":"notes","state":"valid"}`, &got)
	away := sock + ".away"
	if err := os.Rename(sock, away); err != nil {
		t.Fatal(err)
	}
	w := &WaitingClient{Client: NewClient(sock), Wait: 30 * time.Second,
		Sleep: func(context.Context, time.Duration) error { return os.Rename(away, sock) }}
	st, err := w.StepUp(context.Background(), "notes", StepUpRequest{Scope: "write"})
	if err != nil || st.State != "valid" || got.path != "/v1/tokens/notes/step-up" {
		t.Errorf("step-up %+v, %v; the daemon saw %+v", st, err, got)
	}
}

// Try bounds each try, not the caller's context: a daemon that does not
// answer is a timeout, not a wait.
func TestWaitingClientBoundsEachTry(t *testing.T) {
	sock := testutil.ServeUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	w := &WaitingClient{Client: NewClient(sock), Wait: 30 * time.Second, Try: 50 * time.Millisecond,
		Sleep: func(context.Context, time.Duration) error { t.Error("a timeout is waited through"); return nil }}
	if _, err := w.Token(context.Background(), "notes"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want the try's deadline", err)
	}
}

func TestDaemonAway(t *testing.T) {
	for _, c := range []struct {
		err        error
		repeatable bool
		want       bool
	}{
		{syscall.ECONNREFUSED, false, true},
		{syscall.ENOENT, false, true},
		{io.ErrUnexpectedEOF, false, false},
		{io.ErrUnexpectedEOF, true, true},
		{syscall.ECONNRESET, true, true},
		{syscall.ECONNRESET, false, false},
		{context.DeadlineExceeded, true, false},
		{&Error{Status: http.StatusServiceUnavailable}, true, false},
	} {
		if got := daemonAway(c.err, c.repeatable); got != c.want {
			t.Errorf("daemonAway(%v, repeatable %v) = %v", c.err, c.repeatable, got)
		}
	}
}

// Sleep waits its time, or less when the context ends first.
func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Errorf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with an ended context: %v", err)
	}
	if time.Since(start) > time.Minute {
		t.Error("Sleep outlived its context")
	}
}
