// Package redistest starts real redis-server processes for tests: on a free
// loopback port, without persistence, stopped by PID when the test ends.
// Tests that need Redis fail, never skip, when redis-server is missing: a
// skipped store test would hide exactly the behaviour it exists to check.
package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server (or redis-server --sentinel).
type Server struct {
	t    testing.TB
	Addr string // host:port
	dir  string
	args []string
	cmd  *exec.Cmd
	// ready reports whether the process answers; PING over plain TCP
	// unless the server speaks only TLS.
	ready func() error
	tls   *tls.Config // for Client, when the server speaks only TLS

	mu       sync.Mutex
	client   *redis.Client
	sentinel *redis.SentinelClient
}

// URL returns a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Binary returns the path of redis-server or fails the test saying how to
// install it.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("REDIS_SERVER"); p != "" {
		return p
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH: install it (Debian: apt-get install redis-server; `make test` does this when run as root) or set REDIS_SERVER")
	}
	return p
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
//
// It is taken below the kernel's ephemeral range: a port from that range
// (what listening on :0 gives) can be handed, between this check and
// redis-server's bind, to any outgoing connection on the machine as its
// source port, and a busy test run makes thousands of those. Below the
// range only another listener can take it.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := 10000, ephemeralLow()-1
	for range 200 {
		p := lo + rand.IntN(hi-lo+1)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux
// default 32768).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 10100 {
				return n
			}
		}
	}
	return 32768
}

// Start runs a fresh redis-server for the test; extra are additional
// redis-server arguments (e.g. "--maxmemory", "1mb").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	port := FreePort(t)
	return startOn(t, port, t.TempDir(), nil, extra...)
}

// startOn starts redis-server on port with its files in dir. Later
// arguments override earlier ones, so extra can change the defaults
// (e.g. "--appendonly", "yes").
func startOn(t testing.TB, port int, dir string, ready func() error, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, ready: ready}
	s.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
	}, extra...)
	s.start(Binary(t))
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	if err := s.waitReady(10 * time.Second); err != nil {
		s.Stop()
		s.t.Fatalf("redis-server on %s: %v\n%s", s.Addr, err, s.LogTail())
	}
}

// waitReady polls PING until Redis answers PONG.
func (s *Server) waitReady(limit time.Duration) error {
	ready := s.ready
	if ready == nil {
		ready = func() error { return pingRaw(s.Addr) }
	}
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", limit, err)
}

// Running reports whether the process is up (it may be paused).
func (s *Server) Running() bool { return s.cmd != nil }

// Dir is the server's working directory (data files, log).
func (s *Server) Dir() string { return s.dir }

func pingRaw(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	return pingConn(c)
}

func pingConn(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	// NOAUTH is an answer too: the server is up and only wants a password.
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Pause stops the process with SIGSTOP: connections stay open, nothing
// answers. It is the "stalled Redis" case.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused process.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		s.t.Fatalf("redis-server on %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal redis-server: %v", err)
	}
}

// Stop kills the process and waits for it. Safe to call twice.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process must be able to die
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	s.cmd = nil
}

// Restart starts the server again on the same port and directory: with an
// empty dataset, unless it was started with persistence (e.g. "--appendonly",
// "yes"), in which case it reloads what it had written.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start(Binary(s.t))
}

// LogTail returns the last lines of the server's log, for failure messages.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// Eventually polls cond until it is true or limit passes.
func Eventually(ctx context.Context, limit time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}
