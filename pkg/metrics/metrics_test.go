package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/pkg/session"
)

func TestInstrumentedStoreCounts(t *testing.T) {
	m := New(prometheus.NewRegistry())
	st := m.Store(session.NewMemoryStore(nil))
	ctx := context.Background()
	now := time.Now()
	for range 3 {
		id, _ := session.NewID()
		s := &session.Session{Ref: session.RefOf(id), Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Minute}
		if _, err := st.Create(ctx, s, session.Limit{MaxPerUser: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Touch(ctx, session.RefOf("unknown")); !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	if n, err := st.DeleteUser(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("%d %v", n, err)
	}
	if got := testutil.ToFloat64(m.SessionsCreated); got != 3 {
		t.Errorf("created = %v", got)
	}
	if got := testutil.ToFloat64(m.SessionsRevoked); got != 3 { // one eviction + two revocations
		t.Errorf("revoked = %v", got)
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues("touch")); got != 0 {
		t.Errorf("not-found counted as a store error: %v", got)
	}
	if got := testutil.CollectAndCount(m.StoreDuration); got < 3 {
		t.Errorf("store duration series = %d", got)
	}
}

func TestRegisterCacheReadsStats(t *testing.T) {
	reg := prometheus.NewRegistry()
	stats := session.CacheStats{Hits: 7, Misses: 3, Invalidations: 2, TrackingUp: true}
	RegisterCache(reg, func() session.CacheStats { return stats })
	want := map[string]float64{
		"sessiongate_cache_hits_total":          7,
		"sessiongate_cache_misses_total":        3,
		"sessiongate_cache_invalidations_total": 2,
		"sessiongate_cache_tracking_up":         1,
	}
	check := func() {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				got[mf.GetName()] = c.GetValue()
			} else {
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
	}
	check()
	stats.TrackingUp = false
	want["sessiongate_cache_tracking_up"] = 0
	check()
}
