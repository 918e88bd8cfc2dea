package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/admin"
)

// Token shape through the real Envoy: a sessiongate rule (routes[].claims,
// roles_in_token) and an Envoy route (context_extensions claims, in
// envoy/envoy.yaml.tmpl) each give the upstream a token with their own
// claim set, verified by the upstream and by Envoy's jwt_authn, the owned
// claims always there; and a session whose token would be over
// token.max_bytes gets 403 token_too_large, with the log line naming its
// session_ref, while a lean route still serves it.
func TestTokenShapeAndSizeThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Routes = append(c.Routes,
			harness.SGRoute{PathPrefix: "/api/contact/", Access: "authenticated", Roles: []string{"user"}, Claims: []string{"email"}, RolesInToken: "matched"},
		)
	}})
	sess := s.Login("alice", alicePW, "laptop")

	custom := func(cl map[string]any) []string {
		var out []string
		for k := range cl {
			switch k {
			case "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "tenant", "roles", "kind", "act":
			default:
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	tests := []struct {
		path       string
		wantCustom []string
	}{
		{"/api/profile", []string{"email", "name"}}, // no shape: every claim
		{"/api/contact/x", []string{"email"}},       // sessiongate's rule
		{"/directory/x", []string{"name"}},          // Envoy's context_extensions
	}
	jtis := map[string]string{}
	for _, tt := range tests {
		r := s.Get(tt.path, harness.WithSession(sess), acceptJSON())
		e := s.Echo(r)
		if !e.Verified || e.Token == nil {
			t.Fatalf("%s: upstream did not verify a token: %v", tt.path, r)
		}
		cl := e.Token.Claims
		if got := custom(cl); !slices.Equal(got, tt.wantCustom) {
			t.Errorf("%s: custom claims %q, want %q", tt.path, got, tt.wantCustom)
		}
		if claimString(t, cl, "sub") != "alice" || claimString(t, cl, "sid") != sess.SessionRef || claimString(t, cl, "tenant") != "acme" {
			t.Errorf("%s: owned claims changed: %v", tt.path, cl)
		}
		if got := stringList(cl["roles"]); !slices.Equal(got, []string{"user"}) {
			t.Errorf("%s: roles %v, want [user]", tt.path, got)
		}
		payload, err := e.JWTPayload()
		if err != nil || payload == nil || payload["jti"] != cl["jti"] {
			t.Errorf("%s: jwt_authn did not pass the same token (%v)", tt.path, err)
		}
		jtis[tt.path] = claimString(t, cl, "jti")
	}
	if jtis["/api/profile"] == jtis["/api/contact/x"] || jtis["/api/contact/x"] == jtis["/directory/x"] {
		t.Errorf("two shapes were served one token: %v", jtis)
	}

	// A user whose attributes make a token over token.max_bytes (8192 by
	// default): 403 token_too_large where every claim goes, a token where
	// the route keeps one.
	claims := map[string]string{"email": "big@example.com"}
	for i := range 8 {
		claims[fmt.Sprintf("blob%d", i)] = strings.Repeat("x", 1000)
	}
	big, err := s.Admin().CreateSession(tctx(t), admin.CreateRequest{Subject: "big", Tenant: "acme", Roles: []string{"user"}, Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	bearer := harness.WithHeader("Authorization", "Bearer "+big.SessionID)
	probeID := probe(t, "too-large")
	r := s.Get("/api/profile?"+probeID, bearer, acceptJSON())
	expectStatus(t, r, 403)
	if got := jsonError(t, r); got != "token_too_large" {
		t.Errorf("error %q, want token_too_large", got)
	}
	assertNotReachedUpstream(t, s, probeID)
	if !s.Sessiongate.LogContains("token over token.max_bytes") || !s.Sessiongate.LogContains(big.SessionRef) {
		t.Errorf("no log line naming session_ref %s:\n%s", big.SessionRef, s.Sessiongate.Tail(20))
	}
	if s.Sessiongate.LogContains(big.SessionID) {
		t.Error("sessiongate logged the session ID")
	}
	e := s.Echo(s.Get("/api/contact/x", bearer, acceptJSON()))
	if got := custom(e.Token.Claims); !slices.Equal(got, []string{"email"}) {
		t.Errorf("lean route for the big session: custom claims %q", got)
	}
}
