package config

import (
	"fmt"
	"math"
	"net/url"
	"strings"
)

// CSRF configures the cross-site request forgery check: a state-changing
// request (any method but GET, HEAD, OPTIONS, TRACE) authenticated by the
// session cookie must come from an allowed origin. Bearer-token requests are
// exempt: a browser never attaches them on its own.
type CSRF struct {
	Enabled bool `yaml:"enabled"`
	// AllowedOrigins are scheme://host[:port] origins whose pages may send
	// such requests; empty means the request's own origin only.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// Shadow evaluates the check and counts what it would decide without
	// refusing anything: for turning CSRF on without breaking traffic.
	Shadow bool `yaml:"shadow"`
}

// Admin hardens the admin API beyond its bearer tokens.
type Admin struct {
	// RateLimit is requests per second per source address (IPv6 per /64),
	// RateBurst the bucket size; 0 disables the limit.
	RateLimit float64 `yaml:"rate_limit"`
	RateBurst int     `yaml:"rate_burst"`
}

// AdminTLS serves the admin API over TLS and, with ClientCAFile, requires
// client certificates that chain to it (mutual TLS).
type AdminTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientCertAuthOnly lets a verified client certificate stand in for a
	// bearer token. Without it both are required.
	ClientCertAuthOnly bool `yaml:"client_cert_auth_only"`
}

// On reports whether the admin API is served over TLS: a certificate is
// configured (Validate requires its key with it).
func (t AdminTLS) On() bool { return t.CertFile != "" }

func (c *Config) validateSecurity(v *validator) {
	for i, o := range c.CSRF.AllowedOrigins {
		v.check(fmt.Sprintf("csrf.allowed_origins[%d]", i), checkOrigin(o))
	}

	switch r := c.Admin.RateLimit; {
	case math.IsNaN(r) || math.IsInf(r, 0) || r < 0:
		v.fail("admin.rate_limit", "must be a number >= 0 (0 disables the limit), got %v", r)
	case r > 1e6:
		v.fail("admin.rate_limit", "must be <= 1000000 requests per second, got %v", r)
	}
	if c.Admin.RateBurst < 0 {
		v.fail("admin.rate_burst", "must be >= 0, got %d", c.Admin.RateBurst)
	}

	t := c.AdminTLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.fail("admin_tls.key_file", "admin_tls.cert_file and admin_tls.key_file go together")
	}
	if t.ClientCAFile != "" && !t.On() {
		v.fail("admin_tls.client_ca_file", "needs admin_tls.cert_file and admin_tls.key_file: client certificates are a TLS feature")
	}
	if t.ClientCertAuthOnly && t.ClientCAFile == "" {
		// Without a client CA no certificate is ever verified, so the API
		// would accept nothing, or worse, be mistaken for protected.
		v.fail("admin_tls.client_cert_auth_only", "needs admin_tls.client_ca_file")
	}
}

// checkOrigin accepts what a browser sends in Origin: scheme://host[:port],
// http or https, nothing after the host. "*" and "null" are refused: the
// first would switch the check off, the second names every sandboxed page.
// Case, surrounding space, trailing slashes and a default port are allowed:
// authz.NormalizeOrigin, the one rule for them, removes them.
func checkOrigin(o string) error {
	u, err := url.Parse(strings.TrimSpace(o))
	switch {
	case err != nil:
	case u.Scheme != "http" && u.Scheme != "https":
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
	case strings.Trim(u.Path, "/") != "":
	default:
		return nil
	}
	return fmt.Errorf(`must be an origin like "https://app.example.com" (scheme, host, optional port), got %q`, o)
}
