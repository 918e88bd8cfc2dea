package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes a config file into a fresh temp dir and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sessiongate.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustLoad(t *testing.T, path string, environ []string) *Config {
	t.Helper()
	c, err := Load(path, environ)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

// wantErr fails unless err mentions every one of wants.
func wantErr(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	want := Config{
		GRPCAddr:  ":9001",
		HTTPAddr:  ":9002",
		AdminAddr: "127.0.0.1:9003",
		LogLevel:  "info",
		Redis:     Redis{Timeout: 100 * time.Millisecond},
		Cache:     Cache{Enabled: true, MaxEntries: 100000},
		Envoy:     Envoy{DynamicMetadata: true},
		Cookie:    Cookie{Name: "__Host-sid", SameSite: "Lax"},
		Session: Session{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour, OnLimit: "evict_oldest",
			Binding: SessionBinding{Action: "log"}, Anomaly: SessionAnomaly{Action: "log"}},
		Token: Token{
			Header: "x-internal-jwt", Issuer: "sessiongate", Audience: "internal",
			TTL: 5 * time.Minute, JWKSMaxAge: 5 * time.Minute,
			ExchangeTTL: 5 * time.Minute, ExchangeRateLimit: 50, ExchangeRateBurst: 100,
			WarnBytes: 4096, MaxBytes: 8192,
		},
		Logout:      Logout{Path: "/auth/logout"},
		Refresh:     Refresh{Path: "/auth/token", TTL: 720 * time.Hour, IdleTimeout: 168 * time.Hour, AccessIdleTimeout: 15 * time.Minute, AccessAbsoluteTimeout: time.Hour, ReuseGrace: 10 * time.Second},
		SelfService: SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices"},
		CSRF:        CSRF{Enabled: true},
		Admin:       Admin{RateLimit: 100, RateBurst: 200},
		Events:      Events{MaxLen: 100_000},
		Revocations: Revocations{MaxSubscribers: 256, MaxEntries: 100_000},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v\nwant        %+v", c, want)
	}
	if err := c.Validate(true); err != nil {
		t.Errorf("Default().Validate(dev) = %v", err)
	}
	if got := mustLoad(t, "", nil); !reflect.DeepEqual(*got, want) {
		t.Errorf(`Load("", nil) = %+v, want the defaults`, *got)
	}
}

func TestKeys(t *testing.T) {
	// The full list is checked against the README (TestREADMEDocumentsEveryKey);
	// here only the shape: sorted, nested keys dotted, lists as one key.
	got := Keys()
	if !slices.IsSorted(got) {
		t.Errorf("Keys() not sorted: %q", got)
	}
	for _, k := range []string{"grpc_addr", "redis.url", "session.idle_timeout", "token.signing_keys", "routes"} {
		if !slices.Contains(got, k) {
			t.Errorf("Keys() lacks %q", k)
		}
	}
	// Two keys sharing a variable would make one of them unreachable.
	seen := map[string]string{}
	for _, k := range Keys() {
		if other, dup := seen[EnvName(k)]; dup {
			t.Errorf("%s and %s both map to %s", k, other, EnvName(k))
		}
		seen[EnvName(k)] = k
	}
	if got := EnvName("session.max_per_user"); got != "SESSIONGATE_SESSION_MAX_PER_USER" {
		t.Errorf("EnvName = %q", got)
	}
}

const fullYAML = `
grpc_addr: ":1001"
http_addr: ":1002"
admin_addr: "127.0.0.1:1003"
admin_token_file: /run/secrets/admin-token
login_url: https://login.example.com/start
log_level: DEBUG
redis:
  url: rediss://redis.internal:6380/1
  timeout: 250ms
  sentinel: {master_name: mymaster, addrs: ["s1:26379"], username: sentinel, password: pw}
  cluster_addrs: ["c1:6379"]
  username: sessiongate
  password_file: /run/secrets/redis-password
  tls: {enabled: true, ca_file: /ca.pem, cert_file: /c.pem, key_file: /k.pem, server_name: redis.internal}
cookie:
  name: sid
  same_site: strict
  domain: example.com
session:
  idle_timeout: 15m
  absolute_timeout: 8h
  max_per_user: 3
  on_limit: reject
  slide_interval: 30s
  binding:
    user_agent: true
    ip_prefix: {ipv4: 24, ipv6: 48}
    action: deny
  anomaly:
    max_rate: 600
    action: revoke
    country_change: deny
cache:
  enabled: false
  max_entries: 5000
envoy:
  dynamic_metadata: false
geoip:
  database: /geo/country.mmdb
client_ip:
  xff_trusted_hops: 1
revocations:
  token_file: /run/secrets/revocations
  max_subscribers: 50
  max_entries: 20000
events:
  max_len: 5000
  webhook:
    url: https://siem.example.com/hook
    secret_file: /run/secrets/webhook
token:
  header: X-User-JWT
  issuer: gate
  audience: apis
  ttl: 2m
  signing_keys: [/keys/b.pem, /keys/a.pem]
  key_ids:
    /keys/c.pem: "2026-12"
  verification_keys:
    - /keys/c.pem
  jwks_max_age: 0s
  exchange_ttl: 2m
  exchange_rate_limit: 5
  exchange_rate_burst: 10
  warn_bytes: 3000
  max_bytes: 6000
logout:
  path: /logout
  redirect_url: /bye
self_service:
  path_prefix: /account/sessions
  page_path: /account/devices
refresh:
  enabled: true
  path: /oauth/refresh
  ttl: 240h
  idle_timeout: 48h
  access_idle_timeout: 5m
  access_absolute_timeout: 30m
  reuse_grace: 5s
routes:
  - path_prefix: /public
    access: public
  - path_prefix: /admin
    methods: [get, Post]
    access: authenticated
    roles: [admin, ops]
    shadow: true
    claims: [email, plan]
    roles_in_token: matched
  - path_prefix: /
    access: deny
services:
  spiffe:
    "spiffe://cluster.local/ns/billing/sa/billing": billing
  spiffe_trust_domain: cluster.local
token_exchange:
  billing: [inventory, shipping]
csrf:
  enabled: false
  allowed_origins: ["HTTPS://WWW.Example.com:443/", "http://localhost:8080"]
  shadow: true
admin:
  rate_limit: 2.5
  rate_burst: 5
admin_tls:
  cert_file: /tls/admin.crt
  key_file: /tls/admin.key
  client_ca_file: /tls/clients-ca.pem
  client_cert_auth_only: true
`

func TestLoadFullFile(t *testing.T) {
	c := mustLoad(t, writeFile(t, fullYAML), nil)
	want := Config{
		GRPCAddr:       ":1001",
		HTTPAddr:       ":1002",
		AdminAddr:      "127.0.0.1:1003",
		AdminTokenFile: "/run/secrets/admin-token",
		LoginURL:       "https://login.example.com/start",
		LogLevel:       "debug",
		Redis: Redis{
			URL: "rediss://redis.internal:6380/1", Timeout: 250 * time.Millisecond,
			Sentinel:     RedisSentinel{MasterName: "mymaster", Addrs: []string{"s1:26379"}, Username: "sentinel", Password: "pw"},
			ClusterAddrs: []string{"c1:6379"},
			Username:     "sessiongate", PasswordFile: "/run/secrets/redis-password",
			TLS: RedisTLS{Enabled: true, CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "redis.internal"},
		},
		Cookie: Cookie{Name: "sid", SameSite: "Strict", Domain: "example.com"},
		Session: Session{IdleTimeout: 15 * time.Minute, AbsoluteTimeout: 8 * time.Hour, MaxPerUser: 3, OnLimit: "reject", SlideInterval: 30 * time.Second,
			Binding: SessionBinding{UserAgent: true, IPPrefix: IPPrefix{IPv4: 24, IPv6: 48}, Action: "deny"},
			Anomaly: SessionAnomaly{MaxRate: 600, Action: "revoke", CountryChange: "deny"}},
		Cache:       Cache{Enabled: false, MaxEntries: 5000},
		GeoIP:       GeoIP{Database: "/geo/country.mmdb"},
		ClientIP:    ClientIP{XFFTrustedHops: 1},
		Events:      Events{MaxLen: 5000, Webhook: EventsWebhook{URL: "https://siem.example.com/hook", SecretFile: "/run/secrets/webhook"}},
		Revocations: Revocations{TokenFile: "/run/secrets/revocations", MaxSubscribers: 50, MaxEntries: 20000},
		Token: Token{
			Header: "x-user-jwt", Issuer: "gate", Audience: "apis", TTL: 2 * time.Minute,
			SigningKeys:      []string{"/keys/b.pem", "/keys/a.pem"},
			VerificationKeys: []string{"/keys/c.pem"},
			KeyIDs:           map[string]string{"/keys/c.pem": "2026-12"},
			JWKSMaxAge:       0,
			ExchangeTTL:      2 * time.Minute, ExchangeRateLimit: 5, ExchangeRateBurst: 10,
			WarnBytes: 3000, MaxBytes: 6000,
		},
		Logout: Logout{Path: "/logout", RedirectURL: "/bye"},
		Refresh: Refresh{Enabled: true, Path: "/oauth/refresh", TTL: 240 * time.Hour, IdleTimeout: 48 * time.Hour,
			AccessIdleTimeout: 5 * time.Minute, AccessAbsoluteTimeout: 30 * time.Minute, ReuseGrace: 5 * time.Second},
		SelfService: SelfService{PathPrefix: "/account/sessions", PagePath: "/account/devices"},
		Routes: []Route{
			{PathPrefix: "/public", Access: "public"},
			{PathPrefix: "/admin", Methods: []string{"GET", "POST"}, Access: "authenticated", Roles: []string{"admin", "ops"}, Shadow: true,
				Claims: []string{"email", "plan"}, RolesInToken: "matched"},
			{PathPrefix: "/", Access: "deny"},
		},
		Services: Services{
			SPIFFE:            map[string]string{"spiffe://cluster.local/ns/billing/sa/billing": "billing"},
			SPIFFETrustDomain: "cluster.local",
		},
		TokenExchange: map[string][]string{"billing": {"inventory", "shipping"}},
		// Origins are kept as written; authz.New normalises them.
		CSRF:     CSRF{Enabled: false, AllowedOrigins: []string{"HTTPS://WWW.Example.com:443/", "http://localhost:8080"}, Shadow: true},
		Admin:    Admin{RateLimit: 2.5, RateBurst: 5},
		AdminTLS: AdminTLS{CertFile: "/tls/admin.crt", KeyFile: "/tls/admin.key", ClientCAFile: "/tls/clients-ca.pem", ClientCertAuthOnly: true},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Load = %+v\nwant   %+v", *c, want)
	}
	// Setting every key sets three Redis topologies at once; keep one.
	valid := *c
	valid.Redis.Sentinel, valid.Redis.ClusterAddrs = RedisSentinel{}, nil
	if err := valid.Validate(false); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Keeps this test honest when a field is added: fullYAML must set every
	// key to something other than its default.
	got, def := reflect.ValueOf(*c), reflect.ValueOf(Default())
	for _, k := range keys() {
		if reflect.DeepEqual(got.FieldByIndex(k.index).Interface(), def.FieldByIndex(k.index).Interface()) {
			t.Errorf("fullYAML leaves %s at its default", k.path)
		}
	}
}

func TestLoadPartialFileKeepsDefaults(t *testing.T) {
	c := mustLoad(t, writeFile(t, "redis:\n  url: redis://r:6379\n"), nil)
	want := Default()
	want.Redis.URL = "redis://r:6379"
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Load = %+v\nwant   %+v", *c, want)
	}
	// An empty file or one with only comments means "all defaults".
	for _, content := range []string{"", "# nothing\n", "~\n"} {
		if c := mustLoad(t, writeFile(t, content), nil); !reflect.DeepEqual(*c, Default()) {
			t.Errorf("Load(%q) = %+v, want defaults", content, *c)
		}
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		wants []string
	}{
		{"unknown top-level key", "grpc_adr: ':1'\n", []string{"config: grpc_adr: unknown key", "sessiongate.yaml:1"}},
		{"unknown nested key", "redis:\n  url: redis://r\n  tiemout: 1s\n", []string{"config: redis.tiemout: unknown key", "sessiongate.yaml:3"}},
		{"unknown key in a route", "routes:\n  - path_prefix: /\n    acess: deny\n", []string{"config: routes[0].acess: unknown key"}},
		{"unknown key in a merged mapping", "x: &x {bogus: 1}\n", []string{"config: x: unknown key"}},
		{"unknown key via merge", "redis:\n  <<: {bogus: 1}\n", []string{"bogus"}},
		{"all unknown keys at once", "a: 1\ncookie: {b: 2}\n", []string{"config: a: unknown key", "config: cookie.b: unknown key"}},
		{"bad duration", "redis:\n  timeout: abc\n", []string{"config: redis.timeout:", "sessiongate.yaml:2"}},
		{"integer duration", "token: {ttl: 300}\n", []string{"config: token.ttl:"}},
		{"bad int", "session: {max_per_user: many}\n", []string{"config: session.max_per_user:"}},
		{"fractional int", "session: {max_per_user: 1.5}\n", []string{"config: session.max_per_user: must be a whole number"}},
		{"scalar for a list", "token: {signing_keys: {a: b}}\n", []string{"config: token.signing_keys:"}},
		{"scalar for a section", "redis: 5\n", []string{"config: redis:"}},
		{"scalar for routes", "routes: everything\n", []string{"config: routes:"}},
		{"bad route field", "routes: [{path_prefix: /, roles: admin}]\n", []string{"config: routes[0].roles:"}},
		{"not a mapping", "- a\n", []string{"config: (top level):"}},
		{"syntax error", "redis: [\n", []string{"config: ", "sessiongate.yaml"}},
		{"two documents", "log_level: info\n---\nlog_level: debug\n", []string{"single YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tt.yaml), nil)
			wantErr(t, err, tt.wants...)
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), nil)
	wantErr(t, err, "config: ", "missing.yaml")
}

func TestLoadAliases(t *testing.T) {
	c := mustLoad(t, writeFile(t, "token:\n  signing_keys: &keys [/k/a.pem]\n  verification_keys: *keys\n"), nil)
	if !slices.Equal(c.Token.VerificationKeys, []string{"/k/a.pem"}) {
		t.Errorf("verification_keys = %q", c.Token.VerificationKeys)
	}
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		check   func(*Config) any // returns the value under test
		want    any
	}{
		{"string", []string{"SESSIONGATE_GRPC_ADDR=:7000"}, func(c *Config) any { return c.GRPCAddr }, ":7000"},
		{"string verbatim", []string{"SESSIONGATE_LOGIN_URL=/login #x"}, func(c *Config) any { return c.LoginURL }, "/login #x"},
		{"string with =", []string{"SESSIONGATE_REDIS_URL=redis://r/0?a=b"}, func(c *Config) any { return c.Redis.URL }, "redis://r/0?a=b"},
		{"empty string", []string{"SESSIONGATE_LOGOUT_PATH="}, func(c *Config) any { return c.Logout.Path }, ""},
		{"duration", []string{"SESSIONGATE_REDIS_TIMEOUT=2s"}, func(c *Config) any { return c.Redis.Timeout }, 2 * time.Second},
		{"int", []string{"SESSIONGATE_SESSION_MAX_PER_USER=5"}, func(c *Config) any { return c.Session.MaxPerUser }, 5},
		{"list", []string{"SESSIONGATE_TOKEN_SIGNING_KEYS=/k/a.pem, /k/b.pem,"}, func(c *Config) any { return c.Token.SigningKeys }, []string{"/k/a.pem", "/k/b.pem"}},
		{"empty list", []string{"SESSIONGATE_TOKEN_VERIFICATION_KEYS="}, func(c *Config) any { return c.Token.VerificationKeys }, []string(nil)},
		{"normalised", []string{"SESSIONGATE_COOKIE_SAME_SITE=none"}, func(c *Config) any { return c.Cookie.SameSite }, "None"},
		{
			"routes", []string{`SESSIONGATE_ROUTES=[{path_prefix: /api, methods: [get], access: authenticated, roles: [a]}, {"path_prefix": "/", "access": "deny"}]`},
			func(c *Config) any { return c.Routes },
			[]Route{{PathPrefix: "/api", Methods: []string{"GET"}, Access: "authenticated", Roles: []string{"a"}}, {PathPrefix: "/", Access: "deny"}},
		},
		{"empty routes", []string{"SESSIONGATE_ROUTES=[]"}, func(c *Config) any { return c.Routes }, []Route{}},
		{"last one wins", []string{"SESSIONGATE_LOG_LEVEL=warn", "SESSIONGATE_LOG_LEVEL=error"}, func(c *Config) any { return c.LogLevel }, "error"},
		{"other variables ignored", []string{"PATH=/bin", "SESSIONGATEWAY=1", "NOEQUALS"}, func(c *Config) any { return *c }, Default()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, "", tt.environ)
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestLoadEnvOverridesFile(t *testing.T) {
	path := writeFile(t, "redis: {url: redis://file, timeout: 1s}\nroutes: [{path_prefix: /, access: deny}]\n")
	c := mustLoad(t, path, []string{"SESSIONGATE_REDIS_TIMEOUT=3s", "SESSIONGATE_ROUTES=[{path_prefix: /x, access: public}]"})
	if c.Redis.URL != "redis://file" || c.Redis.Timeout != 3*time.Second {
		t.Errorf("redis = %+v, want the file's url and the environment's timeout", c.Redis)
	}
	if want := []Route{{PathPrefix: "/x", Access: "public"}}; !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes = %+v, want %+v", c.Routes, want)
	}
}

func TestLoadEnvErrors(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		wants   []string
	}{
		{"unknown variable", []string{"SESSIONGATE_REDIS_TIMOUT=1s"}, []string{"SESSIONGATE_REDIS_TIMOUT", "names no config key"}},
		{"section is not a key", []string{"SESSIONGATE_REDIS=x"}, []string{"SESSIONGATE_REDIS "}},
		{"lower-case is not a key", []string{"SESSIONGATE_log_level=debug"}, []string{"SESSIONGATE_log_level"}},
		{"bad duration", []string{"SESSIONGATE_REDIS_TIMEOUT=abc"}, []string{"config: redis.timeout:", "SESSIONGATE_REDIS_TIMEOUT"}},
		{"bad int", []string{"SESSIONGATE_SESSION_MAX_PER_USER=1.5"}, []string{"config: session.max_per_user:", "SESSIONGATE_SESSION_MAX_PER_USER"}},
		{"empty int", []string{"SESSIONGATE_SESSION_MAX_PER_USER="}, []string{"config: session.max_per_user:", "SESSIONGATE_SESSION_MAX_PER_USER is empty"}},
		{"routes not a list", []string{"SESSIONGATE_ROUTES=/api"}, []string{"config: routes:", "SESSIONGATE_ROUTES"}},
		{"routes unknown key", []string{"SESSIONGATE_ROUTES=[{path: /}]"}, []string{"config: routes[0].path: unknown key", "SESSIONGATE_ROUTES"}},
		{"routes syntax", []string{"SESSIONGATE_ROUTES=[{"}, []string{"config: SESSIONGATE_ROUTES:"}},
		{"all reported", []string{"SESSIONGATE_A=1", "SESSIONGATE_TOKEN_TTL=x"}, []string{"SESSIONGATE_A", "config: token.ttl:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("", tt.environ)
			wantErr(t, err, tt.wants...)
		})
	}
}

func TestLoadNormalises(t *testing.T) {
	c := mustLoad(t, writeFile(t, "log_level: Warn\ncookie: {same_site: LAX}\ntoken: {header: X-Jwt}\nroutes: [{path_prefix: /, methods: [delete], access: deny}]\n"), nil)
	if c.LogLevel != "warn" || c.Cookie.SameSite != "Lax" || c.Token.Header != "x-jwt" || c.Routes[0].Methods[0] != "DELETE" {
		t.Errorf("not normalised: %+v", *c)
	}
	// Normalisation is not validation: nonsense survives for Validate to report.
	c = mustLoad(t, "", []string{"SESSIONGATE_COOKIE_SAME_SITE=sometimes"})
	if c.Cookie.SameSite != "sometimes" {
		t.Errorf("same_site = %q", c.Cookie.SameSite)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(fullYAML))
	f.Add([]byte(""))
	f.Add([]byte("redis: {timeout: abc}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("x: &x {<<: *x}\nredis: {<<: *x}\n"))
	f.Add([]byte("routes: [{path_prefix: /, methods: [get], access: authenticated, roles: [a]}, 5, ~]\n"))
	f.Add([]byte("session: !!binary aGVsbG8=\n"))
	f.Add([]byte("routes: [{path_prefix: /, access: authenticated, roles: [a], claims: [email, sub, \"\"], roles_in_token: matched}, {path_prefix: /b, access: authenticated, claims: []}]\ntoken: {warn_bytes: 9000, max_bytes: 1}\n"))
	f.Add([]byte("---\n...\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := decodeYAML(data, &c, "", "fuzz"); err == nil {
			c.normalize()
			_ = c.Validate(false)
		}
		_, _ = Load("", []string{"SESSIONGATE_ROUTES=" + string(data)})
	})
}
