package mcpbridge

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// The event stream format as the WHATWG standard defines it: the three
// line ends, comments, data over several lines, a space after the colon
// removed once, ids (also empty, and refused with NUL), retry only when
// all digits, and an unfinished event dropped at the end.
func TestSSEReader(t *testing.T) {
	stream := ": comment\n\n" +
		"data: one\n\n" +
		"id: 7\r\nevent: message\r\ndata:two\r\ndata:  lines\r\n\r\n" +
		"id\rretry: 250\rdata\r\r" +
		"id: a\x00b\nretry: 1x\ndata: kept\n\n" +
		"id: 9\n\n" +
		"data: unfinished\n"
	r := newSSEReader(strings.NewReader(stream), 1<<10)
	want := []event{
		{data: []byte("one")},
		{id: "7", hasID: true, name: "message", data: []byte("two\n lines")},
		{id: "", hasID: true, retry: 250 * time.Millisecond, hasRetry: true, data: []byte("")},
		{data: []byte("kept")},
		{id: "9", hasID: true, data: []byte("")},
	}
	for i, w := range want {
		got, err := r.next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.id != w.id || got.hasID != w.hasID || got.name != w.name || string(got.data) != string(w.data) || got.retry != w.retry || got.hasRetry != w.hasRetry {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: %v, want EOF (the unfinished one dropped)", err)
	}
}

func TestSSEReaderBoundsEvents(t *testing.T) {
	for name, stream := range map[string]string{
		"one line":   "data: " + strings.Repeat("x", 200) + "\n\n",
		"many lines": strings.Repeat("data: "+strings.Repeat("x", 40)+"\n", 10) + "\n",
	} {
		r := newSSEReader(strings.NewReader(stream), 100)
		if _, err := r.next(); !errors.Is(err, errEventTooLarge) {
			t.Errorf("%s: %v, want errEventTooLarge", name, err)
		}
	}
}
