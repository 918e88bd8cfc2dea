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
