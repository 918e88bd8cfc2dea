package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// Bounds of `make demo` in TestMakeDemo: the first start builds four
// binaries on a shared 2-core machine; the stop is Ctrl-C to ready-to-exit.
const (
	demoStartBound = 4 * time.Minute
	demoStopBound  = 20 * time.Second
)

// TestMakeDemo runs `make demo` as a person would (on free ports instead of
// the fixed defaults), waits for its ready line, runs the three curl lines
// it prints (login, call, logout) through bash, checks that the logout
// really ended the session, then sends Ctrl-C (SIGINT to the process group,
// as a terminal does) and expects a clean exit within demoStopBound with
// every port released.
func TestMakeDemo(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"make", "bash", "curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("TestMakeDemo needs %s on PATH (Debian: apt-get install %s)", tool, tool)
		}
	}
	free, err := harness.FreePorts(9)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"edge-port", "login-port", "upstream-port", "hop-port", "envoy-admin-port", "grpc-port", "http-port", "admin-port", "redis-port"}
	var flags []string
	for i, n := range names {
		flags = append(flags, fmt.Sprintf("-%s %d", n, free[i]))
	}
	flags = append(flags, "-dir "+t.TempDir())
	edge := fmt.Sprintf("http://127.0.0.1:%d", free[0])

	cmd := exec.Command("make", "-s", "--no-print-directory", "demo", "DEMO_FLAGS="+strings.Join(flags, " "))
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})

	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	var printed []string
	deadline := time.After(demoStartBound)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make demo ended before it was ready:\n%s\nstderr:\n%s", strings.Join(printed, "\n"), stderr.String())
			}
			printed = append(printed, l)
			if l == harness.DemoReadyLine {
				break wait
			}
		case <-deadline:
			t.Fatalf("make demo not ready within %s:\n%s\nstderr:\n%s", demoStartBound, strings.Join(printed, "\n"), stderr.String())
		}
	}
	go func() { // keep the pipe drained
		for range lines {
		}
	}()
	text := strings.Join(printed, "\n")
	var pidLine string
	for _, l := range printed {
		if rest, ok := strings.CutPrefix(l, "sessiongate demo is up ("); ok {
			pidLine = strings.TrimSuffix(rest, ").")
		}
	}
	if pidLine == "" {
		t.Fatalf("the demo does not print its PIDs:\n%s", text)
	}
	if !strings.Contains(text, edge+"/api/me") {
		t.Errorf("the demo does not say to open %s/api/me:\n%s", edge, text)
	}

	// The three curl lines, exactly as printed.
	var script []string
	for _, l := range printed {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "SID=") || strings.HasPrefix(l, "curl ") {
			script = append(script, l)
		}
	}
	if len(script) != 3 {
		t.Fatalf("want 3 curl lines (login, call, logout), found %d:\n%s", len(script), text)
	}
	const sep = "\n--8<--\n"
	sh := exec.Command("bash", "-euo", "pipefail", "-c",
		script[0]+"\necho \"SID=$SID\"\nprintf '"+strings.ReplaceAll(sep, "\n", "\\n")+"'\n"+
			script[1]+"\nprintf '"+strings.ReplaceAll(sep, "\n", "\\n")+"'\n"+script[2])
	shOut, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed curl lines failed: %v\n%s", err, shOut)
	}
	res := strings.Split(strings.TrimSpace(string(shOut)), strings.TrimSpace(sep))
	if len(res) != 3 {
		t.Fatalf("curl output: want 3 parts (session, call, logout status), got:\n%s", shOut)
	}
	for i := range res {
		res[i] = strings.TrimSpace(res[i])
	}
	sid := strings.TrimPrefix(res[0], "SID=")
	if len(sid) != 43 {
		t.Fatalf("login: no session cookie (got %q)", res[0])
	}
	var me struct {
		Verified bool `json:"verified"`
		Token    struct {
			Claims map[string]any `json:"claims"`
		} `json:"token"`
	}
	if err := json.Unmarshal([]byte(res[1]), &me); err != nil || !me.Verified || me.Token.Claims["sub"] != "alice" {
		t.Fatalf("call: want the upstream's verified claims for alice, got %s (%v)", res[1], err)
	}
	if res[2] != "302" && res[2] != "204" {
		t.Fatalf("logout: status %s", res[2])
	}
	// The session is gone: the same cookie is now refused.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, edge+"/api/me", nil)
	req.Header.Set("Cookie", harness.CookieName+"="+sid)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: /api/me answered %d, want 401", resp.StatusCode)
	}

	// Ctrl-C.
	start := time.Now()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		// make itself dies of the SIGINT after its child (the demo) has
		// exited, as it does in a terminal; anything else is a failure.
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
			ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			t.Fatalf("make demo exited with %v after Ctrl-C; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(demoStopBound):
		t.Fatalf("make demo still running %s after Ctrl-C", demoStopBound)
	}
	t.Logf("make demo stopped %s after Ctrl-C", time.Since(start).Round(time.Millisecond))
	for _, f := range strings.Split(pidLine, ", ") {
		var name string
		var pid int
		if _, err := fmt.Sscanf(f, "%s %d", &name, &pid); err != nil || pid <= 0 {
			t.Errorf("cannot read a PID from %q", f)
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s (pid %d) still runs after the demo stopped", name, pid)
		}
	}
	for i, p := range free {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Errorf("%s %d still taken after the demo stopped: %v", names[i], p, err)
			continue
		}
		l.Close()
	}
}
