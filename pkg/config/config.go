// Package config holds the configuration of sessiongate, the Envoy ext_authz
// server that keeps an opaque session ID in the browser and hands the
// upstream services a short-lived signed JWT instead.
//
// A Config is built in three steps: Default, then an optional YAML file, then
// SESSIONGATE_* environment variables (see Load). Validate is a separate step
// so that a caller can decide whether it runs in dev mode, where the secrets
// (Redis, signing keys, admin token) may be missing.
package config

import (
	"strings"
	"time"
)

// EnvPrefix starts the name of every environment variable that overrides a
// key; see EnvName.
const EnvPrefix = "SESSIONGATE_"

// Config is the whole configuration. The yaml tags are the single source of
// the key names: the file format, the environment variable names (EnvName)
// and the documented key list (Keys) are all derived from them.
type Config struct {
	GRPCAddr       string `yaml:"grpc_addr"`
	HTTPAddr       string `yaml:"http_addr"`
	AdminAddr      string `yaml:"admin_addr"`
	AdminTokenFile string `yaml:"admin_token_file"`
	LoginURL       string `yaml:"login_url"`
	LogLevel       string `yaml:"log_level"`

	Redis   Redis   `yaml:"redis"`
	Cache   Cache   `yaml:"cache"`
	Envoy   Envoy   `yaml:"envoy"`
	Cookie  Cookie  `yaml:"cookie"`
	Session Session `yaml:"session"`
	Token   Token   `yaml:"token"`
	Logout  Logout  `yaml:"logout"`
	Refresh Refresh `yaml:"refresh"` // refresh.go
	Routes  []Route `yaml:"routes"`

	SelfService SelfService `yaml:"self_service"` // selfservice.go

	Services Services `yaml:"services"` // services.go
	// TokenExchange says which audiences each service may obtain for a
	// user by token exchange (services.go).
	TokenExchange map[string][]string `yaml:"token_exchange"`

	CSRF     CSRF     `yaml:"csrf"`      // security.go
	ClientIP ClientIP `yaml:"client_ip"` // binding.go
	Events   Events   `yaml:"events"`    // events.go
	// Revocations is the revocation feed for verifiers (revocations.go).
	Revocations Revocations `yaml:"revocations"`
	GeoIP       GeoIP       `yaml:"geoip"`     // anomaly.go
	Admin       Admin       `yaml:"admin"`     // security.go
	AdminTLS    AdminTLS    `yaml:"admin_tls"` // security.go
}

// Redis is where sessions live: exactly one of URL (standalone), Sentinel
// or ClusterAddrs names the topology.
type Redis struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"`
	// Sentinel finds the master through Redis Sentinel.
	Sentinel RedisSentinel `yaml:"sentinel"`
	// ClusterAddrs are seed nodes of a Redis Cluster; one is enough, the
	// rest of the cluster is discovered from it.
	ClusterAddrs []string `yaml:"cluster_addrs"`
	// Username and PasswordFile authenticate to the data nodes (ACL user)
	// when the URL does not carry them, as with Sentinel and Cluster, which
	// have no URL. The file keeps the password out of the config and the
	// environment, like the other secrets.
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	TLS          RedisTLS `yaml:"tls"`
}

// RedisSentinel names a master monitored by Redis Sentinel.
type RedisSentinel struct {
	MasterName string   `yaml:"master_name"`
	Addrs      []string `yaml:"addrs"`
	// Username and Password authenticate to the sentinels themselves, which
	// have their own ACLs, separate from the data nodes'.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// RedisTLS configures TLS to Redis (and to the sentinels). A rediss:// URL
// turns it on; so does Enabled or any file below, which is how Sentinel and
// Cluster, without a URL, ask for it.
type RedisTLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile verifies the server; empty = the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for servers that
	// require one (tls-auth-clients).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name expected in every node's certificate; empty =
	// the host each node is dialled by.
	ServerName string `yaml:"server_name"`
}

// Configured reports whether any Redis topology is set. Without one (only
// allowed in dev mode) sessions are kept in memory.
func (r Redis) Configured() bool {
	return r.URL != "" || r.Sentinel.MasterName != "" || len(r.Sentinel.Addrs) > 0 || len(r.ClusterAddrs) > 0
}

// TLSOn reports whether connections to Redis use TLS. The session client
// decides the same from the options it is given; a test in cmd/sessiongate
// holds the two to one answer for every combination of keys.
func (r Redis) TLSOn() bool {
	t := r.TLS
	return strings.HasPrefix(strings.ToLower(r.URL), "rediss://") || t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Cache is the local session cache in front of Redis, kept exact by Redis's
// invalidation messages. It has no effect with the in-memory store.
type Cache struct {
	Enabled bool `yaml:"enabled"`
	// MaxEntries bounds the cached session records; beyond it an arbitrary
	// one is evicted.
	MaxEntries int `yaml:"max_entries"`
}

// Envoy shapes the allow answer for what the Envoy in front reads of it.
type Envoy struct {
	// DynamicMetadata puts the subject and the session (or credential) ref
	// in the allow answer's dynamic_metadata, for Envoy's access log and
	// filters; off, sessiongate does not marshal it on every answer, Envoy
	// has less to decode, and %DYNAMIC_METADATA(envoy.filters.http.ext_authz:...)%,
	// the debug check log's subject and session_ref and the trace span's
	// session_ref are empty.
	DynamicMetadata bool `yaml:"dynamic_metadata"`
}

// Cookie describes the browser cookie that carries the opaque session ID.
type Cookie struct {
	Name     string `yaml:"name"`
	SameSite string `yaml:"same_site"`
	Domain   string `yaml:"domain"`
}

// Session bounds how long and how many sessions a user may hold.
type Session struct {
	IdleTimeout     time.Duration `yaml:"idle_timeout"`
	AbsoluteTimeout time.Duration `yaml:"absolute_timeout"`
	MaxPerUser      int           `yaml:"max_per_user"`
	OnLimit         string        `yaml:"on_limit"`
	// SlideInterval is how often at most, with the cache on, a session's
	// idle expiry is slid in Redis; 0 = 1 % of the idle timeout, at least
	// 1 s. The idle expiry Redis enforces lags by at most this much.
	SlideInterval time.Duration `yaml:"slide_interval"`

	Binding SessionBinding `yaml:"binding"` // binding.go
	Anomaly SessionAnomaly `yaml:"anomaly"` // anomaly.go
}

// Token describes the internal JWT handed to upstream services.
type Token struct {
	Header   string        `yaml:"header"`
	Issuer   string        `yaml:"issuer"`
	Audience string        `yaml:"audience"`
	TTL      time.Duration `yaml:"ttl"`
	// SigningKeys are PEM file paths; the first one signs, the rest stay in
	// the JWKS so that tokens signed before a rotation still verify.
	SigningKeys []string `yaml:"signing_keys"`
	// VerificationKeys are published in the JWKS but never sign: this is how
	// a new key is announced before it becomes active, or an old one kept
	// after it was retired.
	VerificationKeys []string `yaml:"verification_keys"`
	// KeyIDs names the kid of some key files (path → kid); the others get
	// their RFC 7638 thumbprint.
	KeyIDs     map[string]string `yaml:"key_ids"`
	JWKSMaxAge time.Duration     `yaml:"jwks_max_age"`
	// ExchangeTTL bounds the tokens POST /oauth2/token issues.
	ExchangeTTL time.Duration `yaml:"exchange_ttl"`
	// ExchangeRateLimit is the token requests per second per client
	// service, with bursts of ExchangeRateBurst; 0 = off.
	ExchangeRateLimit float64 `yaml:"exchange_rate_limit"`
	ExchangeRateBurst int     `yaml:"exchange_rate_burst"`
	// WarnBytes logs a session token larger than this many bytes, once per
	// session version and route variant; MaxBytes refuses to issue one
	// (403 token_too_large). 0 turns either off.
	WarnBytes int `yaml:"warn_bytes"`
	MaxBytes  int `yaml:"max_bytes"`
}

// Logout configures the logout endpoint. An empty Path disables it; an empty
// RedirectURL makes it answer 204 instead of redirecting.
type Logout struct {
	Path        string `yaml:"path"`
	RedirectURL string `yaml:"redirect_url"`
}

// AccessLevels are the values of routes[].access. pkg/authz parses them
// (authz.ParseAccess); a test in cmd/sessiongate holds the two lists equal.
var AccessLevels = []string{"public", "authenticated", "internal", "deny"}

// Route decides the access rule for requests whose path starts with
// PathPrefix and, if Methods is not empty, whose method is one of Methods.
type Route struct {
	PathPrefix string   `yaml:"path_prefix"`
	Methods    []string `yaml:"methods"`
	Access     string   `yaml:"access"`
	// Roles lets the request through if the caller (session or service)
	// has any one of them.
	Roles []string `yaml:"roles"`
	// Services names the services a rule admits: on an internal rule, only
	// these (empty: every registered service); on an authenticated rule,
	// these besides users.
	Services []string `yaml:"services"`
	// Shadow evaluates the rule and counts what it would decide, but decides
	// every request as if the rule were absent: for rolling a rule out.
	Shadow bool `yaml:"shadow"`
	// Claims, when set, are the only custom claims the rule's session tokens
	// carry (claims: [] carries none); unset carries all of them. The claims
	// sessiongate owns (sub, sid, roles, tenant, ...) are always carried.
	Claims []string `yaml:"claims"`
	// RolesInToken is all (also when empty) or matched: the token carries
	// only the caller's roles that Roles names.
	RolesInToken string `yaml:"roles_in_token"`
}

// RolesInTokenValues are the values of routes[].roles_in_token; a test in
// cmd/sessiongate holds them equal to what pkg/authz parses.
var RolesInTokenValues = []string{"all", "matched"}

// Default returns the configuration used for every key that neither the file
// nor the environment sets.
func Default() Config {
	return Config{
		GRPCAddr: ":9001",
		HTTPAddr: ":9002",
		// The admin API can revoke sessions: keep it off the network unless
		// someone asks for it.
		AdminAddr: "127.0.0.1:9003",
		LogLevel:  "info",
		Redis:     Redis{Timeout: 100 * time.Millisecond},
		Cache:     Cache{Enabled: true, MaxEntries: 100_000},
		Envoy:     Envoy{DynamicMetadata: true},
		Cookie: Cookie{
			// __Host- makes the browser insist on Secure, Path=/ and no
			// Domain, so a sibling subdomain cannot plant a session cookie.
			Name:     "__Host-sid",
			SameSite: "Lax",
		},
		Session: Session{
			IdleTimeout:     30 * time.Minute,
			AbsoluteTimeout: 12 * time.Hour,
			OnLimit:         "evict_oldest",
			Binding:         SessionBinding{Action: "log"},
			Anomaly:         SessionAnomaly{Action: "log"},
		},
		Token: Token{
			Header:     "x-internal-jwt",
			Issuer:     "sessiongate",
			Audience:   "internal",
			TTL:        5 * time.Minute,
			JWKSMaxAge: 5 * time.Minute,

			ExchangeTTL:       5 * time.Minute,
			ExchangeRateLimit: 50,
			ExchangeRateBurst: 100,

			WarnBytes: 4096,
			MaxBytes:  8192,
		},
		Logout:      Logout{Path: "/auth/logout"},
		Refresh:     defaultRefresh(),
		SelfService: SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices"},
		CSRF:        CSRF{Enabled: true},
		Events:      Events{MaxLen: 100_000},
		Revocations: Revocations{MaxSubscribers: 256, MaxEntries: 100_000},
		Admin:       Admin{RateLimit: 100, RateBurst: 200},
	}
}
