package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
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

// TestCacheHitAllocatesNothing: a Touch answered from the cache allocates
// nothing (the record is returned by value; its strings are the cached ones).
func TestCacheHitAllocatesNothing(t *testing.T) {
	srv := redistest.Start(t)
	st := cachedStore(t, srv.URL(), CacheOptions{})
	ctx := context.Background()
	s := newSession(t, "allocs", time.Minute, time.Hour)
	mustCreate(t, st, s, Limit{})
	if !redistest.Eventually(ctx, 5*time.Second, func() bool {
		h := st.CacheStats().Hits
		_, err := st.Touch(ctx, s.Ref)
		return err == nil && st.CacheStats().Hits > h
	}) {
		t.Fatal("never a hit")
	}
	misses := st.CacheStats().Misses
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := st.Touch(ctx, s.Ref); err != nil {
			t.Fatal(err)
		}
	})
	// A heartbeat being read at the wrong moment turns a hit into a miss,
	// which allocates: count only runs without one.
	if st.CacheStats().Misses == misses && allocs != 0 {
		t.Fatalf("cache hit: %v allocs, want 0", allocs)
	}
	if m := st.CacheStats().Misses - misses; m > 50 {
		t.Fatalf("%d of 1000 warm Touches missed the cache", m)
	}
}

func BenchmarkTouchCacheHit(b *testing.B) {
	srv := redistest.Start(b)
	rdb, err := NewRedisClient(srv.URL(), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	st := NewRedisStore(rdb)
	b.Cleanup(func() { st.Close() })
	if err := st.EnableCache(CacheOptions{MaxEntries: 1000}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if !redistest.Eventually(ctx, 10*time.Second, func() bool { return st.CacheStats().TrackingUp }) {
		b.Fatal("no tracking")
	}
	now := time.Now()
	id, _ := NewID()
	s := &Session{Ref: RefOf(id), Subject: "bench", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
	if _, err := st.Create(ctx, s, Limit{}); err != nil {
		b.Fatal(err)
	}
	st.Touch(ctx, s.Ref)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := st.Touch(ctx, s.Ref); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cs := st.CacheStats()
	b.ReportMetric(float64(cs.Hits)/float64(cs.Hits+cs.Misses), "hit-ratio")
}
