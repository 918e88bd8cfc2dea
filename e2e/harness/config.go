package harness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
)

// FreePorts reserves n distinct free TCP ports on 127.0.0.1. The listeners
// are held until all n are chosen, so the same port is never returned twice;
// another process could still take one before the child binds it, which on a
// test machine is rare enough to accept.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Ports are the loopback ports of one stack.
type Ports struct {
	Redis                          int
	SGGRPC, SGHTTP, SGAdmin        int
	Login, Upstream                int
	EnvoyEdge, EnvoyHop, EnvoyAdmn int
}

func newPorts() (Ports, error) {
	p, err := FreePorts(9)
	if err != nil {
		return Ports{}, err
	}
	return Ports{Redis: p[0], SGGRPC: p[1], SGHTTP: p[2], SGAdmin: p[3], Login: p[4], Upstream: p[5], EnvoyEdge: p[6], EnvoyHop: p[7], EnvoyAdmn: p[8]}, nil
}

// EnvoyVars are the template variables for envoy/envoy.yaml.tmpl in the
// local harness. The Compose stack sets the same names in
// e2e/docker-compose.yml.
func EnvoyVars(p Ports, accessLog string) map[string]string {
	itoa := strconv.Itoa
	return map[string]string{
		"ENVOY_ADMIN_ADDRESS":   "127.0.0.1",
		"ENVOY_ADMIN_PORT":      itoa(p.EnvoyAdmn),
		"EDGE_ADDRESS":          "127.0.0.1",
		"EDGE_PORT":             itoa(p.EnvoyEdge),
		"HOP_PORT":              itoa(p.EnvoyHop),
		"SESSIONGATE_HOST":      "127.0.0.1",
		"SESSIONGATE_GRPC_PORT": itoa(p.SGGRPC),
		"SESSIONGATE_HTTP_PORT": itoa(p.SGHTTP),
		"LOGIN_HOST":            "127.0.0.1",
		"LOGIN_PORT":            itoa(p.Login),
		"UPSTREAM_HOST":         "127.0.0.1",
		"UPSTREAM_PORT":         itoa(p.Upstream),
		"JWT_ISSUER":            Issuer,
		// Short, so a rotated key reaches jwt_authn within a test's
		// patience; Compose uses a production-like value.
		"JWKS_CACHE_DURATION": JWKSCacheDuration.String(),
		"ACCESS_LOG_PATH":     accessLog,
	}
}

// RenderEnvoyConfig renders the template at tmpl with vars into dst.
func RenderEnvoyConfig(tmpl, dst string, vars map[string]string) error {
	out, err := envtmpl.RenderFile(tmpl, vars)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, []byte(out), 0o644)
}

// How long each verifier of the stack may keep a JWKS: Envoy jwt_authn's
// cache_duration and the upstream's periodic keyfunc refresh
// (-jwks-refresh). A key published this long (plus a fetch) ago is known
// everywhere; the rotation runbook waits on them.
const (
	JWKSCacheDuration   = time.Second
	UpstreamJWKSRefresh = time.Second
)

// Issuer and the audiences the stack is configured with.
const (
	Issuer          = "sessiongate"
	Audience        = "internal"
	OrdersAudience  = "orders"
	TokenHeader     = "x-internal-jwt"
	CookieName      = "__Host-sid"
	LoginPath       = "/login"
	LogoutPath      = "/auth/logout"
	LogoutRedirect  = "/login"
	RedisTimeoutStr = "100ms"
)

// SGConfig is the sessiongate configuration file the harness writes. It
// mirrors the documented YAML keys rather than importing pkg/config, so the
// tests exercise the file format users write.
type SGConfig struct {
	GRPCAddr       string     `yaml:"grpc_addr"`
	HTTPAddr       string     `yaml:"http_addr"`
	AdminAddr      string     `yaml:"admin_addr"`
	AdminTokenFile string     `yaml:"admin_token_file"`
	LoginURL       string     `yaml:"login_url"`
	LogLevel       string     `yaml:"log_level"`
	Redis          sgRedis    `yaml:"redis"`
	Cookie         sgCookie   `yaml:"cookie"`
	Session        sgSession  `yaml:"session"`
	Token          sgToken    `yaml:"token"`
	Logout         sgLogout   `yaml:"logout"`
	Routes         []SGRoute  `yaml:"routes"`
	Services       SGServices `yaml:"services,omitempty"`
	// TokenExchange is token_exchange: service → audiences it may obtain.
	TokenExchange map[string][]string `yaml:"token_exchange,omitempty"`
	Cache         *SGCache            `yaml:"cache,omitempty"`
	Envoy         *SGEnvoy            `yaml:"envoy,omitempty"`
	ClientIP      *SGClientIP         `yaml:"client_ip,omitempty"`
	Refresh       *SGRefresh          `yaml:"refresh,omitempty"`
}

// SGRefresh is the refresh section; nil keeps sessiongate's default (off).
type SGRefresh struct {
	Enabled    bool   `yaml:"enabled"`
	ReuseGrace string `yaml:"reuse_grace,omitempty"`
}

// SGCache is the cache section; nil keeps sessiongate's default (on).
type SGCache struct {
	Enabled bool `yaml:"enabled"`
}

// SGEnvoy is the envoy section; nil keeps sessiongate's defaults.
type SGEnvoy struct {
	DynamicMetadata bool `yaml:"dynamic_metadata"`
}

// SGServices is the services section: mTLS principals mapped to services.
type SGServices struct {
	SPIFFE            map[string]string `yaml:"spiffe,omitempty"`
	SPIFFETrustDomain string            `yaml:"spiffe_trust_domain,omitempty"`
}

type sgRedis struct {
	URL     string `yaml:"url"`
	Timeout string `yaml:"timeout"`
}

type sgCookie struct {
	Name     string `yaml:"name"`
	SameSite string `yaml:"same_site"`
}

type sgSession struct {
	IdleTimeout     string `yaml:"idle_timeout"`
	AbsoluteTimeout string `yaml:"absolute_timeout"`
	MaxPerUser      int    `yaml:"max_per_user"`
	OnLimit         string `yaml:"on_limit"`

	Binding *SGBinding `yaml:"binding,omitempty"`
	Anomaly *SGAnomaly `yaml:"anomaly,omitempty"`
}

// SGAnomaly is session.anomaly.
type SGAnomaly struct {
	MaxRate int    `yaml:"max_rate"`
	Action  string `yaml:"action"`
}

// SGBinding is session.binding.
type SGBinding struct {
	UserAgent bool       `yaml:"user_agent"`
	IPPrefix  SGIPPrefix `yaml:"ip_prefix"`
	Action    string     `yaml:"action"`
}

// SGIPPrefix is session.binding.ip_prefix.
type SGIPPrefix struct {
	IPv4 int `yaml:"ipv4"`
	IPv6 int `yaml:"ipv6"`
}

// SGClientIP is client_ip.
type SGClientIP struct {
	XFFTrustedHops int `yaml:"xff_trusted_hops"`
}

type sgToken struct {
	Header           string   `yaml:"header"`
	Issuer           string   `yaml:"issuer"`
	Audience         string   `yaml:"audience"`
	TTL              string   `yaml:"ttl"`
	SigningKeys      []string `yaml:"signing_keys"`
	VerificationKeys []string `yaml:"verification_keys,omitempty"`
	JWKSMaxAge       string   `yaml:"jwks_max_age,omitempty"`
	WarnBytes        int      `yaml:"warn_bytes,omitempty"`
	MaxBytes         int      `yaml:"max_bytes,omitempty"`
}

type sgLogout struct {
	Path        string `yaml:"path"`
	RedirectURL string `yaml:"redirect_url"`
}

// SGRoute is one entry of sessiongate's routes.
type SGRoute struct {
	PathPrefix string   `yaml:"path_prefix"`
	Methods    []string `yaml:"methods,omitempty"`
	Access     string   `yaml:"access"`
	Roles      []string `yaml:"roles,omitempty"`
	Services   []string `yaml:"services,omitempty"`
	// Claims and RolesInToken shape the rule's tokens; an empty Claims is
	// left out (all claims): claims: [] is tested in pkg/config.
	Claims       []string `yaml:"claims,omitempty"`
	RolesInToken string   `yaml:"roles_in_token,omitempty"`
}

// Routes of the harness configuration (the Compose configuration has the
// same ones, in e2e/compose/sessiongate.yaml).
var defaultRoutes = []SGRoute{
	// Envoy marks /public/ public itself (context_extensions access:
	// public); /docs/ is public by sessiongate's own rule, so both ways of
	// being public are exercised.
	{PathPrefix: "/public/", Access: "public"},
	{PathPrefix: "/docs/", Access: "public"},
	{PathPrefix: "/deny/", Access: "deny"},
	{PathPrefix: "/admin/", Access: "authenticated", Roles: []string{"admin"}},
}

func defaultSGConfig(p Ports, dir, signingKey string) SGConfig {
	return SGConfig{
		GRPCAddr:       fmt.Sprintf("127.0.0.1:%d", p.SGGRPC),
		HTTPAddr:       fmt.Sprintf("127.0.0.1:%d", p.SGHTTP),
		AdminAddr:      fmt.Sprintf("127.0.0.1:%d", p.SGAdmin),
		AdminTokenFile: filepath.Join(dir, "admin-token"),
		LoginURL:       LoginPath,
		LogLevel:       "debug",
		Redis:          sgRedis{URL: fmt.Sprintf("redis://127.0.0.1:%d/0", p.Redis), Timeout: RedisTimeoutStr},
		Cookie:         sgCookie{Name: CookieName, SameSite: "Lax"},
		Session:        sgSession{IdleTimeout: "30m", AbsoluteTimeout: "12h", MaxPerUser: 0, OnLimit: "evict_oldest"},
		Token:          sgToken{Header: TokenHeader, Issuer: Issuer, Audience: Audience, TTL: "5m", SigningKeys: []string{signingKey}},
		Logout:         sgLogout{Path: LogoutPath, RedirectURL: LogoutRedirect},
		Routes:         defaultRoutes,
	}
}

func writeYAML(path string, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
