package authz

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// BenchmarkCheckService measures Check for a request with a service
// credential beside the same Check for a user session, over the same store:
// warm (token cached, memory store) and with a real Redis round trip. A
// service Check must cost no more than a user's.
func BenchmarkCheckService(b *testing.B) {
	run := func(b *testing.B, st session.Store) {
		var lookups atomic.Int64
		f := serviceFixture(b, st, &lookups)
		id := f.login(b, "alice", []string{"dev"}, map[string]string{"email": "alice@example.com"})
		cred := register(b, st, "billing", "dev")
		for _, c := range []struct {
			name string
			opt  reqOpt
			path string
		}{
			{"user", withCookie("theme=dark; __Host-sid=" + id), "/api/items?page=2"},
			{"service", withHeader("authorization", "Bearer "+cred), "/internal/items?page=2"},
		} {
			b.Run(c.name, func(b *testing.B) {
				req := request("GET", c.path, c.opt, withHeader("accept", "application/json"))
				if status(f.check(b, req)) != 200 {
					b.Fatal("setup check failed")
				}
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.srv.Check(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("warm/memory", func(b *testing.B) { run(b, session.NewMemoryStore(nil)) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		rdb, err := session.NewRedisClient(srv.URL(), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		st := session.NewRedisStore(rdb)
		b.Cleanup(func() { st.Close() })
		run(b, st)
	})
}

// TestServiceCheckAllocations holds a service Check to the user Check's
// allocation budget, warm over memory (the handler's own cost) and over a
// real Redis (the store client's too).
func TestServiceCheckAllocations(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := newStore(t)
			var lookups atomic.Int64
			f := serviceFixture(t, st, &lookups)
			id := f.login(t, "alice", []string{"dev"}, nil)
			cred := register(t, st, "billing", "dev")
			user := request("GET", "/api/items", withCookie("theme=dark; __Host-sid="+id))
			svc := request("GET", "/internal/items", withHeader("authorization", "Bearer "+cred))
			ctx := context.Background()
			measure := func(req *authv3.CheckRequest) float64 {
				if status(f.check(t, req)) != 200 {
					t.Fatal("setup: Check not allowed")
				}
				return testing.AllocsPerRun(200, func() { f.srv.Check(ctx, req) })
			}
			u, s := measure(user), measure(svc)
			if s > u {
				t.Errorf("a service Check costs %.1f allocations, a user Check %.1f", s, u)
			}
			if name == "memory" && s > 6 {
				t.Errorf("a warm service Check costs %.1f allocations, want at most 6 (as a user's)", s)
			}
			t.Logf("%s: user %.1f, service %.1f allocations per Check", name, u, s)
		})
	}
}
