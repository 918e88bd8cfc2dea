package authz

import (
	"context"
	"log/slog"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// BenchmarkCheckPolicies is BenchmarkCheck/warm/memory with each policy
// that judges a resolved session turned on and passed: the policy's own
// cost on the Check path.
func BenchmarkCheckPolicies(b *testing.B) {
	device := session.Device{UserAgent: firefox115, IP: "198.51.100.23"}
	geo := testGeoIP(b)
	for _, bc := range []struct {
		name string
		o    func(*Options)
		opts []reqOpt
	}{
		{"off", func(*Options) {}, nil},
		{"binding/user-agent", func(o *Options) { o.Binding = Binding{UserAgent: true, Action: PolicyRevoke} },
			[]reqOpt{withHeader("user-agent", firefox128)}},
		{"binding/network", func(o *Options) { o.Binding = Binding{IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke} },
			[]reqOpt{withSource("198.51.100.9")}},
		{"binding/network-xff", func(o *Options) {
			o.Binding = Binding{IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke}
			o.XFFTrustedHops = 2
		}, []reqOpt{withHeader("x-forwarded-for", "203.0.113.1, 198.51.100.9, 10.0.0.2")}},
		{"binding/all", func(o *Options) {
			o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyRevoke}
		},
			[]reqOpt{withHeader("user-agent", firefox128), withSource("198.51.100.9")}},
		{"binding/log-moved", func(o *Options) { o.Binding = Binding{IPv4Bits: 24, Action: PolicyLog} },
			[]reqOpt{withSource("203.0.113.9")}},
		{"anomaly/rate", func(o *Options) { o.Anomaly = Anomaly{MaxRate: 1 << 30, Action: PolicyRevoke} }, nil},
		{"anomaly/country", func(o *Options) { o.Anomaly = Anomaly{CountryChange: true, CountryAction: PolicyRevoke}; o.GeoIP = geo },
			[]reqOpt{withSource("198.51.100.9")}},
		{"all", func(o *Options) {
			o.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyLog}
			o.Anomaly = Anomaly{MaxRate: 1 << 30, Action: PolicyRevoke, CountryChange: true, CountryAction: PolicyRevoke}
			o.GeoIP = geo
		}, []reqOpt{withHeader("user-agent", firefox128), withSource("198.51.100.9")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Quiet: a log line in the benchmark output breaks benchstat.
			f := newFixture(b, session.NewMemoryStore(nil), bc.o, func(o *Options) { o.Log = slog.New(slog.DiscardHandler) })
			id := f.loginFrom(b, device)
			opts := append([]reqOpt{withCookie("theme=dark; __Host-sid=" + id), withHeader("accept", "application/json")}, bc.opts...)
			req := request("GET", "/api/items?page=2", opts...)
			if status(f.check(b, req)) != 200 {
				b.Fatal("setup check failed")
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				f.srv.Check(ctx, req)
			}
		})
	}
}
