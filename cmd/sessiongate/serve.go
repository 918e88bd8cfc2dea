package main

import (
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
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/exchange"
	"github.com/sessiongate/sessiongate/pkg/geoip"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/revocation"
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
	events     *events.Log
	eventStore events.Store
	geoip      *geoip.DB // nil without geoip.database
	signer     *token.Signer
	authz      *authz.Server
	admin      *admin.Handler
	// revocations serves GET /v1/revocations on http_addr.
	revocations *revocation.Feed
	adminTLS    atomic.Pointer[tls.Config] // nil: the admin API speaks plain HTTP
	files       *watcher
	metrics     *metrics.Metrics
	registry    *prometheus.Registry
	health      *health.Server
	ready       atomic.Bool
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
	if g.adminTLS.Load() != nil {
		adminLis = tls.NewListener(adminLis, g.adminListenerTLS())
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
	go g.files.run(bg, watchInterval)
	go g.reloadOnSIGHUP(bg)
	// Stopped with bg, before the HTTP server shuts down: that drops the
	// feed's streams, which would otherwise hold Shutdown to its deadline.
	go g.revocations.Run(bg)

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
	g.events.Close()
	if g.geoip != nil {
		_ = g.geoip.Close()
	}
	if wh := g.events.Webhook(); wh != nil {
		wh.Close()
	}
	if c, ok := g.eventStore.(io.Closer); ok {
		_ = c.Close()
	}
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
	mux.Handle("GET /v1/revocations", g.revocations)
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
