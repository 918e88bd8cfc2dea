package harness

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

// Readiness deadlines. Generous against a loaded 2-core CI machine, yet
// bounded so that a hung start fails the test instead of the CI run.
const (
	readyTimeout = 20 * time.Second
	stopGrace    = 5 * time.Second
)

// Options change the stack's sessiongate configuration for one test.
type Options struct {
	// Configure, if set, edits the sessiongate configuration before the
	// first start.
	Configure func(*SGConfig)
	// RedisArgs are appended to redis-server's command line (a later
	// directive wins over the harness's own).
	RedisArgs []string
	// UpstreamArgs are appended to the upstream's command line (a later
	// flag wins over the harness's own).
	UpstreamArgs []string
	// UpstreamFollowsRevocations makes the upstream follow sessiongate's
	// revocation feed (-revocations-url): it then refuses tokens of
	// revoked sessions before their exp, and every token with a sid while
	// the feed is down.
	UpstreamFollowsRevocations bool
	// Ports, if set, are used instead of free ones (make demo: fixed ports
	// a person can type).
	Ports *Ports
	// Dir, if set, holds the logs, keys and configs instead of
	// e2e/.run/<test name>. It is emptied first.
	Dir string
}

// TB is the part of testing.TB the harness uses. A *testing.T is one; so is
// the demo command's runner, which keeps the stack up outside a test.
type TB interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
	Name() string
}

// Stack is one running end-to-end stack, owned by one test.
type Stack struct {
	t     TB
	Bin   Binaries
	Dir   string
	Ports Ports

	Redis, Sessiongate, LoginSvc, Upstream, Envoy *Process

	AdminToken string
	// Config is what sessiongate currently runs with.
	Config        SGConfig
	configPath    string
	AccessLogPath string

	client *http.Client
}

// Start builds (once) and starts the whole stack for t. Everything it starts
// is stopped in t.Cleanup; on failure the process logs' tails are printed.
func Start(t TB, opts Options) *Stack {
	t.Helper()
	bin, err := Build()
	if err != nil {
		t.Fatalf("e2e prerequisites: %v", err)
	}
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Join(bin.RunDir, sanitize(t.Name()))
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var ports Ports
	if opts.Ports != nil {
		ports = *opts.Ports
	} else if ports, err = newPorts(); err != nil {
		t.Fatal(err)
	}
	s := &Stack{
		t: t, Bin: bin, Dir: dir, Ports: ports,
		AccessLogPath: filepath.Join(dir, "envoy-access.log"),
		client: &http.Client{
			Timeout: 5 * time.Second,
			// Tests look at redirects (login, logout) themselves.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport:     &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 5 * time.Second},
		},
	}
	// Registered first so it runs last: logs are complete by then.
	t.Cleanup(func() {
		s.client.CloseIdleConnections()
		if t.Failed() {
			s.dumpLogs()
		}
	})

	s.AdminToken = randomToken()
	if err := os.WriteFile(filepath.Join(dir, "admin-token"), []byte(s.AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := s.NewKey("signing-key-1")
	s.Config = defaultSGConfig(ports, dir, key)
	if opts.Configure != nil {
		opts.Configure(&s.Config)
	}
	s.configPath = filepath.Join(dir, "sessiongate.yaml")
	if err := writeYAML(s.configPath, s.Config); err != nil {
		t.Fatal(err)
	}

	s.Redis = s.process("redis", bin.Redis, append([]string{
		"--port", strconv.Itoa(ports.Redis), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "",
		// Sessions must survive `kill -9` of Redis for the "killed, then
		// restarted" scenario: fsync every write to the AOF.
		"--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--protected-mode", "yes"}, opts.RedisArgs...)...)
	s.Sessiongate = s.process("sessiongate", bin.Sessiongate, "serve", "--config", s.configPath)
	s.LoginSvc = s.process("login", bin.Login,
		"-listen", fmt.Sprintf("127.0.0.1:%d", ports.Login),
		"-admin-url", s.AdminURL(),
		"-admin-token-file", filepath.Join(dir, "admin-token"),
		"-users", filepath.Join(bin.E2EDir, "fixtures", "users.json"))
	s.Upstream = s.process("upstream", bin.Upstream, append([]string{
		"-listen", fmt.Sprintf("127.0.0.1:%d", ports.Upstream),
		"-jwks-url", s.JWKSURL(),
		"-issuer", Issuer, "-audience", Audience,
		"-audience-prefix", "/orders/=" + OrdersAudience,
		"-public-prefix", "/public/,/docs/",
		"-jwks-refresh", UpstreamJWKSRefresh.String(),
		"-jwks-unknown-kid-every", "200ms"}, upstreamArgs(s, opts)...)...)
	envoyCfg := filepath.Join(dir, "envoy.yaml")
	if err := RenderEnvoyConfig(filepath.Join(bin.RepoRoot, "envoy", "envoy.yaml.tmpl"), envoyCfg, EnvoyVars(ports, s.AccessLogPath)); err != nil {
		t.Fatal(err)
	}
	s.Envoy = s.process("envoy", bin.Envoy, "-c", envoyCfg,
		// Several Envoys (parallel test binaries) must not fight over the
		// hot-restart shared memory of base id 0.
		"--disable-hot-restart",
		"--concurrency", "2",
		// Warnings and errors only: the info-level start-up banner would
		// push everything useful out of the log tail printed on failure.
		"--log-level", "warning",
		"--drain-time-s", "1",
		// Access log lines reach the file within 100ms instead of the
		// default 10s, so tests can read them.
		"--file-flush-interval-msec", "100")

	s.mustStart(s.Redis, RedisProbe(fmt.Sprintf("127.0.0.1:%d", ports.Redis)))
	s.mustStart(s.Sessiongate, s.sessiongateProbe())
	s.mustStart(s.LoginSvc, HTTPProbe(fmt.Sprintf("http://127.0.0.1:%d/healthz", ports.Login), 200))
	s.mustStart(s.Upstream, HTTPProbe(fmt.Sprintf("http://127.0.0.1:%d/healthz", ports.Upstream), 200))
	// /ready is LIVE only after the clusters' first health checks and
	// jwt_authn's first JWKS fetch (async_fetch, fast_listener: false).
	s.mustStart(s.Envoy, HTTPProbe(fmt.Sprintf("http://127.0.0.1:%d/ready", ports.EnvoyAdmn), 200))
	return s
}

func (s *Stack) process(name, path string, args ...string) *Process {
	p := &Process{Name: name, LogPath: filepath.Join(s.Dir, name+".log"), Path: path, Args: args, Dir: s.Dir}
	s.t.Cleanup(func() {
		if err := p.Stop(stopGrace); err != nil {
			s.t.Errorf("stopping %s: %v", name, err)
		}
	})
	return p
}

func (s *Stack) mustStart(p *Process, probe func(context.Context) error) {
	s.t.Helper()
	if err := p.Start(); err != nil {
		s.t.Fatal(err)
	}
	if err := p.WaitReady(readyTimeout, probe); err != nil {
		s.t.Fatal(err)
	}
}

// sessiongateProbe waits for /readyz (store reachable) and for the admin
// API, which the login service needs.
func (s *Stack) sessiongateProbe() func(context.Context) error {
	ready := HTTPProbe(fmt.Sprintf("http://127.0.0.1:%d/readyz", s.Ports.SGHTTP), 200)
	return func(ctx context.Context) error {
		if err := ready(ctx); err != nil {
			return err
		}
		_, err := s.Admin().ListSessions(ctx, "harness-probe")
		return err
	}
}

// StartSessiongate starts sessiongate again (after a kill) with the current
// configuration and waits until it is ready.
func (s *Stack) StartSessiongate() {
	s.t.Helper()
	s.mustStart(s.Sessiongate, s.sessiongateProbe())
}

// RestartSessiongate stops sessiongate gracefully, applies change to its
// configuration, and starts it again.
func (s *Stack) RestartSessiongate(change func(*SGConfig)) {
	s.t.Helper()
	if err := s.Sessiongate.Stop(stopGrace); err != nil {
		s.t.Fatal(err)
	}
	if change != nil {
		change(&s.Config)
	}
	if err := writeYAML(s.configPath, s.Config); err != nil {
		s.t.Fatal(err)
	}
	s.StartSessiongate()
}

// ReloadSessiongate applies change to the configuration, rewrites the
// config file and sends sessiongate SIGHUP, without a restart. The reload is
// asynchronous: callers wait for its effect (the JWKS, a token's kid).
func (s *Stack) ReloadSessiongate(change func(*SGConfig)) {
	s.t.Helper()
	if change != nil {
		change(&s.Config)
	}
	if err := writeYAML(s.configPath, s.Config); err != nil {
		s.t.Fatal(err)
	}
	if err := s.Sessiongate.Signal(syscall.SIGHUP); err != nil {
		s.t.Fatal(err)
	}
}

// StartRedis starts redis-server again (same port, same AOF) and waits for
// PONG.
func (s *Stack) StartRedis() {
	s.t.Helper()
	s.mustStart(s.Redis, RedisProbe(fmt.Sprintf("127.0.0.1:%d", s.Ports.Redis)))
}

// NewKey writes a fresh ES256 key made by `sessiongate keygen` and returns
// its path.
func (s *Stack) NewKey(name string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr strings.Builder
	cmd := exec.CommandContext(ctx, s.Bin.Sessiongate, "keygen", "--alg", "ES256")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("sessiongate keygen: %v: %s", err, stderr.String())
	}
	path := filepath.Join(s.Dir, name+".pem")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// EdgeURL is the URL of path on Envoy's client-facing listener.
func (s *Stack) EdgeURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Ports.EnvoyEdge, path)
}

// HopURL is the URL of path on Envoy's internal jwt_authn listener, the one
// in front of the upstream.
func (s *Stack) HopURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Ports.EnvoyHop, path)
}

// upstreamArgs are the upstream's optional flags.
func upstreamArgs(s *Stack, opts Options) []string {
	var out []string
	if opts.UpstreamFollowsRevocations {
		out = append(out, "-revocations-url", s.RevocationsURL())
	}
	return append(out, opts.UpstreamArgs...)
}

// RevocationsURL is sessiongate's revocation feed.
func (s *Stack) RevocationsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/v1/revocations", s.Ports.SGHTTP)
}

// UpstreamURL is path on the upstream itself, bypassing Envoy: what a
// token replayed inside the network reaches.
func (s *Stack) UpstreamURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.Ports.Upstream, path)
}

// JWKSURL is sessiongate's JWKS endpoint.
func (s *Stack) JWKSURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/.well-known/jwks.json", s.Ports.SGHTTP)
}

// AdminURL is the base URL of sessiongate's admin API.
func (s *Stack) AdminURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", s.Ports.SGAdmin)
}

// Admin returns an admin API client (the same package the login service
// uses).
func (s *Stack) Admin() *admin.Client {
	return admin.NewClient(s.AdminURL(), s.AdminToken, &http.Client{Timeout: 5 * time.Second})
}

func (s *Stack) dumpLogs() {
	for _, p := range []*Process{s.Redis, s.Sessiongate, s.LoginSvc, s.Upstream, s.Envoy} {
		if p == nil {
			continue
		}
		s.t.Logf("---- %s: last 40 lines of %s ----\n%s", p.Name, p.LogPath, p.Tail(40))
	}
	if b, err := os.ReadFile(s.AccessLogPath); err == nil {
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		s.t.Logf("---- envoy access log (last %d lines) ----\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

// AccessLog returns the entries of Envoy's JSON access log so far.
func (s *Stack) AccessLog() []map[string]any {
	s.t.Helper()
	b, err := os.ReadFile(s.AccessLogPath)
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			s.t.Fatalf("access log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func sanitize(name string) string { return unsafeChars.ReplaceAllString(name, "_") }

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DemoReadyLine is the last line `make demo` prints once every process is
// ready; its test waits for it.
const DemoReadyLine = "demo: ready"
