// Package authz answers Envoy's ext_authz Check: it matches the request to a
// route rule, resolves the session behind the request's cookie or bearer
// token, and answers OK with a freshly signed internal JWT, or a denial Envoy
// sends to the client as it is.
//
// Every doubt is a denial. A gRPC error is never returned for a decision,
// because Envoy's failure_mode_allow would turn it into an allow.
package authz

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// Sessions is what Check needs from the session store.
type Sessions interface {
	Touch(ctx context.Context, ref string) (session.Entry, error)
	Delete(ctx context.Context, ref string) error
}

// Signer signs internal tokens.
type Signer interface {
	Sign(c token.Claims) (string, error)
	Keys() *token.KeySet
}

// Options configure a Server.
type Options struct {
	Sessions     Sessions
	Signer       Signer
	Routes       []Route
	Cookie       session.Cookie
	TokenHeader  string        // lower case, e.g. "x-internal-jwt"
	Audience     string        // default aud; context_extensions "audience" overrides
	TokenTTL     time.Duration // lifetime of a signed token
	StoreTimeout time.Duration // bound on the store call; Envoy's own timeout must be longer
	LoginURL     string        // where browsers without a session are sent; "" = 401
	LogoutPath   string        // "" disables
	LogoutURL    string        // redirect after logout; "" = 204
	CSRF         CSRF          // checks unsafe cookie requests; the zero value is on
	CacheEntries int           // token cache size; 0 = 100 000
	Metrics      *metrics.Metrics
	Log          *slog.Logger
	Now          func() time.Time
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	o           Options
	routes      atomic.Pointer[[]Route]
	cache       *tokenCache
	m           *metrics.Metrics
	results     map[string]resultMetric
	resp        responses
	csrfOrigins []string // normalised CSRF.AllowedOrigins
}

type resultMetric interface{ Inc() }

// New returns a Server.
func New(o Options) *Server {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New(nil)
	}
	if o.CacheEntries == 0 {
		o.CacheEntries = 100_000
	}
	s := &Server{o: o, cache: newTokenCache(o.CacheEntries), m: o.Metrics, resp: newResponses(o)}
	for _, origin := range o.CSRF.AllowedOrigins {
		s.csrfOrigins = append(s.csrfOrigins, NormalizeOrigin(origin))
	}
	s.results = make(map[string]resultMetric)
	for _, r := range metrics.Results {
		s.results[r] = o.Metrics.Decisions.WithLabelValues(r)
	}
	s.SetRoutes(o.Routes)
	return s
}

// SetRoutes replaces the route rules; Checks in flight finish with the old
// ones. It is how a config reload applies new rules without a restart.
func (s *Server) SetRoutes(routes []Route) {
	r := append([]Route(nil), routes...)
	for i := range r {
		r[i].folded = foldedPrefix(r[i].PathPrefix)
	}
	s.routes.Store(&r)
}

// Check implements the ext_authz API.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp, result := s.check(ctx, req)
	s.results[result].Inc()
	s.m.CheckDuration.Observe(time.Since(start).Seconds())
	return resp, nil
}

func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, string) {
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	if httpReq == nil {
		return s.resp.badRequest, metrics.ResultBadRequest
	}
	path, ok, nonASCII := cleanPath(httpReq.GetPath())
	if !ok {
		return s.resp.badRequest, metrics.ResultBadRequest
	}
	method := httpReq.GetMethod()
	h := headersOf(httpReq)
	routes := *s.routes.Load()
	rule, ok := ruleFor(routes, method, path, nonASCII)
	if !ok {
		return s.resp.badRequest, metrics.ResultBadRequest
	}

	if s.o.LogoutPath != "" && path == s.o.LogoutPath {
		return s.logout(ctx, httpReq, h)
	}

	access, roles, audience := Authenticated, []string(nil), s.o.Audience
	if rule >= 0 {
		access, roles = routes[rule].Access, routes[rule].Roles
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		if v, ok := ext["access"]; ok {
			a, err := ParseAccess(v)
			if err != nil {
				s.o.Log.Warn("check: bad context_extensions access; denying", "value", v)
				return s.resp.forbidden, metrics.ResultDenied
			}
			access = a
		}
		if v := ext["audience"]; v != "" {
			audience = v
		}
	}

	switch access {
	case Public:
		return s.public(h), metrics.ResultPublic
	case Deny:
		return s.resp.forbidden, metrics.ResultDenied
	}

	cred, ok := sessionID(h, s.o.Cookie.Name)
	if !ok || cred.from == noCredential {
		return s.unauthenticated(httpReq, h), metrics.ResultUnauthenticated
	}
	// Before the store: a forged cross-site request costs no round trip.
	if cred.from == fromCookie && !s.o.CSRF.Disabled && !safeMethod(method) && s.csrfRefused(httpReq, h, true) {
		return s.resp.csrf, metrics.ResultCSRF
	}
	ref := session.RefOf(cred.id)

	sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	entry, err := s.o.Sessions.Touch(sctx, ref)
	cancel()
	if err != nil {
		if errors.Is(err, session.ErrNotFound) || errors.Is(err, session.ErrCorrupt) {
			if errors.Is(err, session.ErrCorrupt) {
				s.o.Log.Warn("check: corrupt session record", "session_ref", ref, "err", err)
			}
			return s.unauthenticated(httpReq, h), metrics.ResultUnauthenticated
		}
		s.o.Log.Warn("check: session store unavailable", "session_ref", ref, "err", err)
		return s.resp.unavailable, metrics.ResultUnavailable
	}

	now := s.o.Now()
	if !now.Before(entry.ExpiresAt) {
		// Past the session's absolute end by this clock, though not yet by
		// the store's (clock skew): any token would be born expired.
		return s.unauthenticated(httpReq, h), metrics.ResultUnauthenticated
	}
	c, err := s.token(entry, audience, now)
	if err != nil {
		// A claim name the signer refuses came from the record: as corrupt
		// as one the decoder refuses, and as much a 401.
		if errors.Is(err, session.ErrCorrupt) || errors.Is(err, token.ErrInvalidClaimName) {
			s.o.Log.Warn("check: corrupt session record", "session_ref", ref, "err", err)
			return s.unauthenticated(httpReq, h), metrics.ResultUnauthenticated
		}
		s.o.Log.Error("check: sign token", "session_ref", ref, "err", err)
		return s.resp.unavailable, metrics.ResultUnavailable
	}
	if len(roles) > 0 && !session.HasAnyRole(c.roles, roles) {
		return s.resp.forbidden, metrics.ResultForbidden
	}
	return s.ok(c, cred), metrics.ResultOK
}

// token returns a signed token for the session, from the cache when the
// session's version, the audience and the active key are unchanged. The
// caller has checked that the session has not reached its absolute end.
func (s *Server) token(e session.Entry, audience string, now time.Time) (cached, error) {
	key := cacheKey{ref: e.Ref, version: e.Version, audience: audience, kid: s.o.Signer.Keys().ActiveKID()}
	if c, ok := s.cache.get(key, now); ok {
		s.m.TokenCacheHits.Inc()
		return c, nil
	}
	// A miss: one signature per key, however many Checks race here.
	c, signed, err := s.cache.getOrSign(key, now, func() (cached, error) { return s.sign(e, audience, now) })
	if signed {
		s.m.TokenCacheMisses.Inc()
	} else {
		s.m.TokenCacheHits.Inc()
	}
	return c, err
}

// sign decodes the session record and signs a token for it.
func (s *Server) sign(e session.Entry, audience string, now time.Time) (cached, error) {
	sess, err := e.Session()
	if err != nil {
		return cached{}, err
	}
	exp := now.Add(s.o.TokenTTL)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt // a token never outlives its session
	}
	tok, err := s.o.Signer.Sign(token.Claims{
		Subject:    sess.Subject,
		Tenant:     sess.Tenant,
		SessionRef: sess.Ref,
		Audience:   audience,
		Roles:      sess.Roles,
		Custom:     sess.Claims,
		IssuedAt:   now,
		NotBefore:  now,
		ExpiresAt:  exp,
	})
	if err != nil {
		return cached{}, err
	}
	c := cached{
		token: tok,
		roles: sess.Roles,
		parts: s.newOKParts(tok, sess.Subject, sess.Ref),
		// Reuse a token while at least half its lifetime remains, so no
		// upstream receives one about to expire.
		refresh: now.Add(exp.Sub(now) / 2),
		expires: exp,
	}
	return c, nil
}

// unauthenticated answers a request without a usable session: a redirect to
// the login page for a browser navigation, else 401.
func (s *Server) unauthenticated(r *authv3.AttributeContext_HttpRequest, h headers) *authv3.CheckResponse {
	if s.o.LoginURL == "" || (r.GetMethod() != "GET" && r.GetMethod() != "HEAD") {
		return s.resp.unauthenticated
	}
	if accept, _ := h.get("accept"); !strings.Contains(accept, "text/html") {
		return s.resp.unauthenticated
	}
	return redirect(s.loginRedirect(r))
}

// loginRedirect builds login_url?return_to=<original URL>. The original URL
// is the request's own scheme, host and path, escaped, so it can carry no
// header injection and names no other site.
func (s *Server) loginRedirect(r *authv3.AttributeContext_HttpRequest) string {
	scheme := r.GetScheme()
	if scheme != "http" && scheme != "https" {
		scheme = "https"
	}
	orig := scheme + "://" + r.GetHost() + r.GetPath()
	sep := "?"
	if strings.Contains(s.o.LoginURL, "?") {
		sep = "&"
	}
	return s.o.LoginURL + sep + "return_to=" + url.QueryEscape(orig)
}

// logout deletes the session (if any) and clears the cookie. A cookie
// logout is refused when the request shows it came from another site: a
// forced logout is a nuisance at best and, followed by a forced login to the
// attacker's account, a way to make the user type their data into it. For a
// GET without Origin or Sec-Fetch-Site (older clients, a plain link) there
// is no evidence either way and SameSite keeps the cookie off cross-site
// subrequests, so it goes through; any other method needs the evidence.
func (s *Server) logout(ctx context.Context, r *authv3.AttributeContext_HttpRequest, h headers) (*authv3.CheckResponse, string) {
	cred, ok := sessionID(h, s.o.Cookie.Name)
	if ok && cred.from == fromCookie && !s.o.CSRF.Disabled && s.csrfRefused(r, h, !safeMethod(r.GetMethod())) {
		return s.resp.csrf, metrics.ResultCSRF
	}
	if ok && cred.from != noCredential {
		sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
		err := s.o.Sessions.Delete(sctx, session.RefOf(cred.id))
		cancel()
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			// Saying "logged out" while the session still works would be a lie
			// the user relies on; let them retry.
			s.o.Log.Warn("logout: session store unavailable", "err", err)
			return s.resp.unavailable, metrics.ResultUnavailable
		}
	}
	return s.resp.logout, metrics.ResultLogout
}
