package exchange

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTokenExchange is one token exchange through the handler: client
// credential lookup, subject token verification, policy, live-session read
// and an ES256 signature, over memory and a real Redis. Serial, so ns/op is
// the latency of one exchange on one core; parallel, the throughput of the
// machine's cores.
func BenchmarkTokenExchange(b *testing.B) {
	for name, newStore := range stores(b) {
		f := newFixture(b, newStore(b))
		h := f.srv.Config.Handler
		body := exchangeForm(f.userToken(b, "billing"), "inventory")
		one := func(b *testing.B) {
			req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(body))
			req.Header.Set("Content-Type", form)
			req.Header.Set("Authorization", "Bearer "+f.billing)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				one(b)
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					one(b)
				}
			})
		})
	}
}
