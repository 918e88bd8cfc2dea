package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// Validate reports every problem in c at once, so that a broken deployment
// is fixed in one round rather than one error per restart. With dev set, the
// secrets (redis.url, token.signing_keys, admin_token_file) may be empty so
// that sessiongate can run locally without them.
func (c *Config) Validate(dev bool) error {
	v := &validator{}

	v.check("grpc_addr", checkAddr(c.GRPCAddr))
	v.check("http_addr", checkAddr(c.HTTPAddr))
	v.check("admin_addr", checkAddr(c.AdminAddr))
	// With client_cert_auth_only the client CA is the credential; tokens
	// are then optional.
	if c.AdminTokenFile == "" && !dev && !c.AdminTLS.ClientCertAuthOnly {
		v.fail("admin_token_file", "required outside dev mode (unless admin_tls.client_cert_auth_only)")
	}
	v.check("login_url", checkRedirect(c.LoginURL))
	v.oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error")

	c.Redis.validate(v, dev)

	v.check("cookie.name", checkToken(c.Cookie.Name))
	v.oneOf("cookie.same_site", c.Cookie.SameSite, "Lax", "Strict", "None")
	// Browsers reject a __Host- cookie that has a Domain, so the session
	// would silently never stick. Newer browsers match the prefix
	// case-insensitively, hence EqualFold.
	if c.Cookie.Domain != "" && len(c.Cookie.Name) >= 7 && strings.EqualFold(c.Cookie.Name[:7], "__Host-") {
		v.fail("cookie.domain", "must be empty when cookie.name starts with __Host-, got %q", c.Cookie.Domain)
	}

	v.positive("session.idle_timeout", c.Session.IdleTimeout)
	if c.Session.AbsoluteTimeout < c.Session.IdleTimeout {
		v.fail("session.absolute_timeout", "must be >= session.idle_timeout (%s), got %q", c.Session.IdleTimeout, c.Session.AbsoluteTimeout)
	}
	v.atMost("session.absolute_timeout", c.Session.AbsoluteTimeout, 30*24*time.Hour)
	if c.Session.MaxPerUser < 0 {
		v.fail("session.max_per_user", "must be >= 0, got %d", c.Session.MaxPerUser)
	}
	v.oneOf("session.on_limit", c.Session.OnLimit, "evict_oldest", "reject")
	if c.Session.SlideInterval < 0 {
		v.fail("session.slide_interval", "must be >= 0 (0 = 1%% of session.idle_timeout, at least 1s), got %q", c.Session.SlideInterval)
	} else if c.Session.IdleTimeout > 0 && c.Session.SlideInterval > c.Session.IdleTimeout/4 {
		v.fail("session.slide_interval", "must be at most a quarter of session.idle_timeout (%s), got %q", c.Session.IdleTimeout, c.Session.SlideInterval)
	}
	if c.Cache.Enabled && c.Cache.MaxEntries < 1 {
		v.fail("cache.max_entries", "must be >= 1 with cache.enabled, got %d", c.Cache.MaxEntries)
	}

	v.check("token.header", checkTokenHeader(c.Token.Header))
	v.required("token.issuer", c.Token.Issuer)
	v.required("token.audience", c.Token.Audience)
	v.atLeast("token.ttl", c.Token.TTL, 10*time.Second)
	v.atMost("token.ttl", c.Token.TTL, time.Hour)
	if len(c.Token.SigningKeys) == 0 && !dev {
		v.fail("token.signing_keys", "required outside dev mode")
	}
	for i, p := range c.Token.SigningKeys {
		v.required(fmt.Sprintf("token.signing_keys[%d]", i), p)
	}
	for i, p := range c.Token.VerificationKeys {
		v.required(fmt.Sprintf("token.verification_keys[%d]", i), p)
	}
	// A kid for a file that is not configured is almost certainly a typo in
	// a path; a duplicate kid would make verification ambiguous.
	files := map[string]bool{}
	for _, p := range append(append([]string(nil), c.Token.SigningKeys...), c.Token.VerificationKeys...) {
		files[p] = true
	}
	seen := map[string]bool{}
	for path, kid := range c.Token.KeyIDs {
		switch {
		case !files[path]:
			v.fail("token.key_ids", "%q is not one of token.signing_keys or token.verification_keys", path)
		case kid == "" || len(kid) > 128 || strings.ContainsAny(kid, "\"\\\x00\r\n"):
			v.fail("token.key_ids", "kid for %q must be 1-128 characters without quotes, backslashes or control characters", path)
		case seen[kid]:
			v.fail("token.key_ids", "kid %q used twice", kid)
		}
		seen[kid] = true
	}
	v.atLeast("token.jwks_max_age", c.Token.JWKSMaxAge, 0)
	c.Token.validateSize(v)

	if c.Logout.Path != "" && !strings.HasPrefix(c.Logout.Path, "/") {
		v.fail("logout.path", `must be empty or start with "/", got %q`, c.Logout.Path)
	}
	v.check("logout.redirect_url", checkRedirect(c.Logout.RedirectURL))

	for i, r := range c.Routes {
		r.validate(v, fmt.Sprintf("routes[%d]", i))
	}
	c.validateSecurity(v)
	c.validateSelfService(v)
	c.Services.validate(v)
	c.validateExchange(v)
	c.validateBinding(v)
	c.validateAnomaly(v)
	c.validateEvents(v)
	c.validateRefresh(v)
	c.validateRevocations(v)
	return errors.Join(v.errs...)
}

func (r Route) validate(v *validator, path string) {
	if !strings.HasPrefix(r.PathPrefix, "/") {
		v.fail(path+".path_prefix", `must start with "/", got %q`, r.PathPrefix)
	}
	for j, m := range r.Methods {
		v.check(fmt.Sprintf("%s.methods[%d]", path, j), checkToken(m))
	}
	v.oneOf(path+".access", r.Access, AccessLevels...)
	// Roles or services on a public or deny route would read as a
	// restriction that is never enforced.
	if len(r.Roles) > 0 && r.Access != "authenticated" && r.Access != "internal" {
		v.fail(path+".roles", "only allowed with access: authenticated or internal, got access %q", r.Access)
	}
	for j, role := range r.Roles {
		v.required(fmt.Sprintf("%s.roles[%d]", path, j), role)
	}
	if len(r.Services) > 0 && r.Access != "authenticated" && r.Access != "internal" {
		v.fail(path+".services", "only allowed with access: authenticated or internal, got access %q", r.Access)
	}
	// The name grammar is checked where the rule is built (serve), by the
	// one function that defines it (session.ValidServiceName).
	for j, svc := range r.Services {
		v.required(fmt.Sprintf("%s.services[%d]", path, j), svc)
	}
	r.validateShape(v, path)
}

// validateShape checks claims and roles_in_token: the token shape of the
// rule (see pkg/authz/shape.go).
func (r Route) validateShape(v *validator, path string) {
	// Only a user session on an authenticated rule gets a token they could
	// shape: public and deny rules issue none, internal ones only service
	// tokens.
	if (r.Claims != nil || r.RolesInToken != "") && r.Access != "authenticated" {
		v.fail(path, "claims and roles_in_token are only allowed with access: authenticated, got access %q", r.Access)
	}
	seen := map[string]bool{}
	for j, name := range r.Claims {
		key := fmt.Sprintf("%s.claims[%d]", path, j)
		// The one definition of a custom claim name, which the admin API
		// enforces on the way in and the signer on the way out: an owned
		// claim (sub, roles, ...) cannot be selected away, and a name no
		// session can hold selects nothing.
		if err := token.CheckCustomClaim(name); err != nil {
			v.check(key, err)
		} else if seen[name] {
			v.fail(key, "%q listed twice", name)
		}
		seen[name] = true
	}
	if r.RolesInToken != "" {
		v.oneOf(path+".roles_in_token", r.RolesInToken, RolesInTokenValues...)
	}
	// matched keeps the roles the rule names; a rule that names none would
	// send every caller a token without roles, which is a mistake, not a
	// policy.
	if r.RolesInToken == "matched" && len(r.Roles) == 0 {
		v.fail(path+".roles_in_token", "matched needs roles: the rule names none, so tokens would carry no role")
	}
}

// validateSize checks token.warn_bytes and token.max_bytes.
func (t Token) validateSize(v *validator) {
	if t.WarnBytes < 0 {
		v.fail("token.warn_bytes", "must be >= 0 (0 = off), got %d", t.WarnBytes)
	}
	switch {
	case t.MaxBytes < 0:
		v.fail("token.max_bytes", "must be >= 0 (0 = off), got %d", t.MaxBytes)
	case t.MaxBytes > 0 && t.MaxBytes < MinTokenMaxBytes:
		// Below this even a token without custom claims and with few roles
		// can be refused: every request would answer 403.
		v.fail("token.max_bytes", "must be 0 (off) or >= %d, got %d", MinTokenMaxBytes, t.MaxBytes)
	case t.MaxBytes > 0 && t.WarnBytes > t.MaxBytes:
		v.fail("token.warn_bytes", "must be <= token.max_bytes (%d), got %d", t.MaxBytes, t.WarnBytes)
	}
}

// MinTokenMaxBytes is the smallest token.max_bytes other than 0: an RS256
// token with no custom claim and one role is already about 950 bytes
// (docs/BENCHMARKS.md), so a smaller limit is a typo that would refuse
// everyone.
const MinTokenMaxBytes = 2048

// validator collects problems, each prefixed with the key it is about.
type validator struct{ errs []error }

func (v *validator) fail(key, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("config: %s: "+format, append([]any{key}, args...)...))
}

func (v *validator) check(key string, err error) {
	if err != nil {
		v.errs = append(v.errs, fmt.Errorf("config: %s: %w", key, err))
	}
}

func (v *validator) required(key, val string) {
	if val == "" {
		v.fail(key, "must not be empty")
	}
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.fail(key, "must be one of %s, got %q", strings.Join(allowed, "|"), val)
	}
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.fail(key, "must be > 0, got %q", d)
	}
}

func (v *validator) atLeast(key string, d, lo time.Duration) {
	if d < lo {
		v.fail(key, "must be >= %s, got %q", lo, d)
	}
}

func (v *validator) atMost(key string, d, hi time.Duration) {
	if d > hi {
		v.fail(key, "must be <= %s, got %q", hi, d)
	}
}

func checkAddr(addr string) error {
	// An empty or port-less address would make net.Listen pick a random
	// port instead of failing.
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return fmt.Errorf("must be host:port, got %q", addr)
	}
	return nil
}

// checkRedirect accepts "", an absolute http(s) URL or an absolute path.
// "//host" and "/\host" are refused: browsers treat both as a URL on
// another host.
func checkRedirect(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
	case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
		return nil
	case u.Scheme == "" && strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") && !strings.HasPrefix(s, `/\`):
		return nil
	}
	return fmt.Errorf(`must be an absolute http(s) URL or a path starting with "/", got %q`, s)
}

// hopByHop headers are consumed or rewritten by proxies between Envoy and
// the upstream, so the token would not arrive intact.
var hopByHop = []string{
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
}

func checkTokenHeader(h string) error {
	switch {
	case strings.HasPrefix(h, ":"):
		return fmt.Errorf("must not be a pseudo-header, got %q", h)
	case checkToken(h) != nil:
		return fmt.Errorf("must be a valid HTTP header name, got %q", h)
	case h != strings.ToLower(h):
		return fmt.Errorf("must be lower-case, got %q", h)
	case slices.Contains(hopByHop, h):
		return fmt.Errorf("must not be a hop-by-hop header, got %q", h)
	case h == "cookie" || h == "authorization" || h == "host":
		// These already carry meaning for the upstream or for Envoy's
		// routing; overwriting them would break it.
		return fmt.Errorf("must not be %q", h)
	}
	return nil
}

// checkToken checks the RFC 7230 token grammar, which is also what RFC 6265
// requires of a cookie name and RFC 7231 of a method.
func checkToken(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	for _, r := range s {
		if !isTokenChar(r) {
			return fmt.Errorf("must be an HTTP token (RFC 7230), got %q: %q is not allowed", s, r)
		}
	}
	return nil
}

func isTokenChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
