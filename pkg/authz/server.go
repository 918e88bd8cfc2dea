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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// Sessions is what Check needs from the session store.
//
// Touch returns the session behind ref and slides its idle expiry.
// session.ErrNotFound (unknown, expired or revoked) and session.ErrCorrupt
// (a record sessiongate would not have written) mean no usable session:
// 401. context.Canceled with the caller's context done means the caller
// went away. Any other error means the store could not answer: 503, never
// an allow. Delete, for logout, is the same, with ErrNotFound a success.
type Sessions interface {
	Touch(ctx context.Context, ref string) (session.Entry, error)
	Delete(ctx context.Context, ref string) error
}

// Signer signs internal tokens. Sign may return token.ErrInvalidClaimName
// for a record whose custom claims it refuses (a corrupt record: 401); any
// other error is a failure to sign (503). ActiveKID names the key Sign uses
// now; signed tokens are cached per key, so a rotation signs afresh.
type Signer interface {
	Sign(c token.Claims) (string, error)
	ActiveKID() string
}

// Interface guards: the implementations serve wires in.
var (
	_ Sessions = (*session.RedisStore)(nil)
	_ Sessions = (*session.MemoryStore)(nil)
	_ Signer   = (*token.Signer)(nil)

	_ ServiceCredentials = (*session.RedisStore)(nil)
	_ ServiceCredentials = (*session.MemoryStore)(nil)
)

// Options configure a Server.
type Options struct {
	Sessions     Sessions
	Services     ServiceCredentials // nil: service credentials are refused (401), principals are anonymous
	SPIFFE       SPIFFE             // mTLS principals → services; see spiffe.go
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

	// TokenWarnBytes logs a session token larger than this, once per
	// session version and token variant; TokenMaxBytes refuses one (403
	// token_too_large). 0 is off. See size.go.
	TokenWarnBytes int
	TokenMaxBytes  int

	// Binding ties sessions to their user agent and network (binding.go);
	// the zero value is off.
	Binding Binding
	// XFFTrustedHops: 0 takes the client address from Envoy's
	// source.address, N the N-th X-Forwarded-For entry from the right.
	XFFTrustedHops int
	// Anomaly notices sessions used too fast or from another country
	// (anomaly.go); the zero value is off.
	Anomaly Anomaly
	// GeoIP names the country of an address, for the country change and
	// for events; nil is none.
	GeoIP Countries
	// Events receives logouts, binding mismatches, anomalies and the
	// revocations they cause; nil records nothing.
	Events events.Recorder
	// SelfService are the routes on which users see and end their own
	// sessions (selfservice.go); the zero value is off.
	SelfService SelfService
	// NoDynamicMetadata leaves the subject and session ref out of the allow
	// answer's dynamic_metadata (response.go), for deployments whose Envoy
	// reads neither: no protobuf map to marshal per answer here, less for
	// Envoy to decode and merge.
	NoDynamicMetadata bool

	// Refresh answers POST RefreshPath, the token endpoint for refresh
	// tokens (refresh.go); nil turns it off.
	Refresh     Refresher
	RefreshPath string
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	o           Options
	routes      atomic.Pointer[[]Route]
	shadows     atomic.Bool // some rule is a shadow rule
	spiffe      atomic.Pointer[SPIFFE]
	cache       *tokenCache
	shapes      *shapeTable
	m           *metrics.Metrics
	decisions   [numDecisions]prometheus.Counter
	resp        responses
	csrfOrigins []string // normalised CSRF.AllowedOrigins

	// seen is the per-session rate and recorded mismatches; nil unless a
	// policy needs them.
	seen *seenSessions

	refreshEP refreshEndpoint
}

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
	s := &Server{o: o, cache: newTokenCache(o.CacheEntries), shapes: newShapeTable(), m: o.Metrics, resp: newResponses(o)}
	for _, origin := range o.CSRF.AllowedOrigins {
		s.csrfOrigins = append(s.csrfOrigins, NormalizeOrigin(origin))
	}
	// Every label exported at zero from the start, so rate() works before
	// the first such answer.
	for _, d := range Decisions() {
		s.decisions[d] = o.Metrics.Decisions.WithLabelValues(d.String())
	}
	if o.Anomaly.on(o.GeoIP) || o.Binding.on() && o.Binding.Action == PolicyLog {
		s.seen = newSeenSessions()
	}
	s.refreshEP = newRefreshEndpoint(o)
	s.SetRoutes(o.Routes)
	s.SetSPIFFE(o.SPIFFE)
	return s
}

// SetRoutes replaces the route rules; Checks in flight finish with the old
// ones. It is how a config reload applies new rules without a restart.
func (s *Server) SetRoutes(routes []Route) {
	r := append([]Route(nil), routes...)
	shadows := false
	for i := range r {
		r[i].folded = foldedPrefix(r[i].PathPrefix)
		r[i].shape = s.shapes.forRoute(&r[i])
		shadows = shadows || r[i].Shadow
	}
	s.routes.Store(&r)
	s.shadows.Store(shadows)
	s.shapes.resetExtensions()
}

// Check implements the ext_authz API.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, _ := s.Decide(ctx, req)
	return resp, nil
}

// Decide is Check for callers that also want to know why: the tracing
// decorator records the verdict instead of guessing it from the answer.
func (s *Server) Decide(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, Verdict) {
	start := time.Now()
	resp, v := s.check(ctx, req)
	s.decisions[v.Decision].Inc()
	s.m.CheckDuration.Observe(time.Since(start).Seconds())
	if s.shadows.Load() {
		s.shadow(req, v)
	}
	return resp, v
}

// check reads top to bottom: the request's form, the policy for its path,
// the credential, the session behind it, the token, the binding, the
// anomalies, the roles.
func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, Verdict) {
	attrs := req.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	if httpReq == nil {
		return s.resp.badRequest, verdict(DecisionBadRequest, "no http request", -1)
	}
	path, ok, nonASCII := cleanPath(httpReq.GetPath())
	if !ok {
		return s.resp.badRequest, verdict(DecisionBadRequest, "path not canonical", -1)
	}
	method := httpReq.GetMethod()
	h := headersOf(httpReq)
	pol, v := s.policy(attrs, method, path, nonASCII)
	if v.Decision != DecisionOK {
		return s.resp.denial(v.Decision), v
	}
	if path == s.refreshEP.path {
		return s.refresh(ctx, httpReq, h)
	}
	if s.o.LogoutPath != "" && path == s.o.LogoutPath {
		return s.logout(ctx, httpReq, h)
	}
	if s.selfServicePath(path) || nonASCII && s.foldsToSelfService(path) {
		return s.selfService(ctx, attrs, httpReq, h, method, path, nonASCII, pol) // selfservice.go
	}
	switch pol.access {
	case Public:
		return s.public(h), verdict(DecisionPublic, "public path", pol.rule)
	case Deny:
		return s.resp.forbidden, verdict(DecisionDenied, "deny rule", pol.rule)
	}

	cred, ok := sessionID(h, s.o.Cookie.Name)
	if !ok {
		return s.unauthenticated(httpReq, h), verdict(DecisionUnauthenticated, "ambiguous or malformed credential", pol.rule)
	}
	if cred.from == noCredential {
		// A caller known by its mTLS certificate and carrying no credential
		// is that service; a credential in the request always decides over
		// the connection's identity (in a mesh, every hop has one).
		if name, ok := s.principalService(attrs); ok && s.o.Services != nil {
			return s.checkPrincipal(ctx, pol, name, cred)
		}
		if pol.access == Internal {
			// No login page admits anyone here: a plain 401, never the redirect.
			return s.resp.unauthenticated, verdict(DecisionUnauthenticated, "no credential", pol.rule)
		}
		return s.unauthenticated(httpReq, h), verdict(DecisionUnauthenticated, "no credential", pol.rule)
	}
	if cred.from == fromService {
		return s.checkService(ctx, pol, cred)
	}
	if pol.access == Internal {
		// Known before the store: no round trip, no idle slide, for a
		// session that cannot pass here whatever it holds.
		return s.resp.forbidden, verdict(DecisionInternal, "user session on an internal route", pol.rule)
	}
	// Before the store: a forged cross-site request costs no round trip.
	if resp, v, refused := s.csrf(httpReq, h, cred.from, method, pol.rule); refused {
		return resp, v
	}

	ref := session.RefOf(cred.id)
	entry, now, d, reason := s.resolve(ctx, ref)
	if d != DecisionOK {
		if d == DecisionUnauthenticated {
			return s.unauthenticated(httpReq, h), verdict(d, reason, pol.rule)
		}
		return s.resp.denial(d), verdict(d, reason, pol.rule)
	}
	c, resp, v, refused := s.admit(ctx, attrs, h, ref, entry, &pol, now)
	if refused {
		return resp, v
	}
	if c.tooLarge {
		return s.resp.tokenTooLarge, verdict(DecisionTokenTooLarge, "token over token.max_bytes", pol.rule)
	}
	allowed := verdict(DecisionOK, "session valid", pol.rule)
	allowed.roles = c.roles
	return s.ok(c, cred), allowed
}

// pathPolicy is what the route rules and Envoy's context_extensions say
// about a request.
type pathPolicy struct {
	rule     int // index of the matching rule, -1 for none
	access   Access
	roles    []string
	services []string // see Route.Services
	audience string
	shape    *tokenShape // the token's claims and roles; nil: all
	prefix   string      // the rule's path prefix, for logs
}

// policy applies the route rules and then context_extensions, which
// override access, services and audience for the route Envoy matched. The
// verdict is DecisionOK unless the request is refused outright.
func (s *Server) policy(attrs *authv3.AttributeContext, method, path string, nonASCII bool) (pathPolicy, Verdict) {
	routes := *s.routes.Load()
	rule, ok := ruleFor(routes, method, path, nonASCII)
	if !ok {
		return pathPolicy{}, verdict(DecisionBadRequest, "method or folded path reads as another rule", -1)
	}
	p := pathPolicy{rule: rule, access: Authenticated, audience: s.o.Audience}
	if rule >= 0 {
		r := &routes[rule]
		p.access, p.roles, p.services, p.shape, p.prefix = r.Access, r.Roles, r.Services, r.shape, r.PathPrefix
	}
	if ext := attrs.GetContextExtensions(); len(ext) > 0 {
		if v, ok := ext["access"]; ok {
			a, err := ParseAccess(v)
			if err != nil {
				s.o.Log.Warn("check: bad context_extensions access; denying", "value", v)
				return p, verdict(DecisionDenied, "bad context_extensions access", rule)
			}
			p.access = a
		}
		if v := ext["audience"]; v != "" {
			p.audience = v
		}
		if v, ok := ext["services"]; ok {
			services, err := ParseServices(v)
			if err != nil {
				s.o.Log.Warn("check: bad context_extensions services; denying", "value", v)
				return p, verdict(DecisionDenied, "bad context_extensions services", rule)
			}
			p.services = services
		}
		if shape, ok, err := s.shapeFromExtensions(ext, routes, rule); err != nil {
			s.o.Log.Warn("check: bad context_extensions claims or roles_in_token; denying", "err", err)
			return p, verdict(DecisionDenied, "bad context_extensions claims or roles_in_token", rule)
		} else if ok {
			p.shape = shape
		}
	}
	return p, verdict(DecisionOK, "", rule)
}

// resolve finds the session behind ref, bounded by the store timeout, and
// says what a failure means: no usable session (401), a store that could
// not answer (503), or a caller that went away, which is neither a store
// failure nor worth a warning: Envoy cancels in-flight Checks when clients
// hang up, and a burst of those must not look like a Redis outage.
func (s *Server) resolve(ctx context.Context, ref string) (session.Entry, time.Time, Decision, string) {
	sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	entry, err := s.o.Sessions.Touch(sctx, ref)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, session.ErrNotFound):
		return entry, time.Time{}, DecisionUnauthenticated, "session not found"
	case errors.Is(err, session.ErrCorrupt):
		s.o.Log.Warn("check: corrupt session record", "session_ref", ref, "err", err)
		return entry, time.Time{}, DecisionUnauthenticated, "corrupt session record"
	case ctx.Err() == context.Canceled:
		s.o.Log.Debug("check: caller went away during the store call", "session_ref", ref)
		return entry, time.Time{}, DecisionCanceled, "caller canceled"
	default:
		s.o.Log.Warn("check: session store unavailable", "session_ref", ref, "err", err)
		return entry, time.Time{}, DecisionUnavailable, "session store unavailable"
	}
	now := s.o.Now()
	if !now.Before(entry.ExpiresAt) {
		// Past the session's absolute end by this clock, though not yet by
		// the store's (clock skew): any token would be born expired.
		return entry, now, DecisionUnauthenticated, "session past its absolute end"
	}
	return entry, now, DecisionOK, ""
}

// csrf applies the CSRF rule to an unsafe cookie request (csrf.go): a
// refusal unless the rule only shadows.
func (s *Server) csrf(r *authv3.AttributeContext_HttpRequest, h headers, from credential, method string, rule int) (*authv3.CheckResponse, Verdict, bool) {
	if from != fromCookie || s.o.CSRF.Disabled || safeMethod(method) {
		return nil, Verdict{}, false
	}
	refused := s.csrfRefused(r, h, true)
	if s.o.CSRF.Shadow {
		s.shadowCSRF(r, refused)
		return nil, Verdict{}, false
	}
	if refused {
		return s.resp.csrf, verdict(DecisionCSRF, "unsafe cookie request from an origin not allowed", rule), true
	}
	return nil, Verdict{}, false
}

// admit runs the steps every request on a live session passes before its
// route's own work, the Check path's and the self-service routes' alike:
// the token (its cache entry carries the roles and where the session was
// created), the theft policies, and the rule's roles.
func (s *Server) admit(ctx context.Context, attrs *authv3.AttributeContext, h headers, ref string, entry session.Entry, pol *pathPolicy, now time.Time) (cached, *authv3.CheckResponse, Verdict, bool) {
	r := attrs.GetRequest().GetHttp()
	c, err := s.token(entry, pol, now)
	if err != nil {
		resp, v := s.tokenFailed(r, h, ref, pol.rule, err)
		return c, resp, v, true
	}
	if resp, v, refused := s.theftPolicies(ctx, attrs, h, ref, c.origin, pol.rule); refused {
		return c, resp, v, true
	}
	if len(pol.roles) > 0 && !session.HasAnyRole(c.roles, pol.roles) {
		denied := verdict(DecisionForbidden, "missing role", pol.rule)
		denied.roles = c.roles
		return c, s.resp.forbidden, denied, true
	}
	return c, nil, Verdict{}, false
}

// tokenFailed answers a session whose token could not be signed. A claim
// name the signer refuses came from the record: as corrupt as one the
// decoder refuses, and as much a 401; anything else is the signer's failure.
func (s *Server) tokenFailed(r *authv3.AttributeContext_HttpRequest, h headers, ref string, rule int, err error) (*authv3.CheckResponse, Verdict) {
	if errors.Is(err, session.ErrCorrupt) || errors.Is(err, token.ErrInvalidClaimName) {
		s.o.Log.Warn("check: corrupt session record", "session_ref", ref, "err", err)
		return s.unauthenticated(r, h), verdict(DecisionUnauthenticated, "corrupt session record", rule)
	}
	s.o.Log.Error("check: sign token", "session_ref", ref, "err", err)
	return s.resp.unavailable, verdict(DecisionUnavailable, "signing failed", rule)
}

// theftPolicies runs the session binding (binding.go) and the anomaly
// checks (anomaly.go) that are on, against where the session was created.
func (s *Server) theftPolicies(ctx context.Context, attrs *authv3.AttributeContext, h headers, ref string, o origin, rule int) (*authv3.CheckResponse, Verdict, bool) {
	if s.o.Binding.on() {
		if resp, v, refused := s.bind(ctx, attrs, h, ref, o, rule); refused {
			return resp, v, true
		}
	}
	if s.o.Anomaly.on(s.o.GeoIP) {
		if resp, v, refused := s.anomaly(ctx, attrs, h, ref, o, rule); refused {
			return resp, v, true
		}
	}
	return nil, Verdict{}, false
}

// token returns a signed token for the session, from the cache when the
// session's version, the audience, the token shape and the active key are
// unchanged. The caller has checked that the session has not reached its
// absolute end.
func (s *Server) token(e session.Entry, pol *pathPolicy, now time.Time) (cached, error) {
	key := cacheKey{ref: e.Ref, version: e.Version, audience: pol.audience, kid: s.o.Signer.ActiveKID(), shape: pol.shape.cacheID()}
	if c, ok := s.cache.get(key, now); ok {
		s.m.TokenCacheHits.Inc()
		return c, nil
	}
	// A miss: one signature per key, however many Checks race here.
	c, signed, err := s.cache.getOrSign(key, now, func(prev cached) (cached, error) { return s.sign(e, pol, now, prev) })
	if signed {
		s.m.TokenCacheMisses.Inc()
	} else {
		s.m.TokenCacheHits.Inc()
	}
	return c, err
}

// sign decodes the session record and signs a token of the policy's shape
// for it; prev is the entry it refreshes, if any.
func (s *Server) sign(e session.Entry, pol *pathPolicy, now time.Time, prev cached) (cached, error) {
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
		Audience:   pol.audience,
		Roles:      pol.shape.tokenRoles(sess.Roles),
		Custom:     pol.shape.custom(sess.Claims),
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
		// What the binding compares against, decoded with the token: a
		// session's device never changes, so a cache hit costs nothing.
		origin: s.originOf(sess.Device),
		// Reuse a token while at least half its lifetime remains, so no
		// upstream receives one about to expire.
		refresh: now.Add(exp.Sub(now) / 2),
		expires: exp,
	}
	s.limitSize(&c, &prev, sess.Ref, pol)
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
func (s *Server) logout(ctx context.Context, r *authv3.AttributeContext_HttpRequest, h headers) (*authv3.CheckResponse, Verdict) {
	cred, ok := sessionID(h, s.o.Cookie.Name)
	if ok && cred.from == fromCookie && !s.o.CSRF.Disabled && s.csrfRefused(r, h, !safeMethod(r.GetMethod())) {
		return s.resp.csrf, verdict(DecisionCSRF, "cross-site logout", -1)
	}
	if ok && (cred.from == fromCookie || cred.from == fromBearer) {
		sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
		err := s.o.Sessions.Delete(sctx, session.RefOf(cred.id))
		cancel()
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			// Saying "logged out" while the session still works would be a lie
			// the user relies on; let them retry.
			if ctx.Err() == context.Canceled {
				return s.resp.unavailable, verdict(DecisionCanceled, "caller canceled", -1)
			}
			s.o.Log.Warn("logout: session store unavailable", "err", err)
			return s.resp.unavailable, verdict(DecisionUnavailable, "session store unavailable", -1)
		}
		if err == nil {
			s.record(h, events.Event{Type: events.Logout, SessionRef: session.RefOf(cred.id)})
		}
	}
	return s.resp.logout, verdict(DecisionLogout, "logout", -1)
}
