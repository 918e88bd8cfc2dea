package session

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// guardConn wraps a node's invalidation connection so that a Check can
// tell whether anything Redis sent on it is still unread or unapplied. An
// invalidation reaches this process before Redis answers the writer, but the
// reader goroutine may not have run yet: on a loaded machine, a Check that
// arrives right after a revocation returned elsewhere could otherwise be
// answered from a copy whose invalidation sits in the socket. So an entry is
// served only while every node's reader is blocked in Read and its socket
// holds nothing about that entry's key (clear); otherwise the Check reads
// Redis. Under load the reader is often parked with a heartbeat answer or
// another key's invalidation waiting in its socket; on a plain-text
// connection those bytes are peeked at (MSG_PEEK, nothing consumed) and an
// entry whose ref is not among them is still served. Over TLS they cannot
// be read, and any pending byte means a trip to Redis.
type guardConn struct {
	net.Conn
	// fd is the TCP socket's descriptor (beneath TLS), -1 if unknown. It
	// is read with ioctl directly, not through RawConn.Control, which would
	// cost two allocations per Check; closed guards against a reused
	// descriptor.
	fd     int
	tls    bool
	closed atomic.Bool
	// reads is odd while the reader is inside Read.
	reads atomic.Uint64
	// consumed counts the bytes Read has returned, recorded before reads
	// turns even. Compared with the kernel's count of bytes received, it
	// tells whether bytes have left the socket without being accounted for
	// yet: a Read returning whose thread the OS has not run since.
	consumed atomic.Uint64
}

func newGuardConn(cn net.Conn) *guardConn {
	g := &guardConn{Conn: cn, fd: -1}
	inner := cn
	if nc, ok := cn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		inner = nc.NetConn()
		g.tls = true
	}
	if sc, ok := inner.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			_ = raw.Control(func(fd uintptr) { g.fd = int(fd) })
		}
	}
	return g
}

func (g *guardConn) Read(b []byte) (int, error) {
	g.reads.Add(1)
	n, err := g.Conn.Read(b)
	g.consumed.Add(uint64(max(n, 0)))
	g.reads.Add(1)
	return n, err
}

// Close marks the guard closed before the descriptor is released.
func (g *guardConn) Close() error {
	g.closed.Store(true)
	return g.Conn.Close()
}

// peekBuf holds what a Check peeks at; more pending than this is treated
// as unknown.
type peekBuf [4096]byte

var peekBufs = sync.Pool{New: func() any { return new(peekBuf) }}

// clear reports whether the reader is waiting in Read and nothing received
// and not yet applied names ref (or could drop everything), with no Read
// returning and no Close in between. Anything else, or a socket it cannot
// inspect, is not clear. Waiting in Read means go-redis's buffer holds no
// complete message: it reads only when it needs more.
//
// On a plain-text link every byte the kernel received (TCP_INFO) is either
// accounted for by Read or still in the socket, where it is peeked at; a
// difference means a Read has taken bytes its thread has not yet accounted
// for (the OS descheduled it right after the read), and is not clear. Over
// TLS the kernel's bytes are ciphertext: the socket must be empty, and that
// last window (a thread descheduled between its read and its accounting)
// remains.
func (g *guardConn) clear(ref string) bool {
	s := g.reads.Load()
	if s&1 == 0 || g.fd < 0 || g.closed.Load() {
		return false
	}
	c := g.consumed.Load()
	var ok bool
	if g.tls {
		ok = socketEmpty(uintptr(g.fd))
	} else if recv, known := socketReceived(uintptr(g.fd)); known && recv >= c {
		switch pending := recv - c; {
		case pending == 0:
			ok = true
		case pending < uint64(len(peekBuf{})) && socketQueued(uintptr(g.fd)) == int(pending):
			b := peekBufs.Get().(*peekBuf)
			n := socketPeek(uintptr(g.fd), b[:pending])
			// A nil payload (a flush) reads "*-1" or "$-1"; a ref is 32
			// hex characters, found whole or the message is still in
			// flight.
			ok = n == int(pending) && !strings.Contains(unsafeString(b[:n]), ref) && !strings.Contains(unsafeString(b[:n]), "-1\r\n")
			peekBufs.Put(b)
		}
	}
	return ok && !g.closed.Load() && g.reads.Load() == s && g.consumed.Load() == c
}

// unsafeString views b as a string for a search that does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
