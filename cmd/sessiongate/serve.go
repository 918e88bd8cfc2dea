package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/exchange"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/tracing"
)

// shutdownGrace bounds how long in-flight Checks and HTTP requests may take
// to finish after SIGTERM. Kubernetes' default grace period is 30 s.
const shutdownGrace = 20 * time.Second

// healthInterval is how often the store is probed for readiness.
const healthInterval = time.Second

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML config file")
	dev := fs.Bool("dev", false, "development mode: in-memory store, ephemeral key, open admin API on loopback")
	grpcAddr := fs.String("grpc-addr", "", "override grpc_addr")
	httpAddr := fs.String("http-addr", "", "override http_addr")
	adminAddr := fs.String("admin-addr", "", "override admin_addr")
	redisURL := fs.String("redis-url", "", "override redis.url")
	logLevel := fs.String("log-level", "", "override log_level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
	// Flags win over file and environment, but only when given. The same
	// overrides apply again to a config re-read on SIGHUP.
	overrides := func(c *config.Config) {
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "grpc-addr":
				c.GRPCAddr = *grpcAddr
			case "http-addr":
				c.HTTPAddr = *httpAddr
			case "admin-addr":
				c.AdminAddr = *adminAddr
			case "redis-url":
				c.Redis.URL = *redisURL
			case "log-level":
				c.LogLevel = strings.ToLower(*logLevel)
			}
		})
	}
	overrides(cfg)
	if err := cfg.Validate(*dev); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	slog.SetDefault(log)
	g, err := build(cfg, *dev, *configPath, log)
	if err != nil {
		return err
	}
	g.overrides = overrides
	return g.run(ctx)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// gate is one running sessiongate: its store, servers and background loops.
type gate struct {
	cfg        *config.Config
	configPath string
	dev        bool
	overrides  func(*config.Config) // command-line flags, re-applied on reload
	log        *slog.Logger
	store      session.Store
	services   session.ServiceStore
	peek       exchange.Sessions // the session store, read without sliding
	exchange   *exchange.Handler // POST /oauth2/token
	signer     *token.Signer
	authz      *authz.Server
	admin      *admin.Handler
	adminTLS   *tls.Config // nil: the admin API speaks plain HTTP
	metrics    *metrics.Metrics
	registry   *prometheus.Registry
	health     *health.Server
	ready      atomic.Bool

	keyWatchMu   sync.Mutex
	stopKeyWatch context.CancelFunc
}

func build(cfg *config.Config, dev bool, configPath string, log *slog.Logger) (*gate, error) {
	g := &gate{cfg: cfg, configPath: configPath, dev: dev, log: log, registry: prometheus.NewRegistry(), overrides: func(*config.Config) {}}
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.metrics = metrics.New(g.registry)

	var store session.Store
	if !cfg.Redis.Configured() {
		// Only reachable with --dev: Validate requires a Redis topology otherwise.
		log.Warn("dev mode: sessions are kept in process memory; single replica only, lost on restart")
		store = session.NewMemoryStore(nil)
	} else {
		r := cfg.Redis
		rdb, err := session.RedisOptions{
			URL:            r.URL,
			SentinelMaster: r.Sentinel.MasterName, SentinelAddrs: r.Sentinel.Addrs,
			SentinelUsername: r.Sentinel.Username, SentinelPassword: r.Sentinel.Password,
			ClusterAddrs: r.ClusterAddrs,
			Username:     r.Username, PasswordFile: r.PasswordFile,
			TLS: session.RedisTLS{Enabled: r.TLS.Enabled, CAFile: r.TLS.CAFile, CertFile: r.TLS.CertFile,
				KeyFile: r.TLS.KeyFile, ServerName: r.TLS.ServerName},
			Timeout: r.Timeout,
		}.NewClient()
		if err != nil {
			return nil, err
		}
		rs := session.NewRedisStore(rdb)
		// Before the first Check: loads the scripts and initialises the
		// warm pool, so no early Check pays NOSCRIPT plus a handshake
		// inside redis.timeout. A Redis that is down now is not fatal:
		// readiness stays off until it answers, and the scripts then
		// load on first use.
		wctx, cancel := context.WithTimeout(context.Background(), max(10*r.Timeout, 2*time.Second))
		if err := rs.Warm(wctx); err != nil {
			log.Warn("redis: warm-up failed; first calls may be slower", "err", err)
		}
		cancel()
		store = rs
	}
	g.store = g.metrics.Store(store)
	g.services = g.metrics.ServiceStore(store.(session.ServiceStore)) // both stores keep services next to sessions
	g.peek = store.(exchange.Sessions)

	keys, err := loadKeys(cfg, log)
	if err != nil {
		return nil, err
	}
	g.signer = token.NewSigner(keys, cfg.Token.Issuer)

	routes, err := authzRoutes(cfg.Routes)
	if err != nil {
		return nil, err
	}
	spiffe, err := authzSPIFFE(cfg.Services)
	if err != nil {
		return nil, err
	}
	cookie := session.Cookie{Name: cfg.Cookie.Name, SameSite: cfg.Cookie.SameSite, Domain: cfg.Cookie.Domain}
	g.authz = authz.New(authz.Options{
		Sessions:     g.store,
		Services:     g.services,
		SPIFFE:       spiffe,
		Signer:       g.signer,
		Routes:       routes,
		Cookie:       cookie,
		TokenHeader:  cfg.Token.Header,
		Audience:     cfg.Token.Audience,
		TokenTTL:     cfg.Token.TTL,
		StoreTimeout: cfg.Redis.Timeout,
		LoginURL:     cfg.LoginURL,
		LogoutPath:   cfg.Logout.Path,
		LogoutURL:    cfg.Logout.RedirectURL,
		CSRF:         authz.CSRF{Disabled: !cfg.CSRF.Enabled, AllowedOrigins: cfg.CSRF.AllowedOrigins},
		Metrics:      g.metrics,
		Log:          log,
	})

	open := false
	var tokens []string
	if cfg.AdminTokenFile != "" {
		if tokens, err = readAdminTokens(cfg.AdminTokenFile); err != nil {
			return nil, err
		}
	} else if !cfg.AdminTLS.ClientCertAuthOnly {
		// Only reachable with --dev. An unauthenticated admin API is tolerable
		// on loopback for a developer, never on a network interface.
		if !isLoopback(cfg.AdminAddr) {
			return nil, fmt.Errorf("dev mode without admin_token_file: admin_addr %q must be a loopback address", cfg.AdminAddr)
		}
		log.Warn("dev mode: admin API open without a token on loopback", "addr", cfg.AdminAddr)
		open = true
	}
	g.admin = admin.NewHandler(admin.Options{
		Store:           g.store,
		Services:        g.services,
		Cookie:          cookie,
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		Limit:           session.Limit{MaxPerUser: cfg.Session.MaxPerUser, Reject: cfg.Session.OnLimit == "reject"},
		Open:            open,
		Log:             log,

		RateLimit:          cfg.Admin.RateLimit,
		RateBurst:          cfg.Admin.RateBurst,
		ClientCertAuthOnly: cfg.AdminTLS.ClientCertAuthOnly,
	})
	g.admin.SetTokens(tokens)
	if t := cfg.AdminTLS; t.CertFile != "" {
		files := admin.TLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}
		if g.adminTLS, err = admin.ServerTLS(files, token.DefaultWatchInterval, log); err != nil {
			return nil, err
		}
	}
	if g.exchange, err = newExchange(cfg, g); err != nil {
		return nil, err
	}
	g.health = health.NewServer()
	return g, nil
}

func loadKeys(cfg *config.Config, log *slog.Logger) (*token.KeySet, error) {
	if len(cfg.Token.SigningKeys) == 0 {
		// Only reachable with --dev.
		k, err := token.GenerateKey(token.AlgES256)
		if err != nil {
			return nil, err
		}
		ks, err := token.NewKeySet(k, "")
		if err != nil {
			return nil, err
		}
		log.Warn("dev mode: ephemeral ES256 signing key; tokens stop verifying after a restart", "kid", ks.ActiveKID())
		return ks, nil
	}
	ks, err := keyFiles(cfg).Load()
	if err != nil {
		return nil, fmt.Errorf("load signing keys: %w", err)
	}
	return ks, nil
}

func keyFiles(cfg *config.Config) token.KeyFiles {
	return token.KeyFiles{Signing: cfg.Token.SigningKeys, Verification: cfg.Token.VerificationKeys, KIDs: cfg.Token.KeyIDs}
}

func authzRoutes(in []config.Route) ([]authz.Route, error) {
	out := make([]authz.Route, 0, len(in))
	for i, r := range in {
		a, err := authz.ParseAccess(r.Access)
		if err != nil {
			return nil, fmt.Errorf("routes[%d].access: %w", i, err)
		}
		for j, name := range r.Services {
			if !session.ValidServiceName(name) {
				return nil, fmt.Errorf("routes[%d].services[%d]: %q is not a service name (a-z, 0-9 and '-', at most 63)", i, j, name)
			}
		}
		out = append(out, authz.Route{PathPrefix: r.PathPrefix, Methods: r.Methods, Access: a, Roles: r.Roles, Services: r.Services})
	}
	return out, nil
}

func readAdminTokens(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin_token_file: %w", err)
	}
	tokens, err := admin.ParseTokenFile(data)
	if err != nil {
		return nil, fmt.Errorf("admin_token_file %s: %w", path, err)
	}
	return tokens, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// run serves until ctx ends, then shuts down gracefully: readiness goes
// NOT_SERVING first so Envoy and Kubernetes stop sending, in-flight Checks
// finish, and the store is closed last.
func (g *gate) run(ctx context.Context) error {
	cfg := g.cfg
	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc_addr %s: %w", cfg.GRPCAddr, err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen http_addr %s: %w", cfg.HTTPAddr, err)
	}
	adminLis, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("listen admin_addr %s: %w", cfg.AdminAddr, err)
	}
	if g.adminTLS != nil {
		adminLis = tls.NewListener(adminLis, g.adminTLS)
	}

	gs := grpc.NewServer(authz.ServerOptions()...) // the transport settings the benchmarks measure
	check, stopTracing, err := g.checkServer()
	if err != nil {
		return err
	}
	defer stopTracing()
	authv3.RegisterAuthorizationServer(gs, check)
	healthpb.RegisterHealthServer(gs, g.health)
	g.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	httpSrv := &http.Server{Handler: g.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	adminSrv := &http.Server{Handler: g.admin, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}

	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	go g.probeStore(bg)
	if len(cfg.Token.SigningKeys) > 0 {
		g.watchKeys(bg, keyFiles(cfg))
	}
	if cfg.AdminTokenFile != "" {
		go g.watchAdminTokens(bg, token.DefaultWatchInterval)
	}
	go g.reloadOnSIGHUP(bg)

	errc := make(chan error, 3)
	go func() { errc <- serveErr("grpc", gs.Serve(grpcLis)) }()
	go func() { errc <- serveErr("http", httpSrv.Serve(httpLis)) }()
	go func() { errc <- serveErr("admin", adminSrv.Serve(adminLis)) }()
	g.log.Info("sessiongate serving", "version", version,
		"grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String(), "admin_addr", adminLis.Addr().String(),
		"kid", g.signer.Keys().ActiveKID())

	var runErr error
	select {
	case <-ctx.Done():
		g.log.Info("shutting down")
	case runErr = <-errc:
		g.log.Error("server failed; shutting down", "err", runErr)
	}
	g.ready.Store(false)
	g.health.Shutdown()
	stopBG()

	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		gs.Stop()
	}
	_ = httpSrv.Shutdown(sctx)
	_ = adminSrv.Shutdown(sctx)
	if err := g.store.Close(); err != nil {
		g.log.Warn("close store", "err", err)
	}
	g.log.Info("stopped")
	return runErr
}

// checkServer returns the Check server, wrapped for tracing and decision
// logs only when they are on, so the default Check path carries no wrapper.
func (g *gate) checkServer() (authv3.AuthorizationServer, func(), error) {
	noop := func() {}
	traced := tracing.Enabled(os.Getenv)
	if !traced && !g.log.Enabled(context.Background(), slog.LevelDebug) {
		return g.authz, noop, nil
	}
	if !traced {
		return tracing.Authorization(g.authz, nil, g.log), noop, nil
	}
	tp, err := tracing.NewProvider(context.Background(), version)
	if err != nil {
		return nil, nil, err
	}
	g.log.Info("tracing Check spans over OTLP")
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}
	return tracing.Authorization(g.authz, tp, g.log), stop, nil
}

func serveErr(name string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s server: %w", name, err)
}

// probeStore keeps readiness and gRPC health in line with the store's
// reachability: a replica that cannot reach Redis can only deny, so Envoy's
// health checks and Kubernetes should route around it.
func (g *gate) probeStore(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	up := false
	for {
		pctx, cancel := context.WithTimeout(ctx, max(g.cfg.Redis.Timeout*5, 500*time.Millisecond))
		err := g.store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		now := err == nil
		if now != up {
			if now {
				g.log.Info("session store reachable; serving")
				g.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
				g.metrics.StoreUp.Set(1)
			} else {
				g.log.Warn("session store unreachable; not serving", "err", err)
				g.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
				g.metrics.StoreUp.Set(0)
			}
			up = now
			g.ready.Store(now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reloadOnSIGHUP re-reads keys and the config file. What is safe to change
// live is applied (keys, routes); everything else needs a restart and is
// reported as such.
func (g *gate) reloadOnSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			g.reload(ctx)
		}
	}
}

// watchKeys (re)starts the key file watcher on files; a SIGHUP that changes
// the configured key files moves the watch to the new ones.
func (g *gate) watchKeys(ctx context.Context, files token.KeyFiles) {
	g.keyWatchMu.Lock()
	defer g.keyWatchMu.Unlock()
	if g.stopKeyWatch != nil {
		g.stopKeyWatch()
	}
	wctx, cancel := context.WithCancel(ctx)
	g.stopKeyWatch = cancel
	go token.WatchKeys(wctx, files, token.DefaultWatchInterval, g.log, g.signer.SetKeys)
}

// reload applies what is safe to change live from the config file and the
// files it names: signing keys (including a changed list of key files, which
// is how the rotation runbook moves from step to step), route rules and
// admin tokens. An invalid config or key file changes nothing.
func (g *gate) reload(ctx context.Context) {
	g.log.Info("SIGHUP: reloading")
	cfg := g.cfg
	if g.configPath != "" {
		next, err := config.Load(g.configPath, os.Environ())
		if err == nil {
			g.overrides(next)
			err = next.Validate(g.dev)
		}
		if err != nil {
			g.log.Error("config reload failed; keeping current config", "err", err)
			return
		}
		cfg = next
	}
	routes, err := authzRoutes(cfg.Routes)
	if err != nil {
		g.log.Error("config reload failed; keeping current config", "err", err)
		return
	}
	spiffe, err := authzSPIFFE(cfg.Services)
	if err != nil {
		g.log.Error("config reload failed; keeping current config", "err", err)
		return
	}
	if len(cfg.Token.SigningKeys) > 0 {
		files := keyFiles(cfg)
		if err := token.Reload(files, g.log, g.signer.SetKeys); err == nil {
			g.watchKeys(ctx, files)
		}
	}
	g.authz.SetRoutes(routes)
	g.authz.SetSPIFFE(spiffe)
	if cfg.AdminTokenFile != "" {
		if tokens, err := readAdminTokens(cfg.AdminTokenFile); err != nil {
			g.log.Error("admin token reload failed; keeping current tokens", "err", err)
		} else {
			g.admin.SetTokens(tokens)
		}
	}
	g.log.Info("reloaded: signing keys, routes, services.spiffe* and admin tokens applied; other keys need a restart")
}

// watchAdminTokens re-reads the admin token file when its content changes,
// like the key files: a Kubernetes Secret update rotates admin tokens without
// a signal, which a distroless pod cannot easily be sent. A bad file is
// logged and the current tokens stay.
func (g *gate) watchAdminTokens(ctx context.Context, interval time.Duration) {
	last, _ := os.ReadFile(g.cfg.AdminTokenFile)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(g.cfg.AdminTokenFile)
		if err != nil || bytes.Equal(data, last) {
			continue
		}
		last = data
		tokens, err := admin.ParseTokenFile(data)
		if err != nil {
			g.log.Error("admin token file changed but is invalid; keeping current tokens", "err", err)
			continue
		}
		g.admin.SetTokens(tokens)
		g.log.Info("admin tokens reloaded", "count", len(tokens))
	}
}

func (g *gate) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/jwks.json", g.signer.JWKSHandler(g.cfg.Token.JWKSMaxAge))
	mux.Handle("GET /.well-known/openid-configuration", token.DiscoveryHandler(g.cfg.Token.Issuer, g.jwksURL()))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Liveness: the process answers. It does not depend on Redis, or
		// Kubernetes would restart every replica during a Redis outage.
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "session store unreachable", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.registry, promhttp.HandlerOpts{}))
	mux.Handle("POST /oauth2/token", http.MaxBytesHandler(g.exchange, exchange.MaxBodyBytes+1))
	return mux
}

// jwksURL is what the discovery document names. When the issuer is a URL,
// the JWKS is assumed to be served under it (behind a gateway); otherwise the
// path alone is given, relative to whoever fetched the document.
func (g *gate) jwksURL() string {
	iss := g.cfg.Token.Issuer
	if strings.HasPrefix(iss, "https://") || strings.HasPrefix(iss, "http://") {
		return strings.TrimRight(iss, "/") + "/.well-known/jwks.json"
	}
	return "/.well-known/jwks.json"
}
