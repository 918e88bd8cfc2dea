package authz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

var (
	shapeRoles  = []string{"dev", "billing", "admin"}
	shapeClaims = map[string]string{"email": "alice@example.com", "plan": "gold", "team": "payments"}
)

// shapeRoutes are rules with every kind of token shape; /api/ has none.
var shapeRoutes = []Route{
	{PathPrefix: "/billing/", Access: Authenticated, Roles: []string{"billing", "ops"}, Claims: []string{"email", "plan"}, RolesInToken: RolesMatched},
	{PathPrefix: "/lean/", Access: Authenticated, Claims: []string{}},
	{PathPrefix: "/email/", Access: Authenticated, Claims: []string{"email", "missing"}},
	{PathPrefix: "/matched/", Access: Authenticated, Roles: []string{"admin"}, RolesInToken: RolesMatched},
	{PathPrefix: "/anyrole/", Access: Authenticated, Roles: []string{"admin", "dev"}},
}

// ownedClaimNames are the claims every session token carries whatever its
// shape (act and aud-less forms aside).
var ownedClaimNames = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "tenant", "roles", "kind"}

// TestTokenShape proves what each route option and context_extension puts
// in the token, and that the owned claims are never touched.
func TestTokenShape(t *testing.T) {
	all := slices.Sorted(maps.Keys(shapeClaims))
	tests := []struct {
		name       string
		path       string
		ext        map[string]string
		wantClaims []string // custom claims carried
		wantRoles  []string
	}{
		{"no option: everything", "/api/x", nil, all, shapeRoles},
		{"route claims and matched roles", "/billing/x", nil, []string{"email", "plan"}, []string{"billing"}},
		{"route claims: [] carries none", "/lean/x", nil, nil, shapeRoles},
		{"a selected claim the session lacks", "/email/x", nil, []string{"email"}, shapeRoles},
		{"route matched", "/matched/x", nil, all, []string{"admin"}},
		{"route roles without roles_in_token keep all roles", "/anyrole/x", nil, all, shapeRoles},
		{"extension claims", "/api/x", map[string]string{"claims": "plan"}, []string{"plan"}, shapeRoles},
		{"extension claims override the route's", "/billing/x", map[string]string{"claims": "team"}, []string{"team"}, []string{"billing"}},
		{"extension claims empty: none", "/api/x", map[string]string{"claims": ""}, nil, shapeRoles},
		{"extension claims with spaces and tabs", "/api/x", map[string]string{"claims": " email ,\tplan"}, []string{"email", "plan"}, shapeRoles},
		{"extension matched on a rule with roles", "/anyrole/x", map[string]string{"roles_in_token": "matched"}, all, []string{"dev", "admin"}},
		{"extension matched without a rule: no roles", "/api/x", map[string]string{"roles_in_token": "matched"}, all, []string{}},
		{"extension all overrides the route's matched", "/billing/x", map[string]string{"roles_in_token": "all"}, []string{"email", "plan"}, shapeRoles},
		{"both extensions", "/matched/x", map[string]string{"roles_in_token": "matched", "claims": "email"}, []string{"email"}, []string{"admin"}},
		{"other extensions only", "/api/x", map[string]string{"audience": "internal"}, all, shapeRoles},
	}
	for name, newStore := range stores(t) {
		f := newFixture(t, newStore(t), func(o *Options) { o.Routes = shapeRoutes })
		id := f.login(t, "alice", shapeRoles, shapeClaims)
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				r := request("GET", tt.path, withCookie("__Host-sid="+id))
				for k, v := range tt.ext {
					withExt(k, v)(r)
				}
				tok, ok := okHeader(t, mustAllow(t, f, r), tokenHeader)
				if !ok {
					t.Fatal("no token")
				}
				c := f.claims(t, tok, "internal")
				var custom []string
				for k, v := range c {
					if slices.Contains(ownedClaimNames, k) {
						continue
					}
					if v != shapeClaims[k] {
						t.Errorf("claim %s = %v, want %q", k, v, shapeClaims[k])
					}
					custom = append(custom, k)
				}
				slices.Sort(custom)
				if !slices.Equal(custom, tt.wantClaims) {
					t.Errorf("custom claims %q, want %q", custom, tt.wantClaims)
				}
				var roles []string
				for _, r := range c["roles"].([]any) {
					roles = append(roles, r.(string))
				}
				if !slices.Equal(roles, tt.wantRoles) && len(roles)+len(tt.wantRoles) > 0 {
					t.Errorf("roles %q, want %q", roles, tt.wantRoles)
				}
				for _, owned := range ownedClaimNames {
					if _, ok := c[owned]; !ok {
						t.Errorf("owned claim %s missing", owned)
					}
				}
				if c["sub"] != "alice" || c["tenant"] != "acme" || c["sid"] != session.RefOf(id) {
					t.Errorf("owned claims changed: sub %v tenant %v sid %v", c["sub"], c["tenant"], c["sid"])
				}
			})
		}
	}
}

// TestTokenShapeMatchedStillChecksRoles: roles_in_token narrows the token,
// never the rule: a caller without the rule's roles is refused as before.
func TestTokenShapeMatchedStillChecksRoles(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = shapeRoutes })
	id := f.login(t, "bob", []string{"dev"}, shapeClaims)
	resp := f.check(t, request("GET", "/billing/x", withCookie("__Host-sid="+id)))
	if status(resp) != 403 || !strings.Contains(resp.GetDeniedResponse().GetBody(), `"forbidden"`) {
		t.Fatalf("status %d body %q, want 403 forbidden", status(resp), resp.GetDeniedResponse().GetBody())
	}
}

// TestTokenShapeBadExtensions: a claims or roles_in_token extension that
// cannot mean what it says is the operator's error, refused like a bad
// access extension (403, logged), before the store is asked.
func TestTokenShapeBadExtensions(t *testing.T) {
	tests := []struct{ key, value string }{
		{"claims", "sub"},
		{"claims", "email,sub"},
		{"claims", "ROLES"},
		{"claims", "Tenant"},
		{"claims", "email,,plan"},
		{"claims", "email,"},
		{"claims", ","},
		{"claims", " "},
		{"claims", "e\u0301mail"},
		{"claims", "\u017Fub"},
		{"claims", "email plan"},
		{"claims", "email;plan"},
		{"claims", "email,\u00a0plan"},
		{"claims", strings.Repeat("a", 129)},
		{"roles_in_token", "Matched"},
		{"roles_in_token", "none"},
		{"roles_in_token", ""},
		{"roles_in_token", " matched"},
	}
	var logs logtest.Buffer
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Routes = shapeRoutes
		o.Log = slogJSON(&logs)
	})
	id := f.login(t, "alice", shapeRoles, shapeClaims)
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%q", tt.key, tt.value), func(t *testing.T) {
			before := f.touches.Load()
			for _, path := range []string{"/api/x", "/billing/x"} {
				resp := f.check(t, request("GET", path, withCookie("__Host-sid="+id), withExt(tt.key, tt.value)))
				if status(resp) != 403 {
					t.Errorf("%s: status %d, want 403", path, status(resp))
				}
				if _, v := f.srv.Decide(context.Background(), request("GET", path, withCookie("__Host-sid="+id), withExt(tt.key, tt.value))); v.Decision != DecisionDenied {
					t.Errorf("%s: decision %v, want denied", path, v.Decision)
				}
			}
			if f.touches.Load() != before {
				t.Error("a malformed extension reached the store")
			}
		})
	}
	if !strings.Contains(logs.String(), "bad context_extensions claims or roles_in_token") {
		t.Errorf("no log line for the refusals:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), id) {
		t.Error("the log holds the session ID")
	}
}

// TestTokenShapeIDs: equal shapes share an id (one signature), different
// ones never do, and a full table starts new ids rather than reusing any.
func TestTokenShapeIDs(t *testing.T) {
	st := newShapeTable()
	if st.shape(nil, nil) != nil {
		t.Fatal("the default shape is not nil")
	}
	a, b := st.shape([]string{"email", "plan"}, nil), st.shape([]string{"plan", "email", "plan"}, nil)
	if a.id != b.id || a.id == 0 {
		t.Errorf("equal selections: ids %d and %d", a.id, b.id)
	}
	distinct := []*tokenShape{
		a,
		st.shape([]string{}, nil),
		st.shape([]string{"email"}, nil),
		st.shape(nil, []string{}),
		st.shape(nil, []string{"admin"}),
		st.shape([]string{}, []string{}),
		st.shape(nil, []string{"a b"}),
		st.shape(nil, []string{"a", "b"}),
	}
	ids := map[uint64]string{}
	for _, s := range distinct {
		if prev, ok := ids[s.id]; ok {
			t.Errorf("%s and %s share id %d", prev, s, s.id)
		}
		ids[s.id] = s.String()
	}
	seen := map[uint64]bool{}
	for i := range maxShapeIDs + 10 {
		s := st.shape([]string{fmt.Sprintf("c%d", i)}, nil)
		if seen[s.id] || ids[s.id] != "" {
			t.Fatalf("id %d reused", s.id)
		}
		seen[s.id] = true
	}
	if len(st.ids) > maxShapeIDs {
		t.Errorf("%d ids remembered, bound %d", len(st.ids), maxShapeIDs)
	}
}

// TestTokenShapeExtensionsBounded: distinct extension values are
// remembered up to a bound, and a reload forgets them.
func TestTokenShapeExtensionsBounded(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = shapeRoutes })
	id := f.login(t, "alice", shapeRoles, shapeClaims)
	for i := range maxExtShape + 5 {
		mustAllow(t, f, request("GET", "/api/x", withCookie("__Host-sid="+id), withExt("claims", fmt.Sprintf("c%d", i))))
	}
	if n := len(f.srv.shapes.ext); n > maxExtShape {
		t.Errorf("%d extension shapes remembered, bound %d", n, maxExtShape)
	}
	f.srv.SetRoutes(shapeRoutes)
	if n := len(f.srv.shapes.ext); n != 0 {
		t.Errorf("%d extension shapes survive a reload", n)
	}
	// After a reload, the rule a remembered shape was built from is gone:
	// a new roles list must be what matched keeps.
	f.srv.SetRoutes([]Route{{PathPrefix: "/anyrole/", Access: Authenticated, Roles: []string{"dev"}}})
	tok, _ := okHeader(t, mustAllow(t, f, request("GET", "/anyrole/x", withCookie("__Host-sid="+id), withExt("roles_in_token", "matched"))), tokenHeader)
	if got := f.claims(t, tok, "internal")["roles"].([]any); len(got) != 1 || got[0] != "dev" {
		t.Errorf("roles after reload %v, want [dev]", got)
	}
}

// TestTokenSizeLimits: token.warn_bytes logs once per session version and
// variant, never per Check; token.max_bytes refuses with 403
// token_too_large and a log line naming the session_ref, and costs one
// signature however many Checks follow; a leaner route shape gets under it.
func TestTokenSizeLimits(t *testing.T) {
	const ttl = 5 * time.Minute
	big := map[string]string{}
	for i := range 20 {
		big[fmt.Sprintf("attr%02d", i)] = strings.Repeat("v", 40)
	}
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var logs logtest.Buffer
			clock := &fakeClock{t: time.Now()}
			var cs *countingSigner
			m := metrics.New(nil)
			f := newFixture(t, newStore(t), func(o *Options) {
				cs = &countingSigner{Signer: o.Signer}
				o.Signer, o.Now, o.TokenTTL, o.Metrics = cs, clock.now, ttl, m
				o.Routes = shapeRoutes
				o.Log = slogJSON(&logs)
				o.TokenWarnBytes, o.TokenMaxBytes = 700, 1200
			})
			id := f.login(t, "alice", shapeRoles, big)
			ref := session.RefOf(id)

			// Too large on /api/: 403, once signed, once logged per signature.
			for range 20 {
				resp := f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id)))
				if status(resp) != 403 || resp.GetDeniedResponse().GetBody() != `{"error":"token_too_large"}` {
					t.Fatalf("status %d body %q, want 403 token_too_large", status(resp), resp.GetDeniedResponse().GetBody())
				}
				if okHas(resp, tokenHeader) || deniedHeader(resp, tokenHeader) != "" {
					t.Fatal("a refused token reached the answer")
				}
			}
			if got := cs.n.Load(); got != 1 {
				t.Errorf("signed %d times for 20 refusals, want 1", got)
			}
			_, v := f.srv.Decide(context.Background(), request("GET", "/api/x", withCookie("__Host-sid="+id)))
			if v.Decision != DecisionTokenTooLarge {
				t.Errorf("decision %v, want token_too_large", v.Decision)
			}
			if got := testutil.ToFloat64(m.Decisions.WithLabelValues("token_too_large")); got != 21 {
				t.Errorf("token_too_large decisions %v, want 21", got)
			}
			tooLarge := lines(logs.String(), "token over token.max_bytes")
			if len(tooLarge) != 1 || tooLarge[0]["session_ref"] != ref || tooLarge[0]["path_prefix"] != "" || tooLarge[0]["audience"] != "internal" {
				t.Errorf("max_bytes log lines %v, want one naming session_ref %s", tooLarge, ref)
			}

			// A lean route for the same session passes, with no warning.
			mustAllow(t, f, request("GET", "/lean/x", withCookie("__Host-sid="+id)))
			// A mid-sized one warns, once, however many Checks.
			for range 20 {
				mustAllow(t, f, request("GET", "/api/x", withCookie("__Host-sid="+id), withExt("claims", "attr00,attr01,attr02,attr03,attr04")))
			}
			warned := lines(logs.String(), "token over token.warn_bytes")
			if len(warned) != 1 || warned[0]["session_ref"] != ref || warned[0]["bytes"].(float64) <= 700 {
				t.Fatalf("warn_bytes log lines %v, want one naming session_ref %s", warned, ref)
			}
			// Re-signed after half the lifetime: still the one warning.
			clock.add(ttl/2 + time.Second)
			for range 5 {
				mustAllow(t, f, request("GET", "/api/x", withCookie("__Host-sid="+id), withExt("claims", "attr00,attr01,attr02,attr03,attr04")))
			}
			if n := len(lines(logs.String(), "token over token.warn_bytes")); n != 1 {
				t.Errorf("%d warnings after a refresh, want 1", n)
			}
			// A new session version warns again.
			roles := []string{"dev", "billing"}
			if _, err := f.store.UpdateUser(context.Background(), "alice", session.Update{Roles: &roles}); err != nil {
				t.Fatal(err)
			}
			mustAllow(t, f, request("GET", "/api/x", withCookie("__Host-sid="+id), withExt("claims", "attr00,attr01,attr02,attr03,attr04")))
			if n := len(lines(logs.String(), "token over token.warn_bytes")); n != 2 {
				t.Errorf("%d warnings after a new version, want 2", n)
			}
			if strings.Contains(logs.String(), id) || strings.Contains(logs.String(), "eyJ") {
				t.Error("the log holds the session ID or a token")
			}
			// Every signature observed, no cache hit.
			if got, want := histogramCount(t, m), uint64(cs.n.Load()); got != want {
				t.Errorf("sessiongate_token_bytes counted %d, want one per signature (%d)", got, want)
			}
		})
	}
}

// TestTokenSizeLimitsOff: 0 is off; a missing role is a 403 forbidden, not
// token_too_large.
func TestTokenSizeLimitsOff(t *testing.T) {
	big := map[string]string{"blob": strings.Repeat("x", 9000)}
	var logs logtest.Buffer
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Log = slogJSON(&logs) })
	id := f.login(t, "alice", []string{"dev"}, big)
	mustAllow(t, f, request("GET", "/api/x", withCookie("__Host-sid="+id)))
	if strings.Contains(logs.String(), "token over") {
		t.Errorf("a size line with the limits off:\n%s", logs.String())
	}

	f = newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.TokenMaxBytes = 1024 })
	id = f.login(t, "alice", []string{"dev"}, big)
	resp := f.check(t, request("GET", "/admin/x", withCookie("__Host-sid="+id)))
	if body := resp.GetDeniedResponse().GetBody(); status(resp) != 403 || body != `{"error":"forbidden"}` {
		t.Errorf("missing role: status %d body %q, want 403 forbidden", status(resp), body)
	}
}

// TestSignOncePerShape extends the signing promise to token shapes: one
// signature per distinct shape, shared by rules and extensions that ask
// for the same one, never across different ones.
func TestSignOncePerShape(t *testing.T) {
	var cs *countingSigner
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		cs = &countingSigner{Signer: o.Signer}
		o.Signer = cs
		o.Routes = append(slices.Clone(shapeRoutes), Route{PathPrefix: "/email2/", Access: Authenticated, Claims: []string{"missing", "email"}})
	})
	id := f.login(t, "alice", shapeRoles, shapeClaims)
	type variant struct {
		path string
		ext  map[string]string
	}
	variants := []variant{
		{"/api/x", nil},                                 // default
		{"/billing/x", nil},                             // email, plan; matched billing, ops
		{"/lean/x", nil},                                // none
		{"/email/x", nil},                               // email, missing
		{"/email2/x", nil},                              // the same selection, another rule: shared
		{"/matched/x", nil},                             // matched admin
		{"/anyrole/x", nil},                             // default again: shared with /api/
		{"/api/x", map[string]string{"claims": ""}},     // none: shared with /lean/
		{"/api/x", map[string]string{"claims": "plan"}}, // plan
		{"/api/x", map[string]string{"claims": "email,missing"}}, // shared with /email/
	}
	tokens := map[string]string{}
	for range 10 {
		for _, v := range variants {
			r := request("GET", v.path, withCookie("__Host-sid="+id))
			for k, val := range v.ext {
				withExt(k, val)(r)
			}
			tok, _ := okHeader(t, mustAllow(t, f, r), tokenHeader)
			tokens[fmt.Sprint(v)] = tok
		}
	}
	if got := cs.n.Load(); got != 6 {
		t.Errorf("signed %d tokens, want 6 (one per distinct shape)", got)
	}
	if tokens[fmt.Sprint(variants[0])] == tokens[fmt.Sprint(variants[2])] || tokens[fmt.Sprint(variants[1])] == tokens[fmt.Sprint(variants[8])] {
		t.Error("different shapes share a token")
	}
	if tokens[fmt.Sprint(variants[3])] != tokens[fmt.Sprint(variants[4])] {
		t.Error("equal shapes signed twice")
	}
}

// TestTokenShapeAllocations: a rule's token shape costs a warm Check no
// allocation (six, as without it); an extension's costs a read-locked map
// lookup, also none.
func TestTokenShapeAllocations(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = shapeRoutes })
	id := f.login(t, "alice", shapeRoles, shapeClaims)
	for _, r := range []*CheckRequestCase{
		{"rule claims and matched", request("GET", "/billing/x", withCookie("theme=dark; __Host-sid="+id))},
		{"extension claims", request("GET", "/api/x", withCookie("theme=dark; __Host-sid="+id), withExt("claims", "email,plan"))},
		{"extension roles_in_token", request("GET", "/anyrole/x", withCookie("theme=dark; __Host-sid="+id), withExt("roles_in_token", "matched"))},
	} {
		mustAllow(t, f, r.req)
		if got := testing.AllocsPerRun(100, func() { f.srv.Check(context.Background(), r.req) }); got > 6 {
			t.Errorf("%s: a warm Check costs %.1f allocations, want at most 6", r.name, got)
		}
	}
}

// TestTokenSizeByShape measures what each shape saves for a user with 40
// roles and 20 custom claims (docs/BENCHMARKS.md):
//
//	go test ./pkg/authz/ -run TestTokenSizeByShape -v
func TestTokenSizeByShape(t *testing.T) {
	roles := make([]string, 40)
	for i := range roles {
		roles[i] = fmt.Sprintf("app-%02d:editor", i)
	}
	claims := map[string]string{"email": "alice.example@example.com", "plan": "enterprise"}
	for i := len(claims); i < 20; i++ {
		claims[fmt.Sprintf("attr_%02d", i)] = fmt.Sprintf("value-%02d-%s", i, strings.Repeat("x", 24))
	}
	routes := []Route{
		{PathPrefix: "/all/", Access: Authenticated, Roles: []string{"app-07:editor"}},
		{PathPrefix: "/claims/", Access: Authenticated, Roles: []string{"app-07:editor"}, Claims: []string{"email", "plan"}},
		{PathPrefix: "/matched/", Access: Authenticated, Roles: []string{"app-07:editor"}, RolesInToken: RolesMatched},
		{PathPrefix: "/both/", Access: Authenticated, Roles: []string{"app-07:editor"}, Claims: []string{"email", "plan"}, RolesInToken: RolesMatched},
		{PathPrefix: "/none/", Access: Authenticated, Roles: []string{"app-07:editor"}, Claims: []string{}, RolesInToken: RolesMatched},
	}
	type row struct {
		variant string
		bytes   int
	}
	var rows []row
	for _, alg := range []string{token.AlgES256, token.AlgRS256} {
		f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = routes })
		key, err := token.GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := token.NewKeySet(key, "")
		if err != nil {
			t.Fatal(err)
		}
		f.signer.SetKeys(ks)
		id := f.login(t, "alice@example.com", roles, claims)
		var sizes []int
		for _, r := range routes {
			tok, _ := okHeader(t, mustAllow(t, f, request("GET", r.PathPrefix+"x", withCookie("__Host-sid="+id))), tokenHeader)
			sizes = append(sizes, len(tok))
			rows = append(rows, row{fmt.Sprintf("%s %s", alg, r), len(tok)})
		}
		if !(sizes[0] > sizes[1] && sizes[0] > sizes[2] && sizes[1] > sizes[3] && sizes[2] > sizes[3] && sizes[3] > sizes[4]) {
			t.Errorf("%s: sizes %v do not shrink with the shape", alg, sizes)
		}
	}
	for _, r := range rows {
		t.Logf("%6d bytes  %s", r.bytes, r.variant)
	}
}

// CheckRequestCase names a request for a table.
type CheckRequestCase struct {
	name string
	req  *authv3.CheckRequest
}

func slogJSON(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }

// lines returns the JSON log records whose msg contains msg.
func lines(logs, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && strings.Contains(fmt.Sprint(rec["msg"]), msg) {
			out = append(out, rec)
		}
	}
	return out
}

func histogramCount(t *testing.T, m *metrics.Metrics) uint64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.TokenBytes)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v, %d families", err, len(mfs))
	}
	return mfs[0].GetMetric()[0].GetHistogram().GetSampleCount()
}
