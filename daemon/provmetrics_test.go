package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
)

func TestRequestOutcome(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := http.Get("http://" + addr + "/token")

	for _, c := range []struct {
		resp *http.Response
		err  error
		want string
	}{
		{&http.Response{StatusCode: 503}, nil, "503"},
		{nil, refused, "refused"},
		{nil, &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "refused"},
		{nil, fmt.Errorf("Post: %w", context.DeadlineExceeded), "timeout"},
		{nil, fmt.Errorf("Post: %w", context.Canceled), "canceled"},
		{nil, &net.DNSError{Err: "no such host", Name: "op.example", IsNotFound: true}, "dns"},
		{nil, fmt.Errorf("Post: %w", io.EOF), "reset"},
		{nil, errors.New("something else: with a secret?"), "error"},
	} {
		if got := requestOutcome(c.resp, c.err); got != c.want {
			t.Errorf("requestOutcome(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
