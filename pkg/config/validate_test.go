package config

import (
	"strings"
	"testing"
	"time"
)

// production returns a configuration that passes Validate(false).
func production() Config {
	c := Default()
	c.AdminTokenFile = "/run/secrets/admin-token"
	c.Redis.URL = "redis://redis:6379/0"
	c.Token.SigningKeys = []string{"/keys/active.pem"}
	return c
}

func TestValidateRequiredOutsideDev(t *testing.T) {
	c := production()
	if err := c.Validate(false); err != nil {
		t.Fatalf("production().Validate(false) = %v", err)
	}
	c = Default()
	if err := c.Validate(true); err != nil {
		t.Errorf("Validate(dev) = %v", err)
	}
	err := c.Validate(false)
	wantErr(t, err, "config: admin_token_file: required", "config: redis.url: required", "config: token.signing_keys: required")
	// Dev mode waives presence, not correctness.
	c.Redis.URL = "http://localhost"
	wantErr(t, c.Validate(true), "config: redis.url:")
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"login_url https", func(c *Config) { c.LoginURL = "https://login.example.com/a?b=c" }},
		{"login_url path", func(c *Config) { c.LoginURL = "/login" }},
		{"same_site None", func(c *Config) { c.Cookie.SameSite = "None" }},
		{"domain without __Host-", func(c *Config) { c.Cookie.Name = "__Secure-sid"; c.Cookie.Domain = "example.com" }},
		{"absolute == idle", func(c *Config) { c.Session.AbsoluteTimeout = c.Session.IdleTimeout }},
		{"absolute at 30 days", func(c *Config) { c.Session.AbsoluteTimeout = 30 * 24 * time.Hour }},
		{"ttl bounds", func(c *Config) { c.Token.TTL = 10 * time.Second }},
		{"jwks_max_age 0", func(c *Config) { c.Token.JWKSMaxAge = 0 }},
		{"logout disabled", func(c *Config) { c.Logout.Path = "" }},
		{"logout redirect", func(c *Config) { c.Logout.RedirectURL = "https://example.com/" }},
		{"self-service disabled", func(c *Config) { c.SelfService = SelfService{} }},
		{"self-service page only", func(c *Config) { c.SelfService.PathPrefix = "" }},
		{"self-service elsewhere", func(c *Config) {
			c.SelfService = SelfService{PathPrefix: "/account/sessions", PagePath: "/account/devices.html"}
		}},
		{"self-service beside logout", func(c *Config) { c.Logout.Path = "/auth/sessions-logout" }},
		{"refresh on", func(c *Config) { c.Refresh.Enabled = true }},
		{"refresh without grace", func(c *Config) { c.Refresh.ReuseGrace = 0 }},
		{"rediss", func(c *Config) { c.Redis.URL = "rediss://:pw@redis:6380/2" }},
		{"routes", func(c *Config) {
			c.Routes = []Route{
				{PathPrefix: "/", Access: "public"},
				{PathPrefix: "/api", Methods: []string{"GET", "PROPFIND"}, Access: "authenticated", Roles: []string{"a", "b"}},
				{PathPrefix: "/internal", Access: "deny"},
			}
		}},
		{"spiffe principals", func(c *Config) {
			c.Services.SPIFFE = map[string]string{"spiffe://cluster.local/ns/billing/sa/billing": "billing"}
			c.Services.SPIFFETrustDomain = "cluster.local"
		}},
		{"internal routes and services", func(c *Config) {
			c.Routes = []Route{
				{PathPrefix: "/internal/", Access: "internal"},
				{PathPrefix: "/inventory/", Access: "internal", Services: []string{"inventory"}, Roles: []string{"writer"}},
				{PathPrefix: "/partners/", Access: "authenticated", Services: []string{"billing"}},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := production()
			tt.mutate(&c)
			if err := c.Validate(false); err != nil {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		key    string // the error must start with "config: <key>: "
		mutate func(*Config)
	}{
		{"grpc_addr", func(c *Config) { c.GRPCAddr = "" }},
		{"http_addr", func(c *Config) { c.HTTPAddr = "9002" }},
		{"admin_addr", func(c *Config) { c.AdminAddr = "localhost:" }},
		{"login_url", func(c *Config) { c.LoginURL = "login" }},
		{"login_url", func(c *Config) { c.LoginURL = "//evil.example.com" }},
		{"login_url", func(c *Config) { c.LoginURL = `/\evil.example.com` }},
		{"login_url", func(c *Config) { c.LoginURL = "javascript:alert(1)" }},
		{"login_url", func(c *Config) { c.LoginURL = "https:///nohost" }},
		{"log_level", func(c *Config) { c.LogLevel = "trace" }},
		{"redis.url", func(c *Config) { c.Redis.URL = "tcp://redis:6379" }},
		{"redis.url", func(c *Config) { c.Redis.URL = "redis://r:6379/\x7f" }},
		{"redis.timeout", func(c *Config) { c.Redis.Timeout = 0 }},
		{"redis.timeout", func(c *Config) { c.Redis.Timeout = 11 * time.Second }},
		{"cookie.name", func(c *Config) { c.Cookie.Name = "" }},
		{"cookie.name", func(c *Config) { c.Cookie.Name = "s id" }},
		{"cookie.name", func(c *Config) { c.Cookie.Name = "sid;" }},
		{"cookie.same_site", func(c *Config) { c.Cookie.SameSite = "lax" }},
		{"cookie.domain", func(c *Config) { c.Cookie.Domain = "example.com" }},
		{"cookie.domain", func(c *Config) { c.Cookie.Name = "__host-sid"; c.Cookie.Domain = "example.com" }},
		{"session.idle_timeout", func(c *Config) { c.Session.IdleTimeout = -time.Second }},
		{"session.absolute_timeout", func(c *Config) { c.Session.AbsoluteTimeout = 29 * time.Minute }},
		{"session.absolute_timeout", func(c *Config) { c.Session.AbsoluteTimeout = 31 * 24 * time.Hour }},
		{"session.max_per_user", func(c *Config) { c.Session.MaxPerUser = -1 }},
		{"session.on_limit", func(c *Config) { c.Session.OnLimit = "evict_newest" }},
		{"token.header", func(c *Config) { c.Token.Header = "" }},
		{"token.header", func(c *Config) { c.Token.Header = "x jwt" }},
		{"token.header", func(c *Config) { c.Token.Header = "X-Jwt" }},
		{"token.header", func(c *Config) { c.Token.Header = ":authority" }},
		{"token.header", func(c *Config) { c.Token.Header = "connection" }},
		{"token.header", func(c *Config) { c.Token.Header = "transfer-encoding" }},
		{"token.header", func(c *Config) { c.Token.Header = "authorization" }},
		{"token.header", func(c *Config) { c.Token.Header = "cookie" }},
		{"token.header", func(c *Config) { c.Token.Header = "host" }},
		{"session.slide_interval", func(c *Config) { c.Session.SlideInterval = -time.Second }},
		{"session.slide_interval", func(c *Config) { c.Session.SlideInterval = c.Session.IdleTimeout/4 + time.Millisecond }},
		{"cache.max_entries", func(c *Config) { c.Cache.MaxEntries = 0 }},
		{"token.issuer", func(c *Config) { c.Token.Issuer = "" }},
		{"token.audience", func(c *Config) { c.Token.Audience = "" }},
		{"token.ttl", func(c *Config) { c.Token.TTL = 9 * time.Second }},
		{"token.ttl", func(c *Config) { c.Token.TTL = time.Hour + 1 }},
		{"token.signing_keys[1]", func(c *Config) { c.Token.SigningKeys = []string{"/a.pem", ""} }},
		{"token.verification_keys[0]", func(c *Config) { c.Token.VerificationKeys = []string{""} }},
		{"token.jwks_max_age", func(c *Config) { c.Token.JWKSMaxAge = -time.Second }},
		{"logout.path", func(c *Config) { c.Logout.Path = "logout" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "auth/sessions" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth/sessions/" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth//sessions" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth/../sessions" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth/sess%69ons" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth/sessions?x" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService.PathPrefix = "/auth/logout" }},
		{"self_service.path_prefix", func(c *Config) { c.SelfService = SelfService{PathPrefix: "/auth"}; c.Refresh.Path = "/token" }},
		{"self_service.page_path", func(c *Config) { c.SelfService.PagePath = "/auth/devices/" }},
		{"self_service.page_path", func(c *Config) { c.SelfService.PagePath = "/auth/sessions/page" }},
		{"self_service.page_path", func(c *Config) { c.SelfService.PagePath = "/auth/sessions" }},
		{"self_service.page_path", func(c *Config) { c.SelfService.PagePath = "/auth/logout" }},
		{"logout.redirect_url", func(c *Config) { c.Logout.RedirectURL = "ftp://example.com/" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "token" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "/auth/token/" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "/auth//token" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "/auth/%74oken" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "/auth/sessions/token" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = "/auth/devices" }},
		{"refresh.path", func(c *Config) { c.Refresh.Path = c.Logout.Path }},
		{"refresh.ttl", func(c *Config) { c.Refresh.TTL = time.Hour; c.Refresh.IdleTimeout = 2 * time.Hour }},
		{"refresh.ttl", func(c *Config) { c.Refresh.TTL = 400 * 24 * time.Hour }},
		{"refresh.ttl", func(c *Config) { c.Refresh.TTL = time.Minute; c.Refresh.IdleTimeout = time.Minute }},
		{"refresh.idle_timeout", func(c *Config) { c.Refresh.IdleTimeout = 0 }},
		{"refresh.access_idle_timeout", func(c *Config) { c.Refresh.AccessIdleTimeout = 0 }},
		{"refresh.access_absolute_timeout", func(c *Config) { c.Refresh.AccessAbsoluteTimeout = time.Minute }},
		{"refresh.reuse_grace", func(c *Config) { c.Refresh.ReuseGrace = -time.Second }},
		{"refresh.reuse_grace", func(c *Config) { c.Refresh.ReuseGrace = 2 * time.Minute }},
		{"routes[0].path_prefix", func(c *Config) { c.Routes = []Route{{PathPrefix: "api", Access: "public"}} }},
		{"routes[0].path_prefix", func(c *Config) { c.Routes = []Route{{Access: "public"}} }},
		{"routes[1].access", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "public"}, {PathPrefix: "/x"}}
		}},
		{"routes[0].access", func(c *Config) { c.Routes = []Route{{PathPrefix: "/", Access: "allow"}} }},
		{"routes[0].methods[1]", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Methods: []string{"GET", "GE T"}, Access: "public"}}
		}},
		{"routes[0].roles", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "public", Roles: []string{"admin"}}}
		}},
		{"routes[0].roles", func(c *Config) { c.Routes = []Route{{PathPrefix: "/", Access: "deny", Roles: []string{"admin"}}} }},
		{"routes[0].roles[0]", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "authenticated", Roles: []string{""}}}
		}},
		{"routes[0].services", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "public", Services: []string{"billing"}}}
		}},
		{"routes[0].services", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "deny", Services: []string{"billing"}}}
		}},
		{"services.spiffe", func(c *Config) { c.Services.SPIFFE = map[string]string{"https://x/y": "billing"} }},
		{"token.exchange_ttl", func(c *Config) { c.Token.ExchangeTTL = time.Second }},
		{"token.exchange_ttl", func(c *Config) { c.Token.ExchangeTTL = 2 * time.Hour }},
		{"token.exchange_rate_limit", func(c *Config) { c.Token.ExchangeRateLimit = -1 }},
		{"token.exchange_rate_burst", func(c *Config) { c.Token.ExchangeRateBurst = -1 }},
		{"token_exchange.billing[0]", func(c *Config) { c.TokenExchange = map[string][]string{"billing": {""}} }},
		{"services.spiffe", func(c *Config) { c.Services.SPIFFE = map[string]string{"spiffe://x/y": ""} }},
		{"services.spiffe_trust_domain", func(c *Config) { c.Services.SPIFFETrustDomain = "spiffe://cluster.local" }},
		{"services.spiffe_trust_domain", func(c *Config) { c.Services.SPIFFETrustDomain = "Cluster.Local" }},
		{"routes[0].services[1]", func(c *Config) {
			c.Routes = []Route{{PathPrefix: "/", Access: "internal", Services: []string{"billing", ""}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := production()
			tt.mutate(&c)
			err := c.Validate(false)
			wantErr(t, err, "config: "+tt.key+": ")
			if strings.Count(err.Error(), "config: ") != 1 {
				t.Errorf("want exactly one problem, got:\n%v", err)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := production()
	c.Session.IdleTimeout = -time.Second
	c.Cookie.Domain = "example.com"
	c.Routes = []Route{{PathPrefix: "/", Access: "public", Roles: []string{"x"}}}
	err := c.Validate(false)
	wantErr(t, err,
		`config: session.idle_timeout: must be > 0, got "-1s"`,
		"config: cookie.domain: ",
		"config: routes[0].roles: ")
}

func TestValidateDoesNotEchoRedisPassword(t *testing.T) {
	c := production()
	c.Redis.URL = "http://:hunter2@redis:6379"
	err := c.Validate(false)
	wantErr(t, err, "config: redis.url: ")
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestKeyIDs(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Redis.URL = "redis://127.0.0.1:6379"
		c.AdminTokenFile = "/tokens"
		c.Token.SigningKeys = []string{"/k/a.pem"}
		c.Token.VerificationKeys = []string{"/k/b.pem"}
		return &c
	}
	tests := []struct {
		ids     map[string]string
		wantErr bool
	}{
		{map[string]string{"/k/a.pem": "2026-11", "/k/b.pem": "2026-05"}, false},
		{map[string]string{"/k/c.pem": "x"}, true},
		{map[string]string{"/k/a.pem": ""}, true},
		{map[string]string{"/k/a.pem": "same", "/k/b.pem": "same"}, true},
		{map[string]string{"/k/a.pem": "bad\"kid"}, true},
	}
	for _, tt := range tests {
		c := base()
		c.Token.KeyIDs = tt.ids
		err := c.Validate(false)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v", tt.ids, err)
		}
		if err != nil && !strings.Contains(err.Error(), "token.key_ids") {
			t.Errorf("%v: error does not name the key: %v", tt.ids, err)
		}
	}
}
