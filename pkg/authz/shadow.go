package authz

import (
	"log/slog"
	"strconv"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Shadow rules let an operator roll a rule out the way Envoy's CSRF filter
// lets one roll CSRF out: the rule is evaluated on every request it would
// apply to, what it would have decided is counted
// (sessiongate_shadow_decisions_total{rule,decision}) and logged at debug
// with the request id, and the request is decided as if the rule were
// absent. A shadow rule applies where it would if it were enforced: only
// when no enforced rule before it matches.
//
// The would-be decision never costs a store call. When the enforced
// decision resolved the session, its roles decide; when it did not (the
// enforced rules made the path public or denied it) and the shadow rule
// needs a session, a request with a credential counts as "unverified" and
// one without as "unauthenticated".

// shadowUnverified is the would-be decision of a shadow rule that needs a
// session on a request whose enforced decision did not resolve one.
const shadowUnverified = "unverified"

// shadow counts what the first shadow rule that applies to req would have
// decided, given the verdict the enforced rules reached.
func (s *Server) shadow(req *authv3.CheckRequest, v Verdict) {
	if rule, decision, ok := s.shadowFor(req, v); ok {
		s.recordShadow(req.GetAttributes().GetRequest().GetHttp(), strconv.Itoa(rule), decision)
	}
}

// shadowFor returns the shadow rule that applies to req, if any, and the
// decision it would have made.
func (s *Server) shadowFor(req *authv3.CheckRequest, v Verdict) (rule int, decision string, ok bool) {
	switch v.Decision {
	case DecisionBadRequest, DecisionLogout:
		return 0, "", false // refused before any rule, or not a routed request
	}
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	path, ok, _ := cleanPath(httpReq.GetPath())
	if !ok {
		return 0, "", false
	}
	routes := *s.routes.Load()
	method := httpReq.GetMethod()
	for i := range routes {
		r := &routes[i]
		if !r.matches(method, path) {
			continue
		}
		if !r.Shadow {
			return 0, "", false // the first rule that applies is enforced
		}
		return i, s.wouldBe(r, v, httpReq), true
	}
	return 0, "", false
}

// wouldBe is the decision r would have given the request.
func (s *Server) wouldBe(r *Route, v Verdict, httpReq *authv3.AttributeContext_HttpRequest) string {
	switch {
	case r.Access == Public:
		return DecisionPublic.String()
	case r.Access == Deny:
		return DecisionDenied.String()
	}
	switch v.Decision {
	case DecisionOK, DecisionForbidden:
		if len(r.Roles) > 0 && !session.HasAnyRole(v.roles, r.Roles) {
			return DecisionForbidden.String()
		}
		return DecisionOK.String()
	case DecisionPublic, DecisionDenied:
		if cred, ok := sessionID(headersOf(httpReq), s.o.Cookie.Name); !ok || cred.from == noCredential {
			return DecisionUnauthenticated.String()
		}
		return shadowUnverified
	}
	// Unauthenticated, CSRF, unavailable, canceled: reached before roles
	// mattered, the same under the shadow rule.
	return v.Decision.String()
}

// shadowCSRF counts what the CSRF check would have decided.
func (s *Server) shadowCSRF(httpReq *authv3.AttributeContext_HttpRequest, refused bool) {
	d := DecisionOK
	if refused {
		d = DecisionCSRF
	}
	s.recordShadow(httpReq, "csrf", d.String())
}

func (s *Server) recordShadow(httpReq *authv3.AttributeContext_HttpRequest, rule, decision string) {
	s.m.ShadowDecisions.WithLabelValues(rule, decision).Inc()
	s.o.Log.Debug("shadow decision", slog.String("rule", rule), slog.String("decision", decision),
		slog.String("request_id", RequestHeader(httpReq, "x-request-id")))
}
