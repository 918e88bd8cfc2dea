package session

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestRedisListPageContinuesPastStaleRuns pins the bound on one page's
// work: a run of stale index entries longer than listRounds reads can skip
// yields empty pages that still carry a position, the walk reaches the
// sessions behind the run, and the run is pruned on the way.
func TestRedisListPageContinuesPastStaleRuns(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	st := NewRedisStore(rdb)
	ctx := context.Background()

	first := newSession(t, "uma", time.Hour, time.Hour)
	mustCreate(t, st, first, Limit{})
	// 20 entries whose session keys are gone, at positions 2..21, as a
	// partial failure or expiry leaves them.
	for i := range 20 {
		if err := rdb.ZAdd(ctx, userKey("uma"), redis.Z{Score: float64(i + 2), Member: RefOf(mustID(t))}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	last := newSession(t, "uma", time.Hour, time.Hour)
	mustCreate(t, st, last, Limit{})

	// limit 1: each round reads 2 entries, so 4 rounds skip 8 stale ones.
	refs, sizes := walk(t, st, "uma", 1)
	if !slices.Equal(refs, []string{first.Ref, last.Ref}) || !slices.Equal(sizes, []int{1, 0, 0, 1}) {
		t.Fatalf("walk = %v in pages %v, want [first last] in pages [1 0 0 1]", refs, sizes)
	}
	if n, err := rdb.ZCard(ctx, userKey("uma")).Result(); err != nil || n != 2 {
		t.Fatalf("index holds %d entries after the walk (%v), want 2", n, err)
	}
}
