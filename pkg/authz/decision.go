package authz

// Decision is what Check decided, before it is an answer. Metrics count it,
// the trace and the debug log record it; none of them re-derives it from
// the response, where a 403 cannot tell a role from a rule from CSRF.
type Decision uint8

// Decisions. Their String values are the result label of
// sessiongate_check_decisions_total, which is product API: never rename one.
const (
	DecisionOK              Decision = iota // allowed, with a token
	DecisionPublic                          // a public path: allowed, no token
	DecisionBadRequest                      // a request not in the one canonical form (400)
	DecisionUnauthenticated                 // no usable session (401, or the login redirect)
	DecisionForbidden                       // the session lacks a role the rule requires (403)
	DecisionDenied                          // a deny rule, or a bad context_extensions access (403)
	DecisionCSRF                            // an unsafe cookie request from an origin not allowed (403)
	DecisionUnavailable                     // the store failed or timed out, or signing failed (503)
	DecisionLogout                          // the logout path (204 or 302)
	DecisionCanceled                        // the caller went away before the answer (Envoy cancelled)
	DecisionInternal                        // a caller of a kind the rule does not admit: a user on an internal route, a service not listed (403)
	DecisionBindingMismatch                 // the request does not match the session's binding, action deny or revoke (401)
	DecisionRateAnomaly                     // the session is over its request rate, action deny (429) or revoke (401)
	DecisionCountryChange                   // the session is used from another country than it was created in, action deny or revoke (401)
	DecisionTokenTooLarge                   // the session's token for this route is over token.max_bytes (403)
	DecisionSelfService                     // a self-service route answered for the caller's own sessions (200, 204, 303, 404)
	DecisionRefresh                         // the token endpoint's own answer: a new token pair (200) or an OAuth error (400, 405)

	numDecisions
)

var decisionNames = [numDecisions]string{
	DecisionOK:              "ok",
	DecisionPublic:          "public",
	DecisionBadRequest:      "bad_request",
	DecisionUnauthenticated: "unauthenticated",
	DecisionForbidden:       "forbidden",
	DecisionDenied:          "denied",
	DecisionCSRF:            "csrf",
	DecisionUnavailable:     "unavailable",
	DecisionLogout:          "logout",
	DecisionCanceled:        "canceled",
	DecisionInternal:        "internal",
	DecisionBindingMismatch: "binding_mismatch",
	DecisionRateAnomaly:     "rate_anomaly",
	DecisionCountryChange:   "country_change",
	DecisionTokenTooLarge:   "token_too_large",
	DecisionSelfService:     "self_service",
	DecisionRefresh:         "refresh",
}

func (d Decision) String() string {
	if d < numDecisions {
		return decisionNames[d]
	}
	return "unknown"
}

// Decisions lists every decision, for exporting each metric label at zero.
func Decisions() []Decision {
	out := make([]Decision, numDecisions)
	for i := range out {
		out[i] = Decision(i)
	}
	return out
}

// Verdict is a decision with why it was made. Reason is one of a fixed set
// of strings, so a Verdict costs no allocation; it never holds request data.
type Verdict struct {
	Decision Decision
	Reason   string
	// Rule is the index of the route rule that applied, or -1 for none
	// (no rule matched, or the request was refused before matching).
	Rule int

	// roles are the session's roles when a session was resolved (ok,
	// forbidden): what a shadow rule's would-be decision needs.
	roles []string
}

func verdict(d Decision, reason string, rule int) Verdict {
	return Verdict{Decision: d, Reason: reason, Rule: rule}
}
