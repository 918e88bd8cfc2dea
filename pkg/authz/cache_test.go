package authz

import (
	"fmt"
	"testing"
	"time"
)

// TestTokenCacheBound: however many sessions pass through, the cache holds
// at most its configured number of entries, and what it still holds is
// served.
func TestTokenCacheBound(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name       string
		maxEntries int
		puts       int
		keepsAll   bool // few enough that no shard fills (about 31 of 100 per shard)
	}{
		{"below the bound", 3200, 1000, true},
		{"far beyond the bound", 320, 50_000, false},
		{"one entry per shard", 1, 5000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTokenCache(tc.maxEntries)
			for i := range tc.puts {
				k := cacheKey{ref: fmt.Sprintf("%032x", i), version: 1, audience: "internal", kid: "k"}
				c.put(k, cached{token: "t", refresh: now.Add(time.Minute)}, now)
			}
			total, hits := 0, 0
			for i := range c.shards {
				n := len(c.shards[i].m)
				if n > c.max {
					t.Fatalf("shard %d holds %d entries, bound %d", i, n, c.max)
				}
				total += n
			}
			for i := range tc.puts {
				k := cacheKey{ref: fmt.Sprintf("%032x", i), version: 1, audience: "internal", kid: "k"}
				if _, ok := c.get(k, now); ok {
					hits++
				}
			}
			if hits != total || total == 0 {
				t.Fatalf("%d entries held, %d served", total, hits)
			}
			if tc.keepsAll && total != tc.puts {
				t.Fatalf("%d of %d entries kept below the bound", total, tc.puts)
			}
		})
	}
}
