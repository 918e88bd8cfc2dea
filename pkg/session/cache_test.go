package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/redistest"
)

// cachedStore is a RedisStore over srv with the cache on, once the
// invalidation link is confirmed.
func cachedStore(t *testing.T, url string, o CacheOptions) *RedisStore {
	t.Helper()
	rdb, err := NewRedisClient(url, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st := NewRedisStore(rdb)
	t.Cleanup(func() { st.Close() })
	if o.MaxEntries == 0 {
		o.MaxEntries = 1000
	}
	if err := st.EnableCache(o); err != nil {
		t.Fatal(err)
	}
	if err := st.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitTracking(t, st)
	return st
}

func waitTracking(t *testing.T, st *RedisStore) {
	t.Helper()
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool { return st.CacheStats().TrackingUp }) {
		t.Fatal("invalidation link never confirmed")
	}
}

func TestCacheHitAndRevoke(t *testing.T) {
	srv := redistest.Start(t)
	a := cachedStore(t, srv.URL(), CacheOptions{})
	b := cachedStore(t, srv.URL(), CacheOptions{})
	ctx := context.Background()
	s := newSession(t, "cache-hit", time.Minute, time.Hour)
	mustCreate(t, a, s, Limit{})
	for _, st := range []*RedisStore{a, b} {
		for range 3 {
			if _, err := st.Touch(ctx, s.Ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, st := range map[string]*RedisStore{"a": a, "b": b} {
		if cs := st.CacheStats(); cs.Hits != 2 || cs.Misses != 1 {
			t.Fatalf("%s: stats %+v, want 2 hits 1 miss", name, cs)
		}
	}
	if err := a.Delete(ctx, s.Ref); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Touch(ctx, s.Ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a after its own delete: %v", err)
	}
	if !redistest.Eventually(ctx, time.Second, func() bool {
		_, err := b.Touch(ctx, s.Ref)
		return errors.Is(err, ErrNotFound)
	}) {
		t.Fatal("b still serves the revoked session")
	}
}
