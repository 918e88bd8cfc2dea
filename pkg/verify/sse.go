package verify

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The revocation feed is a Server-Sent Events stream (HTML Living Standard,
// "Server-sent events"). sseReader reads the subset sessiongate writes,
// strictly: anything else is an error and the caller reconnects, because a
// stream it cannot fully read is a stream it cannot vouch for.
//
//	: comment                           ignored (heartbeats)
//	event: revoked                      then exactly one data line, then a blank line
//	data: {"sid":"<32 hex>","exp":<unix seconds>}
//	event: synced
//	data: {"count":<n>}
//	retry: <ms> / id: <x>               ignored
//
// Lines end in LF or CRLF (a bare CR is refused: the one place the SSE
// grammar lets two readers split lines differently). A line longer than
// maxSSELine is refused before it is buffered whole.

// maxSSELine bounds one line of the stream.
const maxSSELine = 1024

// sseEvent is one dispatched event.
type sseEvent struct {
	synced bool   // event: synced (count in exp)
	sid    string // event: revoked
	exp    int64  // unix seconds (revoked), entry count (synced)
}

var errSSE = errors.New("revocation feed: malformed stream")

type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, maxSSELine+2)}
}

// line reads one line without its terminator.
func (s *sseReader) line() ([]byte, error) {
	b, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errSSE, maxSSELine)
	}
	if err != nil {
		if err == io.EOF && len(b) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	if len(b) > maxSSELine {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errSSE, maxSSELine)
	}
	for _, c := range b {
		if c == '\r' || c == 0 {
			return nil, fmt.Errorf("%w: CR or NUL inside a line", errSSE)
		}
	}
	return b, nil
}

// next returns the next event. Comments are skipped; onLine is called for
// every line read (heartbeats included), so the caller knows the stream is
// alive.
func (s *sseReader) next(onLine func()) (sseEvent, error) {
	var typ, data string
	var haveType, haveData bool
	for {
		b, err := s.line()
		if err != nil {
			if err == io.EOF && (haveType || haveData) {
				err = io.ErrUnexpectedEOF // the stream ended inside an event
			}
			return sseEvent{}, err
		}
		if onLine != nil {
			onLine()
		}
		if len(b) == 0 {
			if !haveType && !haveData {
				continue // blank lines between events, or after a comment
			}
			if !haveType || !haveData {
				return sseEvent{}, fmt.Errorf("%w: an event without both event and data", errSSE)
			}
			return parseSSEEvent(typ, data)
		}
		if b[0] == ':' {
			continue
		}
		name, value := splitSSEField(b)
		switch name {
		case "event":
			if haveType {
				return sseEvent{}, fmt.Errorf("%w: two event lines in one event", errSSE)
			}
			typ, haveType = value, true
		case "data":
			if haveData {
				return sseEvent{}, fmt.Errorf("%w: two data lines in one event", errSSE)
			}
			data, haveData = value, true
		case "id", "retry":
		default:
			return sseEvent{}, fmt.Errorf("%w: unknown field", errSSE)
		}
	}
}

// splitSSEField splits "name: value" as the standard does: at the first
// colon, dropping one space after it.
func splitSSEField(b []byte) (string, string) {
	for i, c := range b {
		if c == ':' {
			v := b[i+1:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			return string(b[:i]), string(v)
		}
	}
	return string(b), ""
}

func parseSSEEvent(typ, data string) (sseEvent, error) {
	switch typ {
	case "revoked":
		sid, exp, ok := parseRevokedData(data)
		if !ok {
			return sseEvent{}, fmt.Errorf("%w: revoked data is not {\"sid\":\"<32 hex>\",\"exp\":<n>}", errSSE)
		}
		return sseEvent{sid: sid, exp: exp}, nil
	case "synced":
		const pre, post = `{"count":`, `}`
		if len(data) < len(pre)+len(post) || data[:len(pre)] != pre || data[len(data)-1:] != post {
			return sseEvent{}, fmt.Errorf("%w: synced data is not {\"count\":<n>}", errSSE)
		}
		n, ok := parseDecimal(data[len(pre) : len(data)-1])
		if !ok {
			return sseEvent{}, fmt.Errorf("%w: synced count", errSSE)
		}
		return sseEvent{synced: true, exp: n}, nil
	}
	return sseEvent{}, fmt.Errorf("%w: unknown event type", errSSE)
}

// parseRevokedData reads exactly what sessiongate writes; no other
// spelling of the same JSON is accepted, so there is nothing for two JSON
// readers to disagree on.
func parseRevokedData(d string) (string, int64, bool) {
	const pre, mid, post = `{"sid":"`, `","exp":`, `}`
	const sidLen = 32
	if len(d) < len(pre)+sidLen+len(mid)+1+len(post) || d[:len(pre)] != pre {
		return "", 0, false
	}
	sid := d[len(pre) : len(pre)+sidLen]
	for i := 0; i < len(sid); i++ {
		c := sid[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", 0, false
		}
	}
	rest := d[len(pre)+sidLen:]
	if rest[:len(mid)] != mid || rest[len(rest)-1:] != post {
		return "", 0, false
	}
	exp, ok := parseDecimal(rest[len(mid) : len(rest)-1])
	if !ok {
		return "", 0, false
	}
	return sid, exp, true
}

// parseDecimal reads a JSON non-negative integer of at most 15 digits.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 15 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
