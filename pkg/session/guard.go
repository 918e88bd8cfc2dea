package session

import (
	"net"
	"sync/atomic"
	"syscall"
)

// guardConn wraps a node's invalidation connection so that a Check can
// tell whether anything Redis sent on it is still unread or unapplied. An
// invalidation reaches this process before Redis answers the writer, but the
// reader goroutine may not have run yet: on a loaded machine, a Check that
// arrives right after a revocation returned elsewhere could otherwise be
// answered from a copy whose invalidation sits in the socket. So an entry is
// served only while every node's reader is blocked in Read with nothing
// left in its socket (quiet); otherwise the Check reads Redis.
type guardConn struct {
	net.Conn
	// fd is the TCP socket's descriptor (beneath TLS), -1 if unknown. It
	// is read with ioctl directly, not through RawConn.Control, which would
	// cost two allocations per Check; closed guards against a reused
	// descriptor.
	fd     int
	closed atomic.Bool
	// reads is odd while the reader is inside Read.
	reads atomic.Uint64
}

func newGuardConn(cn net.Conn) *guardConn {
	g := &guardConn{Conn: cn, fd: -1}
	inner := cn
	if nc, ok := cn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		inner = nc.NetConn()
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
	g.reads.Add(1)
	return n, err
}

// Close marks the guard closed before the descriptor is released.
func (g *guardConn) Close() error {
	g.closed.Store(true)
	return g.Conn.Close()
}

// quiet reports whether the reader is waiting in Read and the socket holds
// no unread byte, with no Read returning and no Close in between. Anything
// else, or a socket it cannot inspect, is not quiet.
func (g *guardConn) quiet() bool {
	s := g.reads.Load()
	if s&1 == 0 || g.fd < 0 || g.closed.Load() {
		return false
	}
	empty := socketEmpty(uintptr(g.fd))
	return empty && !g.closed.Load() && g.reads.Load() == s
}
