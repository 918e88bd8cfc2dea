package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/health"

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
)

// build wires the components. What each one is told is decided by a pure
// function of the config below (redisOptions, authzOptions, adminOptions,
// ...); build adds the live dependencies (store, signer, metrics, logger)
// and the side effects: connecting, reading files, logging.
func build(cfg *config.Config, dev bool, configPath string, log *slog.Logger) (*gate, error) {
	g := &gate{cfg: cfg, configPath: configPath, dev: dev, log: log, registry: prometheus.NewRegistry(), overrides: func(*config.Config) {},
		files: newWatcher(log)}
	g.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.metrics = metrics.New(g.registry)

	store, err := newStore(cfg, log)
	if err != nil {
		return nil, err
	}
	if rs, ok := store.(*session.RedisStore); ok && cfg.Cache.Enabled {
		metrics.RegisterCache(g.registry, rs.CacheStats)
	}
	// Both stores record what they delete for the revocation feed, for
	// as long as a token of it may live.
	revs := store.(revocationSource)
	revs.SetRevocationWindow(revocationWindow(cfg))
	ro := revocationOptions(cfg)
	ro.Source, ro.Log = revs, log
	g.revocations = revocation.New(ro)
	metrics.RegisterRevocations(g.registry, func() metrics.RevocationStats {
		st := g.revocations.Stats()
		return metrics.RevocationStats{Published: revs.RevocationsPublished(), Subscribers: st.Subscribers,
			Dropped: st.Dropped, Synced: st.Synced, Resyncs: st.Resyncs, Entries: st.Entries}
	})
	if cfg.Revocations.TokenFile != "" {
		if err := g.files.start(g.revocationTokenSet(cfg.Revocations.TokenFile)); err != nil {
			return nil, err
		}
	}
	g.store = g.metrics.Store(store)
	g.services = g.metrics.ServiceStore(store.(session.ServiceStore)) // both stores keep services next to sessions
	g.peek = store.(exchange.Sessions)
	if g.eventStore, err = newEventStore(cfg); err != nil {
		return nil, err
	}
	eo := eventLogOptions(g.eventStore, g.metrics, log)
	if eo.Webhook, err = newWebhook(cfg.Events.Webhook, g.metrics, log); err != nil {
		return nil, err
	}
	g.events = events.NewLog(eo)

	if len(cfg.Token.SigningKeys) == 0 {
		// Only reachable with --dev.
		keys, err := devKeys(log)
		if err != nil {
			return nil, err
		}
		g.signer = token.NewSigner(keys, cfg.Token.Issuer)
	} else {
		// The watcher's first load puts the keys in before anything signs.
		g.signer = token.NewSigner(nil, cfg.Token.Issuer)
		if err := g.files.start(g.keySet(keyFiles(cfg))); err != nil {
			return nil, fmt.Errorf("load signing keys: %w", err)
		}
	}

	ao, err := authzOptions(cfg)
	if err != nil {
		return nil, err
	}
	ao.Sessions, ao.Services, ao.Signer, ao.Metrics, ao.Log = g.store, g.services, g.signer, g.metrics, log
	ao.SelfService.Sessions = g.store
	ao.Events = g.events
	if ao.RefreshPath != "" {
		ao.Refresh = g.store // the token endpoint rotates in the session store
	}
	if cfg.GeoIP.Database != "" {
		if g.geoip, err = geoip.Open(cfg.GeoIP.Database); err != nil {
			return nil, fmt.Errorf("geoip.database: %w", err)
		}
		ao.GeoIP = g.geoip
	}
	g.authz = authz.New(ao)

	do, err := adminOptions(cfg)
	if err != nil {
		return nil, err
	}
	if do.Open {
		log.Warn("dev mode: admin API open without a token on loopback", "addr", cfg.AdminAddr)
	}
	do.Store, do.Services, do.Log = g.store, g.services, log
	do.Events, do.EventStore = g.events, g.eventStore
	g.admin = admin.NewHandler(do)
	if g.exchange, err = newExchange(cfg, g); err != nil {
		return nil, err
	}

	if cfg.AdminTokenFile != "" {
		if err := g.files.start(g.adminTokenSet(cfg.AdminTokenFile)); err != nil {
			return nil, err
		}
	}
	if files, ok := adminTLSFiles(cfg); ok {
		if err := g.files.start(g.adminTLSSet(files)); err != nil {
			return nil, err
		}
	}
	g.health = health.NewServer()
	return g, nil
}

// newStore connects the session store: Redis, or process memory in dev mode.
func newStore(cfg *config.Config, log *slog.Logger) (session.Store, error) {
	if !cfg.Redis.Configured() {
		// Only reachable with --dev: Validate requires a Redis topology otherwise.
		log.Warn("dev mode: sessions are kept in process memory; single replica only, lost on restart")
		return session.NewMemoryStore(nil), nil
	}
	rdb, err := redisOptions(cfg.Redis).NewClient()
	if err != nil {
		return nil, err
	}
	rs := session.NewRedisStore(rdb)
	if cfg.Cache.Enabled {
		if err := rs.EnableCache(cacheOptions(cfg)); err != nil {
			return nil, err
		}
	}
	// Before the first Check: loads the scripts and initialises the warm
	// pool, so no early Check pays NOSCRIPT plus a handshake inside
	// redis.timeout. A Redis that is down now is not fatal: readiness stays
	// off until it answers, and the scripts then load on first use.
	wctx, cancel := context.WithTimeout(context.Background(), max(10*cfg.Redis.Timeout, 2*time.Second))
	if err := rs.Warm(wctx); err != nil {
		log.Warn("redis: warm-up failed; first calls may be slower", "err", err)
	}
	cancel()
	return rs, nil
}

// revocationSource is what both session stores offer the revocation feed.
type revocationSource interface {
	revocation.Source
	SetRevocationWindow(time.Duration)
	RevocationsPublished() uint64
}

// revocationWindow is how long a revocation is published: the longest a
// token sessiongate signed for the session may live (a Check's token or
// one obtained by token exchange).
func revocationWindow(cfg *config.Config) time.Duration {
	return max(cfg.Token.TTL, cfg.Token.ExchangeTTL)
}

// revocationOptions maps revocations.* to the feed's options; the caller
// adds the source and the logger.
func revocationOptions(cfg *config.Config) revocation.Options {
	return revocation.Options{MaxSubscribers: cfg.Revocations.MaxSubscribers, MaxEntries: cfg.Revocations.MaxEntries}
}

// cacheOptions maps cache.* and session.slide_interval to the Redis
// store's session cache.
func cacheOptions(cfg *config.Config) session.CacheOptions {
	return session.CacheOptions{MaxEntries: cfg.Cache.MaxEntries, SlideInterval: cfg.Session.SlideInterval, Timeout: cfg.Redis.Timeout}
}

// redisOptions maps redis.* to the Redis client's options.
func redisOptions(r config.Redis) session.RedisOptions {
	return session.RedisOptions{
		URL:            r.URL,
		SentinelMaster: r.Sentinel.MasterName, SentinelAddrs: r.Sentinel.Addrs,
		SentinelUsername: r.Sentinel.Username, SentinelPassword: r.Sentinel.Password,
		ClusterAddrs: r.ClusterAddrs,
		Username:     r.Username, PasswordFile: r.PasswordFile,
		TLS: session.RedisTLS{Enabled: r.TLS.Enabled, CAFile: r.TLS.CAFile, CertFile: r.TLS.CertFile,
			KeyFile: r.TLS.KeyFile, ServerName: r.TLS.ServerName},
		Timeout: r.Timeout,
	}
}

// devKeys makes the ephemeral signing key of dev mode.
func devKeys(log *slog.Logger) (*token.KeySet, error) {
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

// keyFiles maps token.signing_keys, verification_keys and key_ids to the
// files the signer's key set is read from.
func keyFiles(cfg *config.Config) token.KeyFiles {
	return token.KeyFiles{Signing: cfg.Token.SigningKeys, Verification: cfg.Token.VerificationKeys, KIDs: cfg.Token.KeyIDs}
}

// cookie maps cookie.* to the session cookie both authz and admin render.
func cookie(cfg *config.Config) session.Cookie {
	return session.Cookie{Name: cfg.Cookie.Name, SameSite: cfg.Cookie.SameSite, Domain: cfg.Cookie.Domain}
}

// authzOptions maps the config to the Check server's options; the caller
// adds Sessions, Signer, Metrics and Log, and Refresh when RefreshPath is
// set (refresh.enabled).
func authzOptions(cfg *config.Config) (authz.Options, error) {
	routes, err := authzRoutes(cfg.Routes)
	if err != nil {
		return authz.Options{}, err
	}
	spiffe, err := authzSPIFFE(cfg.Services)
	if err != nil {
		return authz.Options{}, err
	}
	binding, err := authzBinding(cfg.Session.Binding)
	if err != nil {
		return authz.Options{}, err
	}
	anomaly, err := authzAnomaly(cfg.Session.Anomaly)
	if err != nil {
		return authz.Options{}, err
	}
	return authz.Options{
		Routes:         routes,
		SPIFFE:         spiffe,
		Cookie:         cookie(cfg),
		TokenHeader:    cfg.Token.Header,
		Audience:       cfg.Token.Audience,
		TokenTTL:       cfg.Token.TTL,
		TokenWarnBytes: cfg.Token.WarnBytes,
		TokenMaxBytes:  cfg.Token.MaxBytes,
		StoreTimeout:   cfg.Redis.Timeout,
		LoginURL:       cfg.LoginURL,
		LogoutPath:     cfg.Logout.Path,
		LogoutURL:      cfg.Logout.RedirectURL,
		CSRF:           authz.CSRF{Disabled: !cfg.CSRF.Enabled, AllowedOrigins: cfg.CSRF.AllowedOrigins, Shadow: cfg.CSRF.Shadow},
		// The caller adds the store that lists sessions.
		SelfService: authz.SelfService{PathPrefix: cfg.SelfService.PathPrefix, PagePath: cfg.SelfService.PagePath},
		RefreshPath: refreshPath(cfg.Refresh),

		Binding:        binding,
		XFFTrustedHops: cfg.ClientIP.XFFTrustedHops,
		Anomaly:        anomaly,

		NoDynamicMetadata: !cfg.Envoy.DynamicMetadata,
	}, nil
}

// refreshPath is the token endpoint's path, or "" with refresh off.
func refreshPath(r config.Refresh) string {
	if !r.Enabled {
		return ""
	}
	return r.Path
}

// authzAnomaly maps session.anomaly to the Check server's anomaly checks;
// the caller adds the GeoIP database.
func authzAnomaly(a config.SessionAnomaly) (authz.Anomaly, error) {
	action, err := authz.ParsePolicyAction(a.Action)
	if err != nil {
		return authz.Anomaly{}, fmt.Errorf("session.anomaly.action: %w", err)
	}
	out := authz.Anomaly{MaxRate: a.MaxRate, Action: action, CountryChange: a.CountryChange != ""}
	if out.CountryChange {
		if out.CountryAction, err = authz.ParsePolicyAction(a.CountryChange); err != nil {
			return authz.Anomaly{}, fmt.Errorf("session.anomaly.country_change: %w", err)
		}
	}
	return out, nil
}

// authzBinding maps session.binding to the Check server's binding.
func authzBinding(b config.SessionBinding) (authz.Binding, error) {
	action, err := authz.ParsePolicyAction(b.Action)
	if err != nil {
		return authz.Binding{}, fmt.Errorf("session.binding.action: %w", err)
	}
	return authz.Binding{UserAgent: b.UserAgent, IPv4Bits: b.IPPrefix.IPv4, IPv6Bits: b.IPPrefix.IPv6, Action: action}, nil
}

// authzRoutes maps routes to the Check server's rules; they are also what a
// reload swaps in.
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
		// config.Validate has checked the names with the same rule; checked
		// again here, as the services are, where the rule is built.
		if err := authz.CheckClaims(r.Claims); err != nil {
			return nil, fmt.Errorf("routes[%d].%w", i, err)
		}
		rit := authz.RolesAll
		if r.RolesInToken != "" {
			if rit, err = authz.ParseRolesInToken(r.RolesInToken); err != nil {
				return nil, fmt.Errorf("routes[%d].roles_in_token: %w", i, err)
			}
		}
		out = append(out, authz.Route{PathPrefix: r.PathPrefix, Methods: r.Methods, Access: a, Roles: r.Roles, Services: r.Services, Shadow: r.Shadow,
			Claims: r.Claims, RolesInToken: rit})
	}
	return out, nil
}

// adminOptions maps the config to the admin API's options; the caller adds
// Store and Log. Without a token file or client-certificate auth (only
// possible with --dev) the API is open, which is refused anywhere but on
// loopback.
func adminOptions(cfg *config.Config) (admin.Options, error) {
	open := cfg.AdminTokenFile == "" && !cfg.AdminTLS.ClientCertAuthOnly
	if open && !isLoopback(cfg.AdminAddr) {
		return admin.Options{}, fmt.Errorf("dev mode without admin_token_file: admin_addr %q must be a loopback address", cfg.AdminAddr)
	}
	return admin.Options{
		Cookie:          cookie(cfg),
		IdleTimeout:     cfg.Session.IdleTimeout,
		AbsoluteTimeout: cfg.Session.AbsoluteTimeout,
		Limit:           session.Limit{MaxPerUser: cfg.Session.MaxPerUser, Reject: cfg.Session.OnLimit == "reject"},
		Open:            open,

		RateLimit:          cfg.Admin.RateLimit,
		RateBurst:          cfg.Admin.RateBurst,
		ClientCertAuthOnly: cfg.AdminTLS.ClientCertAuthOnly,
		Refresh:            refreshPolicy(cfg),
	}, nil
}

// refreshPolicy maps refresh.* to the lifetimes of a refresh family; nil
// when refresh is off, so the admin API refuses "refresh": true.
func refreshPolicy(cfg *config.Config) *session.RefreshPolicy {
	r := cfg.Refresh
	if !r.Enabled {
		return nil
	}
	return &session.RefreshPolicy{
		AccessIdle:     r.AccessIdleTimeout,
		AccessAbsolute: r.AccessAbsoluteTimeout,
		TTL:            r.TTL,
		Idle:           r.IdleTimeout,
		Grace:          r.ReuseGrace,
	}
}

// adminTLSFiles maps admin_tls.* to the admin listener's certificate files;
// false means the admin API speaks plain HTTP.
func adminTLSFiles(cfg *config.Config) (admin.TLSFiles, bool) {
	t := cfg.AdminTLS
	return admin.TLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile}, t.On()
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
