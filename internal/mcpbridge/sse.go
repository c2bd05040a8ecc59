package mcpbridge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// event is one server-sent event (the WHATWG HTML "event stream
// interpretation"). hasID is set when the event carried an id field, which
// then becomes the stream's last event id even if empty.
type event struct {
	id       string
	hasID    bool
	name     string
	data     []byte
	retry    time.Duration
	hasRetry bool
}

// errEventTooLarge: an event beyond maxMessage; the stream cannot be
// followed further.
var errEventTooLarge = errors.New("an event of the SSE stream is larger than the limit")

// sseReader splits an event stream into events. Lines end in LF, CRLF or a
// lone CR; an event ends at an empty line; an event not ended when the
// stream ends is dropped, as the standard says.
type sseReader struct {
	r       *bufio.Reader
	max     int
	afterCR bool // the previous line ended in CR: a leading LF is its CRLF
	line    []byte
	ev      event
	data    bytes.Buffer
}

func newSSEReader(r io.Reader, max int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// next returns the next event. Events with no data (a priming event that
// carries only an id, a retry alone) are returned too, so the caller keeps
// their id and retry.
func (s *sseReader) next() (event, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return event{}, err
		}
		if len(line) == 0 {
			if !s.ev.hasID && !s.ev.hasRetry && s.data.Len() == 0 {
				s.ev = event{}
				continue
			}
			ev := s.ev
			ev.data = bytes.TrimSuffix(s.data.Bytes(), []byte("\n"))
			ev.data = append([]byte(nil), ev.data...)
			s.ev = event{}
			s.data.Reset()
			return ev, nil
		}
		if line[0] == ':' {
			continue // a comment (keep-alive)
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if s.data.Len()+len(value)+1 > s.max {
				return event{}, errEventTooLarge
			}
			s.data.Write(value)
			s.data.WriteByte('\n')
		case "event":
			s.ev.name = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				s.ev.id, s.ev.hasID = string(value), true
			}
		case "retry":
			if n, err := strconv.ParseUint(string(value), 10, 32); err == nil {
				s.ev.retry, s.ev.hasRetry = time.Duration(n)*time.Millisecond, true
			}
		}
	}
}

// readLine reads one line without its end. The returned slice is valid
// until the next call.
func (s *sseReader) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if s.afterCR {
			s.afterCR = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return s.line, nil
		case '\r':
			s.afterCR = true
			return s.line, nil
		}
		if len(s.line) >= s.max {
			return nil, errEventTooLarge
		}
		s.line = append(s.line, c)
	}
}
