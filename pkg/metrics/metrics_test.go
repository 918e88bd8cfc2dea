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
