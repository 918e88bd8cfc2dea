package authz

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
)

var testSPIFFE = SPIFFE{
	Principals:  map[string]string{"spiffe://partner.example/payments/worker": "billing", "spiffe://cluster.local/ns/ops/sa/robot": "inventory"},
	TrustDomain: "cluster.local",
}

// principalCases map principals to the service they are (or "" for
// anonymous) under testSPIFFE; they seed FuzzSPIFFEPrincipal.
var principalCases = []struct {
	principal, want string
}{
	{"spiffe://partner.example/payments/worker", "billing"},
	{"spiffe://cluster.local/ns/shop/sa/shipping", "shipping"},
	{"spiffe://cluster.local/ns/ops/sa/robot", "inventory"}, // the exact map wins
	{"", ""},
	{"spiffe://partner.example/payments/other", ""},
	{"spiffe://other.local/ns/shop/sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/Shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/shipping/extra", ""},
	{"spiffe://cluster.local/ns/shop/sa/", ""},
	{"spiffe://cluster.local/ns//sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/xa/shipping", ""},
	{"spiffe://cluster.local/sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/../sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/ship%70ing", ""},
	{"spiffe://CLUSTER.LOCAL/ns/shop/sa/shipping", ""},
	{"spiffe://cluster.local:443/ns/shop/sa/shipping", ""},
	{"SPIFFE://cluster.local/ns/shop/sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/shipping?x=1", ""},
	{"https://cluster.local/ns/shop/sa/shipping", ""},
	{"spiffe://cluster.local/ns/shop/sa/ship\u0131ng", ""},
	{"cluster.local/ns/shop/sa/shipping", ""},
}

func TestSPIFFEService(t *testing.T) {
	m, err := NewSPIFFE(testSPIFFE.Principals, testSPIFFE.TrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range principalCases {
		got, ok := m.service(tc.principal)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("service(%q) = %q, %v; want %q", tc.principal, got, ok, tc.want)
		}
	}
	noTD, _ := NewSPIFFE(testSPIFFE.Principals, "")
	if name, ok := noTD.service("spiffe://cluster.local/ns/shop/sa/shipping"); ok {
		t.Errorf("without a trust domain rule: %q", name)
	}
}

func TestNewSPIFFERefuses(t *testing.T) {
	for _, tc := range []struct {
		principals map[string]string
		td         string
	}{
		{map[string]string{"https://x/y": "billing"}, ""},
		{map[string]string{"spiffe://x": "billing"}, ""},
		{map[string]string{"spiffe://x/": "billing"}, ""},
		{map[string]string{"spiffe://x/a//b": "billing"}, ""},
		{map[string]string{"spiffe://x/y": "Billing"}, ""},
		{map[string]string{"spiffe://x/y": ""}, ""},
		{nil, "Cluster.Local"},
		{nil, "cluster.local/ns"},
		{nil, "cluster local"},
	} {
		if _, err := NewSPIFFE(tc.principals, tc.td); err == nil {
			t.Errorf("NewSPIFFE(%v, %q) accepted", tc.principals, tc.td)
		}
	}
}

func FuzzSPIFFEPrincipal(f *testing.F) {
	for _, tc := range principalCases {
		f.Add(tc.principal)
	}
	m, err := NewSPIFFE(testSPIFFE.Principals, testSPIFFE.TrustDomain)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, principal string) {
		name, ok := m.service(principal)
		if !ok {
			return
		}
		if _, exact := m.Principals[principal]; exact {
			return
		}
		// Whatever the trust-domain rule accepts is exactly Istio's form in
		// that domain, and the name is its last segment.
		want := "spiffe://cluster.local/ns/"
		if !session.ValidServiceName(name) || !strings.HasPrefix(principal, want) ||
			!strings.HasSuffix(principal, "/sa/"+name) || strings.Count(principal, "/") != 6 {
			t.Fatalf("service(%q) = %q", principal, name)
		}
	})
}

func withPrincipal(p string) reqOpt {
	return func(r *authv3.CheckRequest) {
		r.Attributes.Source = &authv3.AttributeContext_Peer{Principal: p}
	}
}

func TestPrincipalCheck(t *testing.T) {
	store := session.NewMemoryStore(nil)
	var lookups atomic.Int64
	var names atomic.Int64
	f := newFixture(t, store, func(o *Options) {
		o.Services = countingNames{countingServices{store, &lookups}, &names}
		o.Routes = serviceRoutes
		o.SPIFFE = testSPIFFE
	})
	register(t, store, "billing", "payments")
	cred := register(t, store, "inventory", "admin")
	user := f.login(t, "alice", nil, nil)
	billing := withPrincipal("spiffe://partner.example/payments/worker")
	shipping := withPrincipal("spiffe://cluster.local/ns/shop/sa/shipping") // mapped, not registered
	stranger := withPrincipal("spiffe://other.example/x")

	for _, tc := range []struct {
		name string
		path string
		opts []reqOpt
		want int
		sub  string
	}{
		{"a mapped, registered principal on an internal route", "/internal/x", []reqOpt{billing}, 200, "billing"},
		{"a mapped principal not registered", "/internal/x", []reqOpt{shipping}, 200, "shipping"},
		{"a principal mapping to nothing", "/internal/x", []reqOpt{stranger}, 401, ""},
		{"a mapped principal on a route for another service", "/internal/inventory/x", []reqOpt{billing}, 403, ""},
		{"a mapped principal listed on an authenticated route", "/partners/x", []reqOpt{billing}, 200, "billing"},
		{"a mapped principal on a users-only route", "/api/x", []reqOpt{billing}, 403, ""},
		{"an unregistered principal where a role is needed", "/internal/admin/x", []reqOpt{shipping}, 403, ""},
		{"a user session over a mapped connection decides", "/internal/x", []reqOpt{billing, withCookie("__Host-sid=" + user)}, 403, ""},
		{"a user session over a mapped connection on a user route", "/api/x", []reqOpt{billing, withCookie("__Host-sid=" + user)}, 200, "alice"},
		{"a credential over a mapped connection decides", "/internal/admin/x", []reqOpt{billing, withHeader("authorization", "Bearer "+cred)}, 200, "inventory"},
		{"a public route ignores the principal", "/public/x", []reqOpt{billing}, 200, ""},
	} {
		resp := f.check(t, request("GET", tc.path, tc.opts...))
		if got := status(resp); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
			continue
		}
		tok, ok := okHeader(t, resp, tokenHeader)
		if tc.sub == "" {
			if ok {
				t.Errorf("%s: a token", tc.name)
			}
			continue
		}
		if tc.sub == "alice" {
			f.claims(t, tok, "internal")
			continue
		}
		c := f.serviceClaims(t, tok, "internal")
		if c["sub"] != tc.sub {
			t.Errorf("%s: sub %v", tc.name, c["sub"])
		}
		if tc.sub == "shipping" {
			if roles, _ := c["roles"].([]any); len(roles) != 0 {
				t.Errorf("%s: roles %v for a service that is not registered", tc.name, roles)
			}
		}
	}

	t.Run("refusals by route cost no store round trip", func(t *testing.T) {
		before := names.Load()
		for _, path := range []string{"/internal/inventory/x", "/api/x"} {
			f.check(t, request("GET", path, billing))
		}
		if n := names.Load() - before; n != 0 {
			t.Fatalf("%d lookups", n)
		}
	})

	t.Run("roles follow the registration on the next Check", func(t *testing.T) {
		req := request("GET", "/internal/x", shipping)
		first, _ := okHeader(t, f.check(t, req), tokenHeader)
		if err := store.CreateService(context.Background(), &session.Service{Name: "shipping", Roles: []string{"courier"}},
			session.CredentialRefOf(mustCredential(t))); err != nil {
			t.Fatal(err)
		}
		tok, _ := okHeader(t, f.check(t, req), tokenHeader)
		if tok == first {
			t.Fatal("cached token served after the service was registered")
		}
		if roles, _ := f.serviceClaims(t, tok, "internal")["roles"].([]any); len(roles) != 1 || roles[0] != "courier" {
			t.Fatalf("roles %v", roles)
		}
		if _, err := store.DeleteService(context.Background(), "shipping"); err != nil {
			t.Fatal(err)
		}
		tok, _ = okHeader(t, f.check(t, req), tokenHeader)
		if roles, _ := f.serviceClaims(t, tok, "internal")["roles"].([]any); len(roles) != 0 {
			t.Fatalf("roles %v after delete", roles)
		}
	})

	t.Run("a reload replaces the mapping", func(t *testing.T) {
		f.srv.SetSPIFFE(SPIFFE{})
		t.Cleanup(func() { f.srv.SetSPIFFE(testSPIFFE) })
		if got := status(f.check(t, request("GET", "/internal/x", billing))); got != 401 {
			t.Fatalf("after reload: %d", got)
		}
	})
}

type countingNames struct {
	countingServices
	n *atomic.Int64
}

func (c countingNames) ResolveServiceName(ctx context.Context, name string) (session.ServiceEntry, error) {
	c.n.Add(1)
	return c.countingServices.ServiceCredentials.ResolveServiceName(ctx, name)
}

func mustCredential(t testing.TB) string {
	t.Helper()
	c, err := session.NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzParseServices: whatever the context_extensions services parser
// accepts is a list of valid service names that reads back the same.
func FuzzParseServices(f *testing.F) {
	for _, s := range []string{"billing", "billing,inventory", " billing , inventory", "", ",", "billing,", "Billing", "a\nb", "billing;inventory"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		names, err := ParseServices(v)
		if err != nil {
			return
		}
		if len(names) == 0 {
			t.Fatalf("ParseServices(%q) accepted an empty list", v)
		}
		for _, n := range names {
			if !session.ValidServiceName(n) {
				t.Fatalf("ParseServices(%q) returned %q", v, n)
			}
		}
		again, err := ParseServices(strings.Join(names, ","))
		if err != nil || strings.Join(again, ",") != strings.Join(names, ",") {
			t.Fatalf("ParseServices(%q) = %v does not read back: %v, %v", v, names, again, err)
		}
	})
}
