package authz

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// A shadow rule is counted with the decision it would have made and never
// changes the decision itself; the shadow CSRF check likewise.
func TestShadowRules(t *testing.T) {
	routes := []Route{
		{PathPrefix: "/open/", Access: Authenticated},
		{PathPrefix: "/open/", Access: Deny, Shadow: true}, // behind an enforced rule: never applies
		{PathPrefix: "/billing/", Access: Authenticated, Roles: []string{"finance"}, Shadow: true},
		{PathPrefix: "/docs/", Access: Deny, Shadow: true},
		{PathPrefix: "/docs/", Access: Public},
		{PathPrefix: "/help/", Access: Authenticated, Shadow: true},
		{PathPrefix: "/help/", Access: Public},
	}
	m := metrics.New(nil)
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Routes = routes
		o.Metrics = m
		o.CSRF.Shadow = true
	})
	user := withCookie("__Host-sid=" + f.login(t, "alice", []string{"user"}, nil))
	finance := withCookie("__Host-sid=" + f.login(t, "bob", []string{"finance"}, nil))
	same := withHeader("origin", "https://app.example.com")
	evil := withHeader("origin", "https://evil.example")

	tests := []struct {
		name       string
		method     string
		path       string
		opts       []reqOpt
		want       Decision // the enforced decision
		shadowRule string   // "" = no shadow count
		shadow     string
	}{
		{"role missing under a shadow role rule", "GET", "/billing/x", []reqOpt{user}, DecisionOK, "2", "forbidden"},
		{"role present under a shadow role rule", "GET", "/billing/x", []reqOpt{finance}, DecisionOK, "2", "ok"},
		{"no session under a shadow role rule", "GET", "/billing/x", nil, DecisionUnauthenticated, "2", "unauthenticated"},
		{"shadow deny before an enforced public rule", "GET", "/docs/x", nil, DecisionPublic, "3", "denied"},
		{"shadow authenticated on a public path, with a credential", "GET", "/help/x", []reqOpt{user}, DecisionPublic, "5", "unverified"},
		{"shadow authenticated on a public path, without one", "GET", "/help/x", nil, DecisionPublic, "5", "unauthenticated"},
		{"a shadow rule behind an enforced one never applies", "GET", "/open/x", []reqOpt{user}, DecisionOK, "", ""},
		{"shadow CSRF: cross-site POST is let through and counted", "POST", "/open/x", []reqOpt{user, evil}, DecisionOK, "csrf", "csrf"},
		{"shadow CSRF: same-origin POST counted as ok", "POST", "/open/x", []reqOpt{user, same}, DecisionOK, "csrf", "ok"},
	}
	for _, tt := range tests {
		before := testutil.CollectAndCount(m.ShadowDecisions)
		var was float64
		if tt.shadowRule != "" {
			was = testutil.ToFloat64(m.ShadowDecisions.WithLabelValues(tt.shadowRule, tt.shadow))
			before = testutil.CollectAndCount(m.ShadowDecisions)
		}
		_, v := f.srv.Decide(context.Background(), request(tt.method, tt.path, tt.opts...))
		if v.Decision != tt.want {
			t.Errorf("%s: enforced decision %v, want %v", tt.name, v.Decision, tt.want)
		}
		if tt.shadowRule == "" {
			if after := testutil.CollectAndCount(m.ShadowDecisions); after != before {
				t.Errorf("%s: a shadow decision was counted", tt.name)
			}
			continue
		}
		if got := testutil.ToFloat64(m.ShadowDecisions.WithLabelValues(tt.shadowRule, tt.shadow)) - was; got != 1 {
			t.Errorf("%s: shadow {rule=%s, decision=%s} counted %v times, want 1", tt.name, tt.shadowRule, tt.shadow, got)
		}
	}
}
