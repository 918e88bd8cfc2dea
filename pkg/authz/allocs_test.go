package authz

import (
	"context"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// The allocation counts that comments in this package promise, held as
// tests: a regression fails make test instead of waiting for a benchmark
// table to be read.
func TestAllocationPromises(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	id := f.login(t, "alice", []string{"dev"}, map[string]string{"email": "alice@example.com"})
	ctx := context.Background()
	warm := request("GET", "/api/items?page=2", withCookie("theme=dark; __Host-sid="+id))
	if status(f.check(t, warm)) != 200 {
		t.Fatal("setup: warm Check not allowed")
	}
	c, ok := f.srv.cache.get(cacheKey{ref: session.RefOf(id), version: 1, audience: "internal", kid: f.signer.Keys().ActiveKID()}, f.srv.o.Now())
	if !ok {
		t.Fatal("setup: token not cached")
	}
	// The same warm Check on a server with envoy.dynamic_metadata off:
	// the switch may lower the count, never raise it.
	fOff := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.NoDynamicMetadata = true })
	idOff := fOff.login(t, "alice", []string{"dev"}, map[string]string{"email": "alice@example.com"})
	warmOff := request("GET", "/api/items?page=2", withCookie("theme=dark; __Host-sid="+idOff))
	if status(fOff.check(t, warmOff)) != 200 {
		t.Fatal("setup: warm Check without dynamic metadata not allowed")
	}
	h := headersOf(warm.Attributes.Request.Http)
	denied := request("GET", "/api/items")
	oneOther, twoOthers := "theme=dark; __Host-sid="+id, "a=1; __Host-sid="+id+"; b=2"

	tests := []struct {
		name string
		max  float64
		run  func()
	}{
		{"a denial costs no allocation", 0, func() {
			f.srv.Check(ctx, denied)
		}},
		{"a warm Check (token cached, memory store) costs six allocations", 6, func() {
			f.srv.Check(ctx, warm)
		}},
		{"a warm Check with dynamic metadata off costs at most six allocations", 6, func() {
			fOff.srv.Check(ctx, warmOff)
		}},
		{"a public answer without credentials is the shared one", 0, func() {
			f.srv.public(headers{m: map[string]string{"accept": "text/css"}})
		}},
		{"an allow answer costs one allocation", 1, func() { f.srv.ok(c, presented{from: fromCookie, cookie: "theme=dark", cookieChanged: true}) }},
		{"the cookie split of one other cookie allocates nothing", 0, func() { splitCookie(oneOther, "__Host-sid", "") }},
		{"the cookie split of two other cookies allocates the rebuilt header", 1, func() { splitCookie(twoOthers, "__Host-sid", "") }},
		{"the CSRF check allocates nothing", 0, func() { f.srv.csrfRefused(warm.Attributes.Request.Http, h, true) }},
		{"a canonical path costs nothing to check", 0, func() { cleanPath("/api/v1/items/12345/details?expand=true") }},
		{"the look-alike cookie search allocates nothing", 0, func() { containsFoldASCII("theme=dark-and-long", "__Host-sid") }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.run); got > tt.max {
			t.Errorf("%s: %.1f allocations, want at most %.0f", tt.name, got, tt.max)
		}
	}
}

// Each policy that judges a resolved session costs no allocation of its own
// when the request passes it: a warm Check stays at the six of
// TestAllocationPromises with the policy on.
func TestPolicyAllocationPromises(t *testing.T) {
	ctx := context.Background()
	device := session.Device{UserAgent: firefox115, IP: "198.51.100.23"}
	tests := []struct {
		name string
		o    func(*Options)
		opts []reqOpt
	}{
		{"user-agent binding", func(o *Options) { o.Binding = Binding{UserAgent: true, Action: PolicyRevoke} },
			[]reqOpt{withHeader("user-agent", firefox128)}},
		{"network binding, source.address", func(o *Options) { o.Binding = Binding{IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke} },
			[]reqOpt{withSource("198.51.100.9")}},
		{"network binding, X-Forwarded-For", func(o *Options) {
			o.Binding = Binding{IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke}
			o.XFFTrustedHops = 2
		}, []reqOpt{withSource("10.0.0.1"), withHeader("x-forwarded-for", "203.0.113.1, 198.51.100.9, 10.0.0.2")}},
		{"every binding", func(o *Options) {
			o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke}
		},
			[]reqOpt{withHeader("user-agent", firefox128), withSource("198.51.100.9")}},
		{"binding log, a network change already recorded", func(o *Options) { o.Binding = Binding{IPv4Bits: 24, Action: PolicyLog} },
			[]reqOpt{withSource("203.0.113.9")}},
		{"rate anomaly", func(o *Options) { o.Anomaly = Anomaly{MaxRate: 1 << 30, Action: PolicyRevoke} }, nil},
		{"every policy but GeoIP", func(o *Options) {
			o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyLog}
			o.Anomaly = Anomaly{MaxRate: 1 << 30, Action: PolicyRevoke}
		}, []reqOpt{withHeader("user-agent", firefox128), withSource("198.51.100.9")}},
	}
	geo := testGeoIP(t)
	tests = append(tests, struct {
		name string
		o    func(*Options)
		opts []reqOpt
	}{"country change", func(o *Options) { o.Anomaly = Anomaly{CountryChange: true, CountryAction: PolicyRevoke}; o.GeoIP = geo },
		[]reqOpt{withSource("198.51.100.9")}})
	tests = append(tests, struct {
		name string
		o    func(*Options)
		opts []reqOpt
	}{"every policy", func(o *Options) {
		o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyLog}
		o.Anomaly = Anomaly{MaxRate: 1 << 30, Action: PolicyRevoke, CountryChange: true, CountryAction: PolicyRevoke}
		o.GeoIP, o.XFFTrustedHops = geo, 1
	}, []reqOpt{withHeader("user-agent", firefox128), withHeader("x-forwarded-for", "198.51.100.9")}})
	for _, tt := range tests {
		f := newFixture(t, session.NewMemoryStore(nil), tt.o)
		id := f.loginFrom(t, device)
		req := request("GET", "/api/items?page=2", append([]reqOpt{withCookie("theme=dark; __Host-sid=" + id)}, tt.opts...)...)
		if got := status(f.check(t, req)); got != 200 {
			t.Fatalf("%s: setup Check answered %d", tt.name, got)
		}
		if got := testing.AllocsPerRun(100, func() { f.srv.Check(ctx, req) }); got > 6 {
			t.Errorf("%s: a warm Check costs %.1f allocations, want at most 6", tt.name, got)
		}
	}
}
