package verify

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

const testSID = "0123456789abcdef0123456789abcdef"

func readAll(in string) ([]sseEvent, error) {
	r := newSSEReader(strings.NewReader(in))
	var out []sseEvent
	for {
		ev, err := r.next(nil)
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func TestSSEReader(t *testing.T) {
	revoked := "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1900000000}\n\n"
	synced := "event: synced\ndata: {\"count\":1}\n\n"
	for _, tt := range []struct {
		name   string
		in     string
		events int  // read before the error
		eof    bool // the error is a clean io.EOF
	}{
		{"snapshot and synced", revoked + synced, 2, true},
		{"comments and blank lines", ": ping\n\n\n" + revoked + ": ping\n\n" + synced, 2, true},
		{"CRLF", strings.ReplaceAll(revoked, "\n", "\r\n"), 1, true},
		{"id and retry ignored", "retry: 1000\n\nid: 7\n" + revoked, 1, true},
		{"no space after colon", "event:revoked\ndata:{\"sid\":\"" + testSID + "\",\"exp\":1}\n\n", 1, true},

		{"bare CR", strings.ReplaceAll(revoked, "\n", "\r"), 0, false},
		{"CR inside a line", "event: rev\roked\n", 0, false},
		{"NUL", "event: revoked\x00\n", 0, false},
		{"truncated event", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1}\n", 0, false},
		{"truncated line", "event: revok", 0, false},
		{"unknown field", "evnt: revoked\n", 0, false},
		{"unknown event", "event: message\ndata: {}\n\n", 0, false},
		{"no event", "data: {}\n\n", 0, false},
		{"no data", "event: synced\n\n", 0, false},
		{"two data lines", "event: revoked\ndata: {\ndata: }\n\n", 0, false},
		{"two event lines", "event: revoked\nevent: synced\ndata: {\"count\":1}\n\n", 0, false},
		{"uppercase sid", strings.Replace(revoked, "abcdef", "ABCDEF", 1), 0, false},
		{"short sid", strings.Replace(revoked, "0123", "012", 1), 0, false},
		{"spaces in JSON", "event: revoked\ndata: {\"sid\": \"" + testSID + "\",\"exp\":1}\n\n", 0, false},
		{"member order", "event: revoked\ndata: {\"exp\":1,\"sid\":\"" + testSID + "\"}\n\n", 0, false},
		{"extra member", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1,\"x\":1}\n\n", 0, false},
		{"negative exp", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":-1}\n\n", 0, false},
		{"float exp", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1.0}\n\n", 0, false},
		{"leading zero", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":01}\n\n", 0, false},
		{"huge exp", "event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1234567890123456}\n\n", 0, false},
		{"escaped sid", "event: revoked\ndata: {\"sid\":\"\\u0030123456789abcdef0123456789abcde\",\"exp\":1}\n\n", 0, false},
		{"long line", ": " + strings.Repeat("x", maxSSELine) + "\n" + revoked, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := readAll(tt.in)
			if len(evs) != tt.events {
				t.Errorf("read %d events (%+v), want %d", len(evs), evs, tt.events)
			}
			if (err == io.EOF) != tt.eof {
				t.Errorf("ended with %v, want EOF %v", err, tt.eof)
			}
			if !tt.eof && err != io.ErrUnexpectedEOF && !errors.Is(err, errSSE) {
				t.Errorf("error %v is neither a malformed stream nor a truncated one", err)
			}
		})
	}
	evs, _ := readAll(revoked + synced)
	if evs[0].sid != testSID || evs[0].exp != 1900000000 || evs[0].synced || !evs[1].synced || evs[1].exp != 1 {
		t.Errorf("events = %+v", evs)
	}
}

// A line of exactly the bound is read; one byte more is not.
func TestSSELineBound(t *testing.T) {
	ok := ":" + strings.Repeat("x", maxSSELine-1) + "\n"
	if _, err := readAll(ok); err != io.EOF {
		t.Errorf("line of %d bytes: %v", maxSSELine, err)
	}
	if _, err := readAll(":" + strings.Repeat("x", maxSSELine) + "\n"); !errors.Is(err, errSSE) {
		t.Errorf("line of %d bytes: %v", maxSSELine+1, err)
	}
	if _, err := readAll(":" + strings.Repeat("x", maxSSELine-1) + "\r\n"); err != io.EOF {
		t.Errorf("line of %d bytes + CRLF: %v", maxSSELine, err)
	}
}

// referenceSSE is the event stream interpretation of the HTML standard
// ("Server-sent events", the event stream parsing section), without its
// id and retry bookkeeping: what a browser's EventSource would dispatch.
func referenceSSE(in []byte) (types, data []string) {
	in = bytes.TrimPrefix(in, []byte("\xef\xbb\xbf"))
	var typ string
	var buf strings.Builder
	for len(in) > 0 {
		i := bytes.IndexAny(in, "\r\n")
		if i < 0 {
			break // an incomplete line at the end is never processed
		}
		line := string(in[:i])
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			in = in[i+2:]
		} else {
			in = in[i+1:]
		}
		if line == "" {
			if buf.Len() > 0 {
				d := strings.TrimSuffix(buf.String(), "\n")
				if typ == "" {
					typ = "message"
				}
				types, data = append(types, typ), append(data, d)
			}
			typ = ""
			buf.Reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			buf.WriteString(value + "\n")
		}
	}
	return types, data
}

// FuzzSSEReader is a differential against the standard's reading: every
// event the strict reader accepts, a browser would dispatch too, with the
// same type and data, in the same order, and the data is the one spelling
// sessiongate writes.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"event: revoked\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1900000000}\n\nevent: synced\ndata: {\"count\":1}\n\n",
		": ping\n\n",
		"event: revoked\r\ndata: {\"sid\":\"" + testSID + "\",\"exp\":1}\r\n\r\n",
		"event: revoked\rdata: x\r\r",
		"event:synced\ndata:{\"count\":0}\n\n",
		"data: a\ndata: b\n\n",
		"\xef\xbb\xbfevent: synced\ndata: {\"count\":0}\n\n",
		"retry: 10\nid: 1\nevent: synced\ndata: {\"count\":0}\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, _ := readAll(string(in))
		types, data := referenceSSE(in)
		if len(evs) > len(types) {
			t.Fatalf("accepted %d events, the standard reads %d", len(evs), len(types))
		}
		for i, ev := range evs {
			var wantType, wantData string
			if ev.synced {
				wantType, wantData = "synced", `{"count":`+strconv.FormatInt(ev.exp, 10)+`}`
			} else {
				wantType, wantData = "revoked", `{"sid":"`+ev.sid+`","exp":`+strconv.FormatInt(ev.exp, 10)+`}`
			}
			if types[i] != wantType || data[i] != wantData {
				t.Fatalf("event %d: read %s %q, the standard reads %s %q", i, wantType, wantData, types[i], data[i])
			}
		}
	})
}
