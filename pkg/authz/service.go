package authz

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// ServiceCredentials resolves service credentials for Check, with the
// contract of Sessions.Touch: session.ErrNotFound (unknown or revoked) and
// session.ErrCorrupt mean no usable credential, 401; context.Canceled with
// the caller's context done means the caller went away; any other error
// means the store could not answer, 503.
//
// ResolveServiceName, for a caller identified by an mTLS principal, has the
// same contract, except that session.ErrNotFound means a service that is
// not registered: that service, with no roles.
type ServiceCredentials interface {
	ResolveCredential(ctx context.Context, ref string) (session.ServiceEntry, error)
	ResolveServiceName(ctx context.Context, name string) (session.ServiceEntry, error)
}

// ParseServices reads a comma-separated list of service names, as Envoy's
// context_extensions carry it ("billing,inventory"). Every name must be a
// valid service name; spaces around names are allowed.
func ParseServices(v string) ([]string, error) {
	var out []string
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if !session.ValidServiceName(name) {
			return nil, fmt.Errorf("invalid service name %q", name)
		}
		out = append(out, name)
	}
	return out, nil
}

// admitsServices reports whether the policy lets any service through: an
// internal route, or an authenticated one that lists services.
func (p *pathPolicy) admitsServices() bool {
	return p.access == Internal || (p.access == Authenticated && len(p.services) > 0)
}

// admitsService reports whether the policy lets the service name through.
func (p *pathPolicy) admitsService(name string) bool {
	switch p.access {
	case Internal:
		return len(p.services) == 0 || slices.Contains(p.services, name)
	case Authenticated:
		return slices.Contains(p.services, name)
	}
	return false
}

// checkService is check for a request that presents a service credential:
// its form (no store round trip for a mistyped one), whether the route
// admits services at all, the credential in the store, whether the route
// admits this service, the token, the roles. A service is never sent to a
// login page.
func (s *Server) checkService(ctx context.Context, pol pathPolicy, cred presented) (*authv3.CheckResponse, Verdict) {
	if s.o.Services == nil || !session.ValidCredential(cred.id) {
		return s.resp.unauthenticated, verdict(DecisionUnauthenticated, "malformed service credential", pol.rule)
	}
	if !pol.admitsServices() {
		return s.resp.forbidden, verdict(DecisionInternal, "route admits no service", pol.rule)
	}
	ref := session.CredentialRefOf(cred.id)
	e, now, d, reason := s.resolveService(ctx, ref)
	if d != DecisionOK {
		return s.resp.denial(d), verdict(d, reason, pol.rule)
	}
	if !pol.admitsService(e.Name) {
		return s.resp.forbidden, verdict(DecisionInternal, "service not admitted by the rule", pol.rule)
	}
	c, err := s.serviceToken(e, byCredential, pol.audience, now)
	if err != nil {
		if errors.Is(err, session.ErrCorrupt) {
			s.o.Log.Warn("check: corrupt credential record", "credential_ref", ref, "err", err)
			return s.resp.unauthenticated, verdict(DecisionUnauthenticated, "corrupt credential record", pol.rule)
		}
		s.o.Log.Error("check: sign service token", "credential_ref", ref, "err", err)
		return s.resp.unavailable, verdict(DecisionUnavailable, "signing failed", pol.rule)
	}
	if len(pol.roles) > 0 && !session.HasAnyRole(c.roles, pol.roles) {
		return s.resp.forbidden, verdict(DecisionForbidden, "missing role", pol.rule)
	}
	return s.ok(c, cred), verdict(DecisionOK, "service credential valid", pol.rule)
}

// checkPrincipal is checkService for a caller identified by its mTLS
// principal (mapped to a service name by the SPIFFE rules) and carrying no
// credential. The name is known before the store, so a route that does not
// admit it costs no round trip; the store then says which roles it has (a
// service that is not registered has none).
func (s *Server) checkPrincipal(ctx context.Context, pol pathPolicy, name string, cred presented) (*authv3.CheckResponse, Verdict) {
	if !pol.admitsServices() {
		return s.resp.forbidden, verdict(DecisionInternal, "route admits no service", pol.rule)
	}
	if !pol.admitsService(name) {
		return s.resp.forbidden, verdict(DecisionInternal, "service not admitted by the rule", pol.rule)
	}
	e, now, d, reason := s.resolveServiceBy(ctx, name, byPrincipal)
	if d != DecisionOK {
		return s.resp.denial(d), verdict(d, reason, pol.rule)
	}
	c, err := s.serviceToken(e, byPrincipal, pol.audience, now)
	if err != nil {
		if errors.Is(err, session.ErrCorrupt) {
			s.o.Log.Warn("check: corrupt service record", "service", name, "err", err)
			return s.resp.unauthenticated, verdict(DecisionUnauthenticated, "corrupt service record", pol.rule)
		}
		s.o.Log.Error("check: sign service token", "service", name, "err", err)
		return s.resp.unavailable, verdict(DecisionUnavailable, "signing failed", pol.rule)
	}
	if len(pol.roles) > 0 && !session.HasAnyRole(c.roles, pol.roles) {
		return s.resp.forbidden, verdict(DecisionForbidden, "missing role", pol.rule)
	}
	return s.ok(c, cred), verdict(DecisionOK, "service principal mapped", pol.rule)
}

// resolveService finds the credential behind a credential ref.
func (s *Server) resolveService(ctx context.Context, ref string) (session.ServiceEntry, time.Time, Decision, string) {
	return s.resolveServiceBy(ctx, ref, byCredential)
}

// resolveServiceBy finds the credential behind ref, or with byPrincipal the
// service named ref, bounded by the store timeout, and says what a failure
// means, as resolve does for sessions.
func (s *Server) resolveServiceBy(ctx context.Context, ref string, by callerKind) (session.ServiceEntry, time.Time, Decision, string) {
	sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	var e session.ServiceEntry
	var err error
	if by == byPrincipal {
		e, err = s.o.Services.ResolveServiceName(sctx, ref)
		if errors.Is(err, session.ErrNotFound) {
			// Mapped but not registered: that service, with no roles.
			e, err = session.ServiceEntry{Name: ref}, nil
		}
	} else {
		e, err = s.o.Services.ResolveCredential(sctx, ref)
	}
	cancel()
	switch {
	case err == nil:
		return e, s.o.Now(), DecisionOK, ""
	case errors.Is(err, session.ErrNotFound):
		return e, time.Time{}, DecisionUnauthenticated, "service credential not found"
	case errors.Is(err, session.ErrCorrupt):
		s.o.Log.Warn("check: corrupt credential record", "credential_ref", ref, "err", err)
		return e, time.Time{}, DecisionUnauthenticated, "corrupt credential record"
	case ctx.Err() == context.Canceled:
		s.o.Log.Debug("check: caller went away during the store call", "credential_ref", ref)
		return e, time.Time{}, DecisionCanceled, "caller canceled"
	default:
		s.o.Log.Warn("check: service store unavailable", "credential_ref", ref, "err", err)
		return e, time.Time{}, DecisionUnavailable, "service store unavailable"
	}
}

// serviceToken returns a signed service token, from the cache while the
// credential record's version, the audience and the key are unchanged. Like
// a session's, the cache is consulted only after the store confirmed the
// credential on this request, so a revoked one is never served from it.
func (s *Server) serviceToken(e session.ServiceEntry, by callerKind, audience string, now time.Time) (cached, error) {
	ref := e.Ref
	if by == byPrincipal {
		ref = e.Name
	}
	key := cacheKey{ref: ref, version: e.Version, audience: audience, kid: s.o.Signer.ActiveKID(), by: by}
	if c, ok := s.cache.get(key, now); ok {
		s.m.TokenCacheHits.Inc()
		return c, nil
	}
	c, signed, err := s.cache.getOrSign(key, now, func(cached) (cached, error) { return s.signService(e, audience, now) })
	if signed {
		s.m.TokenCacheMisses.Inc()
	} else {
		s.m.TokenCacheHits.Inc()
	}
	return c, err
}

// signService signs a service token: sub is the service, roles its
// registered roles, kind service (typ service+jwt), no sid.
func (s *Server) signService(e session.ServiceEntry, audience string, now time.Time) (cached, error) {
	roles, err := e.Roles()
	if err != nil {
		return cached{}, err
	}
	exp := now.Add(s.o.TokenTTL)
	tok, err := s.o.Signer.Sign(token.Claims{
		Subject:   e.Name,
		Audience:  audience,
		Roles:     roles,
		Kind:      token.KindService,
		IssuedAt:  now,
		NotBefore: now,
		ExpiresAt: exp,
	})
	if err != nil {
		return cached{}, err
	}
	s.m.TokenBytes.Observe(float64(len(tok)))
	return cached{
		token: tok,
		roles: roles,
		parts: &okParts{
			token:    header(s.resp.tokenHeader, tok),
			metadata: s.okMetadata("subject", e.Name, "kind", token.KindService, "credential_ref", e.Ref),
		},
		refresh: now.Add(exp.Sub(now) / 2),
		expires: exp,
	}, nil
}
