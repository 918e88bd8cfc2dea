package session

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestGuardClear: with the reader blocked in Read, a Check may use an entry
// unless the unread bytes name its ref or could be a flush; with the reader
// not in Read it may use none.
func TestGuardClear(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	g := newGuardConn(dialed)
	defer g.Close()
	refA, refB := strings.Repeat("a", RefLen), strings.Repeat("b", RefLen)

	if g.clear(refA) {
		t.Fatal("clear while the reader is not in Read")
	}
	// The reader parked in Read (as the invalidation reader is between
	// messages): simulated, since a real Read returns as soon as data is
	// there, and the window tested is the one before the reader runs.
	g.reads.Add(1)
	if !g.clear(refA) || !g.clear(refB) {
		t.Fatal("not clear with the reader in Read on an empty socket")
	}
	msg := "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$37\r\nsg:s:" + refA + "\r\n"
	if _, err := srv.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !g.clear(refA) })
	if !g.clear(refB) {
		t.Error("an invalidation of another ref pending: not clear")
	}
	// The reader's read takes it out of the socket, and its thread stops
	// before accounting for it (read beneath the guard): those bytes are
	// nowhere a Check can look, so nothing is clear.
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(g.Conn, buf); err != nil {
		t.Fatal(err)
	}
	if g.clear(refA) || g.clear(refB) {
		t.Error("clear while received bytes were neither in the socket nor accounted for")
	}
	g.consumed.Add(uint64(len(msg))) // accounted, and applied: back in Read
	if !g.clear(refA) {
		t.Error("not clear once the invalidation was read")
	}
	flush := "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*-1\r\n"
	if _, err := srv.Write([]byte(flush)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !g.clear(refB) }) // a flush names no ref and drops all
	if _, err := io.ReadFull(g.Conn, make([]byte, len(flush))); err != nil {
		t.Fatal(err)
	}
	g.consumed.Add(uint64(len(flush)))
	if !g.clear(refB) {
		t.Error("not clear once the flush was read")
	}
	g.reads.Add(1) // out of Read: processing
	if g.clear(refB) {
		t.Error("clear while the reader is not in Read")
	}
	g.reads.Add(1)
	g.Close()
	if g.clear(refB) {
		t.Error("clear after Close")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition never held")
}
