package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one child process of the stack. Its stdout and stderr go to
// LogPath (appended across restarts, so a failed test shows what happened
// before and after).
type Process struct {
	Name    string
	LogPath string
	Path    string
	Args    []string
	Env     []string
	Dir     string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	stopped bool // SIGSTOPped
}

// Start launches the process. It is an error to start one that runs.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s: already running (pid %d)", p.Name, p.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "==== harness: starting %s %s\n", p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: a Ctrl-C of `go test` must not reach the
		// children before the harness stops them in order.
		Setpgid: true,
		// If the test binary dies without running its cleanups (a -timeout
		// panic, a SIGKILL), the kernel ends the children too: no Envoy or
		// Redis is left holding ports on the CI machine.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.stopped = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "==== harness: %s (pid %d) exited: %v\n", p.Name, cmd.Process.Pid, err)
		logf.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Process) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// PID returns the PID of the current run, 0 if never started.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process has been started and not exited.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exitedLocked()
}

// Exited returns a channel closed when the current run exits.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Signal sends sig to the process (by PID).
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return fmt.Errorf("%s: not running", p.Name)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(10 * time.Second)
}

// Stop ends the process gracefully (SIGTERM), escalating to SIGKILL after
// grace. A SIGSTOPped process is continued first, or it could never act on
// the SIGTERM. Stopping a process that is not running is a no-op.
func (p *Process) Stop(grace time.Duration) error {
	p.mu.Lock()
	if p.cmd == nil || p.exitedLocked() {
		p.mu.Unlock()
		return nil
	}
	proc, wasStopped := p.cmd.Process, p.stopped
	p.mu.Unlock()
	if wasStopped {
		_ = proc.Signal(syscall.SIGCONT)
	}
	_ = proc.Signal(syscall.SIGTERM)
	if err := p.wait(grace); err == nil {
		return nil
	}
	_ = proc.Signal(syscall.SIGKILL)
	return p.wait(10 * time.Second)
}

func (p *Process) wait(d time.Duration) error {
	select {
	case <-p.Exited():
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s: still running after %s", p.Name, d)
	}
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	// Logs are small (one test's worth); reading the end is enough.
	const max = 256 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(st.Size()-max, io.SeekStart)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// LogContains reports whether the process's log contains s.
func (p *Process) LogContains(s string) bool {
	b, err := os.ReadFile(p.LogPath)
	return err == nil && bytes.Contains(b, []byte(s))
}

// ErrExited is returned by waits when the process died while being waited
// for; retrying would only burn the deadline.
var ErrExited = errors.New("process exited")

// WaitReady polls probe until it returns nil, the process exits, or timeout
// passes. The poll interval is short and fixed: readiness is a condition, not
// a duration.
func (p *Process) WaitReady(timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exited := p.Exited()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s: %w before it was ready (last probe: %v)", p.Name, ErrExited, last)
		case <-ctx.Done():
			return fmt.Errorf("%s: not ready after %s: %v", p.Name, timeout, last)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// HTTPProbe succeeds when GET url answers wantStatus.
func HTTPProbe(url string, wantStatus int) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(body))
		}
		return nil
	}
}

// RedisProbe succeeds when the server at addr answers PING with PONG. It
// speaks RESP directly so the harness needs no Redis client.
func RedisProbe(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "+PONG\r\n" {
			return fmt.Errorf("PING: %q", line)
		}
		return nil
	}
}
