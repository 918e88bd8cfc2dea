package metrics

import (
	"context"
	"errors"
	"reflect"
	"regexp"
	"strings"
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

// Logins with refresh count as logins; a refresh is timed as its own op,
// and an invalid or reused token is not a store error.
func TestInstrumentedStoreRefresh(t *testing.T) {
	m := New(prometheus.NewRegistry())
	st := m.Store(session.NewMemoryStore(nil))
	ctx := context.Background()
	p := session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour}
	r0, _, err := st.CreateFamily(ctx, &session.Session{Subject: "rae", CreatedAt: time.Now()}, session.Limit{}, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Refresh(ctx, r0.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if fams, err := st.Families(ctx, "rae"); err != nil || len(fams) != 1 || fams[0] != r0.FamilyRef {
		t.Fatalf("Families through the instrumented store = %v, %v", fams, err)
	}
	if _, err := st.Refresh(ctx, r0.RefreshToken); !errors.Is(err, session.ErrRefreshReused) {
		t.Fatal(err)
	}
	if _, err := st.Refresh(ctx, "sgr_nonsense"); !errors.Is(err, session.ErrRefreshInvalid) {
		t.Fatal(err)
	}
	if err := st.RevokeFamily(ctx, r0.FamilyRef); !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.SessionsCreated); got != 1 {
		t.Errorf("created = %v", got)
	}
	if got := testutil.ToFloat64(m.SessionsRevoked); got != 1 { // the reuse
		t.Errorf("revoked = %v", got)
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues("refresh")); got != 0 {
		t.Errorf("invalid or reused tokens counted as store errors: %v", got)
	}
	if got := testutil.CollectAndCount(m.StoreDuration, "sessiongate_store_duration_seconds"); got < 2 {
		t.Errorf("store duration series = %d", got)
	}
}

// The catalog names exactly the collectors New creates, each with its type:
// every field of Metrics is described, and its Go type gives the metric's.
func TestCatalogIsWhatNewRegisters(t *testing.T) {
	m := New(nil)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	got := map[string]string{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		var typ string
		// A Gauge has every method of a Counter: ask for it first.
		switch c.(type) {
		case *prometheus.GaugeVec, prometheus.Gauge:
			typ = "gauge"
		case *prometheus.CounterVec, prometheus.Counter:
			typ = "counter"
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = "histogram"
		default:
			t.Fatalf("field %s: collector of unknown type %T", v.Type().Field(i).Name, c)
		}
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			match := fqName.FindStringSubmatch(d.String())
			if match == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			got[match[1]] = typ
		}
	}
	// And RegisterCache's, which Gather reports with their types.
	reg := prometheus.NewRegistry()
	RegisterCache(reg, func() session.CacheStats { return session.CacheStats{} })
	RegisterRevocations(reg, func() RevocationStats { return RevocationStats{} })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		got[f.GetName()] = strings.ToLower(f.GetType().String())
	}
	want := Catalog()
	for name, typ := range got {
		if want[name] != typ {
			t.Errorf("New creates %s (%s); the catalog has it as %q", name, typ, want[name])
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("the catalog names %s, which New does not create", name)
		}
	}
	if len(got) == 0 {
		t.Fatal("no collector found: the test reads nothing")
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

func TestRegisterRevocationsReadsStats(t *testing.T) {
	reg := prometheus.NewRegistry()
	RegisterRevocations(reg, func() RevocationStats {
		return RevocationStats{Published: 5, Subscribers: 3, Dropped: 1, Synced: true, Resyncs: 2, Entries: 9}
	})
	want := map[string]float64{
		"sessiongate_revocations_published_total":          5,
		"sessiongate_revocation_subscribers":               3,
		"sessiongate_revocation_subscribers_dropped_total": 1,
		"sessiongate_revocation_feed_synced":               1,
		"sessiongate_revocation_feed_resyncs_total":        2,
		"sessiongate_revocation_entries":                   9,
	}
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
	if len(got) != len(want) {
		t.Errorf("got %d metrics, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
