package authz

import (
	"context"
	"fmt"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Explanation says how Check decides one request: the path as the rules
// saw it, the rule that applied, the verdict and the answer's status. It is
// built by running Check's own code, never a second implementation.
type Explanation struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Canonical is the path Check matched ("" when it was refused as not
	// canonical); Folded is how a folding upstream reads it, when the path
	// carries percent-escaped non-ASCII, and FoldedRule the rule that
	// reading falls under (a difference from Rule is a refusal).
	Canonical  string `json:"canonical_path"`
	Folded     string `json:"folded_path,omitempty"`
	FoldedRule *int   `json:"folded_rule,omitempty"`
	Rule       int    `json:"rule"` // index into the configured routes, -1 for none
	RuleText   string `json:"rule_text"`
	Decision   string `json:"decision"`
	Reason     string `json:"reason"`
	Status     int    `json:"status"`
	// Allowed: the request would reach the upstream (OK or public).
	Allowed bool `json:"allowed"`
	// Shadow is the shadow rule that applies, if any: counted, not
	// enforced.
	Shadow *ShadowExplanation `json:"shadow,omitempty"`
	// TokenShape, for a session allowed with a token, is which claims and
	// roles the token carries (routes[].claims, roles_in_token and their
	// context_extensions).
	TokenShape string `json:"token_shape,omitempty"`
}

// ShadowExplanation is a shadow rule and what it would have decided.
type ShadowExplanation struct {
	Rule     int    `json:"rule"`
	RuleText string `json:"rule_text"`
	Decision string `json:"decision"`
}

// Explain runs Check's decision for req without counting it in the
// metrics, and describes it.
func (s *Server) Explain(ctx context.Context, req *authv3.CheckRequest) Explanation {
	// Explaining a sign-out must not sign anyone out (selfservice.go).
	resp, v := s.check(context.WithValue(ctx, explainKey{}, true), req)
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	e := Explanation{
		Method:   httpReq.GetMethod(),
		Path:     httpReq.GetPath(),
		Rule:     v.Rule,
		RuleText: "no rule: authenticated, any role",
		Decision: v.Decision.String(),
		Reason:   v.Reason,
		Status:   statusOf(resp),
	}
	e.Allowed = v.Decision == DecisionOK || v.Decision == DecisionPublic
	routes := *s.routes.Load()
	if clean, ok, nonASCII := cleanPath(e.Path); ok {
		e.Canonical = clean
		if nonASCII {
			if f, ok := foldPath(clean); ok {
				e.Folded = f
				r := matchFolded(routes, e.Method, f)
				e.FoldedRule = &r
			}
		}
	}
	if v.Rule >= 0 && v.Rule < len(routes) {
		e.RuleText = fmt.Sprintf("routes[%d]: %s", v.Rule, routes[v.Rule])
	}
	if v.Decision == DecisionOK && e.Canonical != "" {
		_, _, nonASCII := cleanPath(e.Path)
		if pol, pv := s.policy(req.GetAttributes(), e.Method, e.Canonical, nonASCII); pv.Decision == DecisionOK {
			e.TokenShape = pol.shape.String()
		}
	}
	if rule, d, ok := s.shadowFor(req, v); ok {
		e.Shadow = &ShadowExplanation{Rule: rule, RuleText: fmt.Sprintf("routes[%d]: %s", rule, routes[rule]), Decision: d}
	}
	return e
}

// String renders a rule as it would be written in config.
func (r Route) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "path_prefix %s", r.PathPrefix)
	if len(r.Methods) > 0 {
		fmt.Fprintf(&b, ", methods [%s]", strings.Join(r.Methods, ", "))
	}
	fmt.Fprintf(&b, ", access %s", r.Access)
	if len(r.Roles) > 0 {
		fmt.Fprintf(&b, ", roles [%s]", strings.Join(r.Roles, ", "))
	}
	if r.Claims != nil {
		fmt.Fprintf(&b, ", claims [%s]", strings.Join(r.Claims, ", "))
	}
	if r.RolesInToken != RolesAll {
		fmt.Fprintf(&b, ", roles_in_token %s", r.RolesInToken)
	}
	if r.Shadow {
		b.WriteString(", shadow")
	}
	return b.String()
}

// statusOf is the HTTP status an answer gives the client.
func statusOf(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return 0
}
