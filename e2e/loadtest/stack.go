package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

const readyTimeout = 30 * time.Second

// stack is everything the load test runs, each a separate process started
// and stopped through e2e/harness.
type stack struct {
	dir                                    string
	bin                                    harness.Binaries
	redis, sessiongate, noop, upstream, ev *harness.Process
	// sessiongateNoMD is sessiongate with envoy.dynamic_metadata: false,
	// behind its own listener, for the answer part.
	sessiongateNoMD *harness.Process
	rdb             *redis.Client
	// The scale comparison's large point: a second sessiongate, identical
	// but for its Redis database (1), which holds the large keyspace, so
	// the small and the large point can be measured alternately, in rounds,
	// on the same Redis process.
	sessiongateBig *harness.Process
	rdbBig         *redis.Client

	redisAddr, sgGRPC, noopGRPC, sgBigGRPC string
	directURL, noopURL, sgURL, sgNoMDURL   string
	envoyAdmin                             string
	started                                []*harness.Process
}

// startStack builds sessiongate (harness.Build), then starts redis-server,
// sessiongate, the no-op server, the upstream and Envoy, each waited for by
// a readiness probe with a deadline.
func startStack(ctx context.Context) (*stack, error) {
	bin, err := harness.Build()
	if err != nil {
		return nil, fmt.Errorf("prerequisites: %w", err)
	}
	for _, tool := range []string{"wrk", "h2load"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found on PATH: run e2e/tools/ensure-loadgen.sh (Debian: apt-get install wrk nghttp2-client)", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &stack{bin: bin, dir: filepath.Join(bin.RunDir, "loadtest")}
	if err := os.RemoveAll(s.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	p, err := harness.FreePorts(17)
	if err != nil {
		return nil, err
	}
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	redisPort, sgGRPC, sgHTTP, sgAdmin, noopPort, upPort, admin, direct, noopL, sgL :=
		p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
	s.redisAddr, s.sgGRPC, s.noopGRPC, s.sgBigGRPC = addr(redisPort), addr(sgGRPC), addr(noopPort), addr(p[10])
	s.directURL = "http://" + addr(direct) + "/api/items?page=2"
	s.noopURL = "http://" + addr(noopL) + "/api/items?page=2"
	s.sgURL = "http://" + addr(sgL) + "/api/items?page=2"
	s.sgNoMDURL = "http://" + addr(p[13]) + "/api/items?page=2"
	s.envoyAdmin = addr(admin)

	// Redis as a session store is deployed without per-write fsync; the
	// e2e harness's "appendfsync always" serves its crash test, not this.
	s.redis = s.process("redis", bin.Redis, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes")
	if err := s.start(s.redis, harness.RedisProbe(s.redisAddr)); err != nil {
		return s, err
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redisAddr, PoolSize: 8})
	s.rdbBig = redis.NewClient(&redis.Options{Addr: s.redisAddr, DB: 1, PoolSize: 8})

	cfgPath, err := s.sessiongateConfig("sessiongate", 0, addr(sgGRPC), addr(sgHTTP), addr(sgAdmin))
	if err != nil {
		return s, err
	}
	s.sessiongate = s.process("sessiongate", bin.Sessiongate, "serve", "--config", cfgPath)
	if err := s.start(s.sessiongate, harness.HTTPProbe("http://"+addr(sgHTTP)+"/readyz", 200)); err != nil {
		return s, err
	}
	bigCfg, err := s.sessiongateConfig("sessiongate-big", 1, s.sgBigGRPC, addr(p[11]), addr(p[12]))
	if err != nil {
		return s, err
	}
	s.sessiongateBig = s.process("sessiongate-big", bin.Sessiongate, "serve", "--config", bigCfg)
	if err := s.start(s.sessiongateBig, harness.HTTPProbe("http://"+addr(p[11])+"/readyz", 200)); err != nil {
		return s, err
	}
	noMDCfg, _, err := s.sessiongateConfigFor("sessiongate-nomd", "redis://"+s.redisAddr+"/0", addr(p[14]), addr(p[15]), addr(p[16]), true,
		func(c *harness.SGConfig) { c.Envoy = &harness.SGEnvoy{DynamicMetadata: false} })
	if err != nil {
		return s, err
	}
	s.sessiongateNoMD = s.process("sessiongate-nomd", bin.Sessiongate, "serve", "--config", noMDCfg)
	if err := s.start(s.sessiongateNoMD, harness.HTTPProbe("http://"+addr(p[15])+"/readyz", 200)); err != nil {
		return s, err
	}
	s.noop = s.process("noop", self, "noop", "-listen", s.noopGRPC)
	if err := s.start(s.noop, tcpProbe(s.noopGRPC)); err != nil {
		return s, err
	}
	s.upstream = s.process("upstream", self, "upstream", "-listen", addr(upPort))
	if err := s.start(s.upstream, harness.HTTPProbe("http://"+addr(upPort)+"/", 200)); err != nil {
		return s, err
	}
	envoyCfg := filepath.Join(s.dir, "envoy.yaml")
	vars := map[string]string{
		"ADMIN_PORT": strconv.Itoa(admin), "DIRECT_PORT": strconv.Itoa(direct),
		"NOOP_PORT": strconv.Itoa(noopL), "SG_PORT": strconv.Itoa(sgL),
		"UPSTREAM_PORT": strconv.Itoa(upPort), "NOOP_GRPC_PORT": strconv.Itoa(noopPort),
		"SG_GRPC_PORT": strconv.Itoa(sgGRPC),
		"SGNM_PORT":    strconv.Itoa(p[13]), "SGNM_GRPC_PORT": strconv.Itoa(p[14]),
	}
	if err := harness.RenderEnvoyConfig(filepath.Join(bin.E2EDir, "loadtest", "envoy.yaml.tmpl"), envoyCfg, vars); err != nil {
		return s, err
	}
	s.ev = s.process("envoy", bin.Envoy, "-c", envoyCfg, "--disable-hot-restart", "--concurrency", "2",
		"--log-level", "warning", "--drain-time-s", "1")
	if err := s.start(s.ev, harness.HTTPProbe("http://"+addr(admin)+"/ready", 200)); err != nil {
		return s, err
	}
	return s, ctx.Err()
}

func (s *stack) process(name, path string, args ...string) *harness.Process {
	return &harness.Process{Name: name, LogPath: filepath.Join(s.dir, name+".log"), Path: path, Args: args, Dir: s.dir}
}

func (s *stack) start(p *harness.Process, probe func(context.Context) error) error {
	if err := p.Start(); err != nil {
		return err
	}
	s.started = append(s.started, p)
	if err := p.WaitReady(readyTimeout, probe); err != nil {
		return fmt.Errorf("%w\n---- %s ----\n%s", err, p.LogPath, p.Tail(30))
	}
	return nil
}

// stop stops every process it started, last first.
func (s *stack) stop() {
	for _, c := range []*redis.Client{s.rdb, s.rdbBig} {
		if c != nil {
			c.Close()
		}
	}
	for i := len(s.started) - 1; i >= 0; i-- {
		if err := s.started[i].Stop(5 * time.Second); err != nil {
			logf("stopping %s: %v", s.started[i].Name, err)
		}
	}
}

// sessiongateConfig writes a production-like configuration: real Redis
// (database db), real key file, the default token TTL and Redis timeout,
// info logs. name names the files.
func (s *stack) sessiongateConfig(name string, db int, grpcAddr, httpAddr, adminAddr string) (string, error) {
	path, _, err := s.sessiongateConfigFor(name, "redis://"+s.redisAddr+"/"+strconv.Itoa(db), grpcAddr, httpAddr, adminAddr, true)
	return path, err
}

// sessiongateConfigFor is sessiongateConfig for any Redis URL, with the
// session cache on or off, and any other change mutate makes; it also
// returns the admin token.
func (s *stack) sessiongateConfigFor(name, redisURL string, grpcAddr, httpAddr, adminAddr string, cache bool, mutate ...func(*harness.SGConfig)) (string, string, error) {
	key := filepath.Join(s.dir, name+"-signing-key.pem")
	out, err := exec.Command(s.bin.Sessiongate, "keygen", "--alg", "ES256").Output()
	if err != nil {
		return "", "", fmt.Errorf("sessiongate keygen: %w", err)
	}
	if err := os.WriteFile(key, out, 0o600); err != nil {
		return "", "", err
	}
	tokenFile := filepath.Join(s.dir, name+"-admin-token")
	token := randomRef() + randomRef()
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return "", "", err
	}
	var c harness.SGConfig
	c.GRPCAddr, c.HTTPAddr, c.AdminAddr, c.AdminTokenFile = grpcAddr, httpAddr, adminAddr, tokenFile
	c.LogLevel = "info"
	c.Redis.URL = redisURL
	if !cache {
		c.Cache = &harness.SGCache{Enabled: false}
	}
	c.Redis.Timeout = harness.RedisTimeoutStr
	c.Cookie.Name, c.Cookie.SameSite = harness.CookieName, "Lax"
	c.Session.IdleTimeout, c.Session.AbsoluteTimeout, c.Session.OnLimit = "30m", "12h", "evict_oldest"
	c.Token.Header, c.Token.Issuer, c.Token.Audience, c.Token.TTL = harness.TokenHeader, harness.Issuer, harness.Audience, "5m"
	c.Token.SigningKeys = []string{key}
	c.Logout.Path = harness.LogoutPath
	c.Routes = []harness.SGRoute{
		{PathPrefix: "/public/", Access: "public"},
		{PathPrefix: "/deny/", Access: "deny"},
		{PathPrefix: "/admin/", Access: "authenticated", Roles: []string{"admin"}},
	}
	for _, m := range mutate {
		m(&c)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(s.dir, name+".yaml")
	return path, token, os.WriteFile(path, b, 0o600)
}

func tcpProbe(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}
