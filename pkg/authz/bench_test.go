package authz

import (
	"context"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// BenchmarkCheck measures the whole Check handler for an authenticated
// request: warm (token cached, in-memory store: the handler's own cost) and
// with a real Redis round trip on loopback.
func BenchmarkCheck(b *testing.B) {
	run := func(b *testing.B, st session.Store) {
		t := &testing.T{}
		f := newFixture(t, st)
		id := f.login(t, "alice", []string{"dev"}, map[string]string{"email": "alice@example.com"})
		req := request("GET", "/api/items?page=2", withCookie("theme=dark; __Host-sid="+id), withHeader("accept", "application/json"))
		if status(f.check(t, req)) != 200 {
			b.Fatal("setup check failed")
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := f.srv.Check(ctx, req); err != nil {
				b.Fatal(err)
			}
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

// BenchmarkCheckDenied is the cost of turning away a request without a
// session: no store access, a shared prebuilt answer.
func BenchmarkCheckDenied(b *testing.B) {
	f := newFixture(&testing.T{}, session.NewMemoryStore(nil))
	req := request("GET", "/api/items", withHeader("accept", "application/json"))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		f.srv.Check(ctx, req)
	}
}

func BenchmarkCleanPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		cleanPath("/api/v1/items/12345/details?expand=true")
	}
}

func BenchmarkSplitCookie(b *testing.B) {
	h := "theme=dark; _ga=GA1.2.3.4; __Host-sid=ZCGeV77fE9EYNGb7Ybw-htAF4sx3gGbmcuX5CSyFJkk; lang=en"
	b.ReportAllocs()
	for b.Loop() {
		splitCookie(h, "__Host-sid")
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		match(testRoutes, "GET", "/api/v1/items")
	}
}
