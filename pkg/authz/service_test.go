package authz

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// countingServices counts credential lookups, to prove what never reaches
// the store.
type countingServices struct {
	ServiceCredentials
	n *atomic.Int64
}

func (c countingServices) ResolveCredential(ctx context.Context, ref string) (session.ServiceEntry, error) {
	c.n.Add(1)
	return c.ServiceCredentials.ResolveCredential(ctx, ref)
}

var serviceRoutes = []Route{
	{PathPrefix: "/public/", Access: Public},
	{PathPrefix: "/partners/", Access: Authenticated, Services: []string{"billing"}},
	{PathPrefix: "/internal/inventory/", Access: Internal, Services: []string{"inventory"}},
	{PathPrefix: "/internal/admin/", Access: Internal, Roles: []string{"admin"}},
	{PathPrefix: "/internal/", Access: Internal},
	{PathPrefix: "/blocked/", Access: Deny},
}

// serviceFixture is a fixture whose server resolves service credentials in
// the same store as sessions, as serve wires it.
func serviceFixture(t testing.TB, store session.Store, lookups *atomic.Int64) *fixture {
	t.Helper()
	return newFixture(t, store, func(o *Options) {
		o.Services = countingServices{store.(ServiceCredentials), lookups}
		o.Routes = serviceRoutes
		// These tests are about decisions, not timeouts: a loaded machine
		// under -race must not turn a slow Redis answer into a 503.
		o.StoreTimeout = 2 * time.Second
	})
}

// register creates a service with one credential and returns it.
func register(t testing.TB, store session.Store, name string, roles ...string) string {
	t.Helper()
	cred, err := session.NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	s := &session.Service{Name: name, Roles: roles, CreatedAt: time.Now().Truncate(time.Millisecond)}
	if err := store.(session.ServiceStore).CreateService(context.Background(), s, session.CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
	return cred
}

// serviceClaims verifies a service token as a downstream must: typ
// service+jwt and kind service.
func (f *fixture) serviceClaims(t testing.TB, tok, aud string) jwt.MapClaims {
	t.Helper()
	var c jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(tok, &c, func(tk *jwt.Token) (any, error) {
		k, _ := f.signer.Keys().PublicKey(tk.Header["kid"].(string))
		return k, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("sessiongate"), jwt.WithAudience(aud), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("service token does not verify: %v", err)
	}
	if parsed.Header["typ"] != token.TypService || c["kind"] != token.KindService {
		t.Fatalf("typ %v, kind %v: not a service token", parsed.Header["typ"], c["kind"])
	}
	if _, ok := c["sid"]; ok {
		t.Fatalf("service token carries sid %v", c["sid"])
	}
	return c
}

// TestAccessMatrix is the README's matrix: for each kind of route, what a
// browser user, a client holding a user bearer, a service and an anonymous
// caller get, over memory and real Redis.
func TestAccessMatrix(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := newStore(t)
			var lookups atomic.Int64
			f := serviceFixture(t, store, &lookups)
			user := f.login(t, "alice", []string{"admin"}, nil)
			billing := register(t, store, "billing", "payments")
			inventory := register(t, store, "inventory", "admin")
			callers := map[string]reqOpt{
				"browser":   withCookie("__Host-sid=" + user),
				"bearer":    withHeader("authorization", "Bearer "+user),
				"billing":   withHeader("authorization", "Bearer "+billing),
				"inventory": withHeader("authorization", "Bearer "+inventory),
				"anonymous": func(*authv3.CheckRequest) {},
			}
			for _, tc := range []struct {
				path string
				want map[string]int // caller → status; 200 = allowed with a token (public: without)
			}{
				{"/public/x", map[string]int{"browser": 200, "bearer": 200, "billing": 200, "inventory": 200, "anonymous": 200}},
				{"/api/x", map[string]int{"browser": 200, "bearer": 200, "billing": 403, "inventory": 403, "anonymous": 401}},
				{"/partners/x", map[string]int{"browser": 200, "bearer": 200, "billing": 200, "inventory": 403, "anonymous": 401}},
				{"/internal/x", map[string]int{"browser": 403, "bearer": 403, "billing": 200, "inventory": 200, "anonymous": 401}},
				{"/internal/inventory/x", map[string]int{"browser": 403, "bearer": 403, "billing": 403, "inventory": 200, "anonymous": 401}},
				{"/internal/admin/x", map[string]int{"browser": 403, "bearer": 403, "billing": 403, "inventory": 200, "anonymous": 401}},
				{"/blocked/x", map[string]int{"browser": 403, "bearer": 403, "billing": 403, "inventory": 403, "anonymous": 403}},
			} {
				for caller, want := range tc.want {
					req := request("GET", tc.path, callers[caller], withHeader("accept", "application/json"))
					resp := f.check(t, req)
					if got := status(resp); got != want {
						t.Errorf("%s as %s: %d, want %d", tc.path, caller, got, want)
						continue
					}
					if got := upstream(req.Attributes.Request.Http.Headers, resp); got["authorization"] != "" && want == 200 {
						t.Errorf("%s as %s: authorization %q reaches the upstream", tc.path, caller, got["authorization"])
					}
					tok, has := okHeader(t, resp, tokenHeader)
					switch {
					case want != 200 || strings.HasPrefix(tc.path, "/public/"):
						if has {
							t.Errorf("%s as %s: token on a %d", tc.path, caller, want)
						}
					case caller == "billing" || caller == "inventory":
						c := f.serviceClaims(t, tok, "internal")
						if c["sub"] != caller {
							t.Errorf("%s as %s: sub %v", tc.path, caller, c["sub"])
						}
					default:
						if c := f.claims(t, tok, "internal"); c["kind"] != token.KindUser || c["sub"] != "alice" {
							t.Errorf("%s as %s: kind %v, sub %v", tc.path, caller, c["kind"], c["sub"])
						}
					}
				}
			}
		})
	}
}

func TestServiceCheck(t *testing.T) {
	ctx := context.Background()
	store := session.NewMemoryStore(nil)
	var lookups atomic.Int64
	f := serviceFixture(t, store, &lookups)
	cred := register(t, store, "billing", "payments", "reader")
	user := f.login(t, "alice", nil, nil)

	t.Run("the token names the service, its roles and the route audience", func(t *testing.T) {
		resp := f.check(t, request("GET", "/internal/x", withHeader("authorization", "Bearer "+cred), withExt("audience", "inventory")))
		tok, ok := okHeader(t, resp, tokenHeader)
		if !ok {
			t.Fatalf("status %d", status(resp))
		}
		c := f.serviceClaims(t, tok, "inventory")
		roles, _ := c["roles"].([]any)
		if c["sub"] != "billing" || len(roles) != 2 || roles[0] != "payments" {
			t.Fatalf("claims %v", c)
		}
		md := resp.GetDynamicMetadata().GetFields()
		if md["subject"].GetStringValue() != "billing" || md["kind"].GetStringValue() != "service" ||
			md["credential_ref"].GetStringValue() != session.CredentialRefOf(cred) {
			t.Fatalf("metadata %v", md)
		}
	})

	t.Run("no copy of the credential reaches the upstream", func(t *testing.T) {
		req := request("GET", "/internal/x", withHeader("authorization", "Bearer "+cred),
			withCookie("theme=dark; copy="+cred+"; x=SGSVC_whatever"))
		resp := f.check(t, req)
		up := upstream(req.Attributes.Request.Http.Headers, resp)
		if status(resp) != 200 || up["cookie"] != "theme=dark" || up["authorization"] != "" {
			t.Fatalf("status %d, upstream cookie %q, authorization %q", status(resp), up["cookie"], up["authorization"])
		}
	})

	t.Run("a public route passes no credential on either", func(t *testing.T) {
		req := request("GET", "/public/x", withHeader("authorization", "Basic "+cred), withCookie("k="+cred+"; theme=dark"))
		resp := f.check(t, req)
		up := upstream(req.Attributes.Request.Http.Headers, resp)
		if status(resp) != 200 || up["authorization"] != "" || up["cookie"] != "theme=dark" {
			t.Fatalf("upstream %v", up)
		}
	})

	before := lookups.Load()
	touches := f.touches.Load()
	for _, tc := range []struct {
		name string
		req  reqOpt
		path string
		want int
	}{
		{"a bad checksum", withHeader("authorization", "Bearer "+cred[:len(cred)-1]+flipLast(cred)), "/internal/x", 401},
		{"the upper-case prefix", withHeader("authorization", "Bearer SGSVC_"+cred[6:]), "/internal/x", 401},
		{"a truncated credential", withHeader("authorization", "Bearer "+cred[:30]), "/internal/x", 401},
		{"a credential with a session cookie", func(r *authv3.CheckRequest) {
			withHeader("authorization", "Bearer "+cred)(r)
			withCookie("__Host-sid=" + user)(r)
		}, "/internal/x", 401},
		{"a credential in the session cookie", withCookie("__Host-sid=" + cred), "/internal/x", 401},
		{"a session ID behind the prefix", withHeader("authorization", "Bearer sgsvc_"+user), "/internal/x", 401},
		{"a valid credential on a route admitting no service", withHeader("authorization", "Bearer "+cred), "/api/x", 403},
		{"a user session on an internal route", withCookie("__Host-sid=" + user), "/internal/x", 403},
		{"a user bearer on an internal route", withHeader("authorization", "Bearer "+user), "/internal/x", 403},
	} {
		if got := status(f.check(t, request("GET", tc.path, tc.req))); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if n := lookups.Load() - before; n != 0 {
		t.Errorf("%d credential lookups for requests refused by form or route", n)
	}
	if n := f.touches.Load() - touches; n != 0 {
		t.Errorf("%d session touches for requests refused by form or route", n)
	}

	t.Run("a browser navigation to an internal route gets 401, not the login page", func(t *testing.T) {
		resp := f.check(t, request("GET", "/internal/x", withHeader("accept", "text/html")))
		if status(resp) != 401 {
			t.Fatalf("status %d", status(resp))
		}
	})

	t.Run("a revoked credential is refused on the next Check, cached token or not", func(t *testing.T) {
		second := register(t, store, "shipping")
		req := request("GET", "/internal/x", withHeader("authorization", "Bearer "+second))
		if status(f.check(t, req)) != 200 {
			t.Fatal("setup")
		}
		if _, err := store.DeleteService(ctx, "shipping"); err != nil {
			t.Fatal(err)
		}
		if got := status(f.check(t, req)); got != 401 {
			t.Fatalf("after delete: %d", got)
		}
	})

	t.Run("context_extensions make a route internal and restrict services", func(t *testing.T) {
		for _, tc := range []struct {
			ext  map[string]string
			opt  reqOpt
			want int
		}{
			{map[string]string{"access": "internal"}, withCookie("__Host-sid=" + user), 403},
			{map[string]string{"access": "internal"}, withHeader("authorization", "Bearer "+cred), 200},
			{map[string]string{"access": "internal", "services": "inventory, shipping"}, withHeader("authorization", "Bearer "+cred), 403},
			{map[string]string{"access": "internal", "services": "shipping,billing"}, withHeader("authorization", "Bearer "+cred), 200},
			{map[string]string{"services": "billing"}, withHeader("authorization", "Bearer "+cred), 200},
			{map[string]string{"services": "billing"}, withCookie("__Host-sid=" + user), 200},
			{map[string]string{"access": "internal", "services": "Billing"}, withHeader("authorization", "Bearer "+cred), 403},
			{map[string]string{"access": "internal", "services": ""}, withHeader("authorization", "Bearer "+cred), 403},
			{map[string]string{"access": "internal", "services": "billing,"}, withHeader("authorization", "Bearer "+cred), 403},
		} {
			opts := []reqOpt{tc.opt}
			for k, v := range tc.ext {
				opts = append(opts, withExt(k, v))
			}
			if got := status(f.check(t, request("GET", "/api/x", opts...))); got != tc.want {
				t.Errorf("context_extensions %v: %d, want %d", tc.ext, got, tc.want)
			}
		}
	})

	t.Run("a reload applies new services lists", func(t *testing.T) {
		req := request("GET", "/internal/x", withHeader("authorization", "Bearer "+cred))
		f.srv.SetRoutes([]Route{{PathPrefix: "/internal/", Access: Internal, Services: []string{"inventory"}}})
		t.Cleanup(func() { f.srv.SetRoutes(serviceRoutes) })
		if got := status(f.check(t, req)); got != 403 {
			t.Fatalf("after reload: %d", got)
		}
	})

	t.Run("an internal rule matches case-insensitively", func(t *testing.T) {
		if got := status(f.check(t, request("GET", "/INTERNAL/x", withCookie("__Host-sid="+user)))); got != 403 {
			t.Fatalf("/INTERNAL/ as a user: %d", got)
		}
	})
}

// TestServiceCheckWithoutServiceStore: a server not wired to a service
// store refuses every credential as unknown.
func TestServiceCheckWithoutServiceStore(t *testing.T) {
	store := session.NewMemoryStore(nil)
	f := newFixture(t, store, func(o *Options) { o.Routes = serviceRoutes })
	cred := register(t, store, "billing")
	if got := status(f.check(t, request("GET", "/internal/x", withHeader("authorization", "Bearer "+cred)))); got != 401 {
		t.Fatalf("status %d", got)
	}
}

func flipLast(s string) string {
	if s[len(s)-1] == 'A' {
		return "B"
	}
	return "A"
}

func TestParseServices(t *testing.T) {
	for in, want := range map[string][]string{
		"billing":              {"billing"},
		"billing,inventory":    {"billing", "inventory"},
		" billing , inventory": {"billing", "inventory"},
	} {
		got, err := ParseServices(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseServices(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", ",", "billing,", "Billing", "bill ing", "a\nb", "billing;inventory"} {
		if got, err := ParseServices(in); err == nil {
			t.Errorf("ParseServices(%q) = %v", in, got)
		}
	}
}
