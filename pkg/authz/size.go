package authz

// Token size. Every role and custom claim of a session goes into its token,
// and the token into a request header; past a proxy's header limit (8 KiB
// per header line is common) the request fails somewhere downstream, with
// an error that names neither the session nor the cause. token.warn_bytes
// says so in sessiongate's log first; token.max_bytes refuses here, with a
// 403 that says why, rather than letting an upstream proxy fail the
// request. Route token shapes (shape.go) are how a deployment gets under
// either.

// limitSize applies TokenWarnBytes and TokenMaxBytes to the token just
// signed into c; prev is the entry it refreshes. The size is observed on
// every signature, not on cache hits: sessiongate_token_bytes counts tokens
// issued, not requests.
//
// An oversized token is never issued: c loses it and is remembered as
// tooLarge, so the 403 is served from the cache until the entry would have
// been refreshed, with one log line per signature attempt. The warning is
// logged once per cache key (session version, audience, shape, key) for as
// long as the entry and its refreshes stay cached: bounded by the cache,
// never per Check. Neither line holds the token or the session ID.
func (s *Server) limitSize(c *cached, prev *cached, ref string, pol *pathPolicy) {
	n := len(c.token)
	s.m.TokenBytes.Observe(float64(n))
	if limit := s.o.TokenMaxBytes; limit > 0 && n > limit {
		s.o.Log.Warn("check: token over token.max_bytes; refusing with 403 token_too_large",
			"session_ref", ref, "bytes", n, "max_bytes", limit,
			"audience", pol.audience, "rule", pol.rule, "path_prefix", pol.prefix, "token_shape", pol.shape.String())
		c.token, c.parts, c.tooLarge = "", nil, true
		return
	}
	if limit := s.o.TokenWarnBytes; limit > 0 && n > limit {
		if !prev.warned {
			s.o.Log.Warn("check: token over token.warn_bytes",
				"session_ref", ref, "bytes", n, "warn_bytes", limit,
				"audience", pol.audience, "rule", pol.rule, "path_prefix", pol.prefix, "token_shape", pol.shape.String())
		}
		c.warned = true
	}
}

// shapeFromExtensions reads context_extensions claims and roles_in_token;
// ok is false when neither is set. The values Envoy sends for one route are
// the same on every request, so after the first they cost a map lookup.
func (s *Server) shapeFromExtensions(ext map[string]string, routes []Route, rule int) (shape *tokenShape, ok bool, err error) {
	claims, hasClaims := ext["claims"]
	roles, hasRoles := ext["roles_in_token"]
	if !hasClaims && !hasRoles {
		return nil, false, nil
	}
	k := extShapeKey{claims: claims, roles: roles, hasClaims: hasClaims, hasRoles: hasRoles}
	if rule >= 0 {
		k.rule = &routes[rule]
	}
	shape, err = s.shapes.fromExtensions(k)
	return shape, err == nil, err
}
