package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
)

func stores(t *testing.T, maxLen int) map[string]Store {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	t.Cleanup(func() { rdb.Close() })
	return map[string]Store{"memory": NewMemoryStore(maxLen), "redis": NewRedisStore(rdb, maxLen)}
}

// Both stores keep events in order, page through them after an ID, refuse
// a cursor that is not an ID, and keep the newest.
func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t, 1000) {
		t.Run(name, func(t *testing.T) {
			var ids []string
			for i := range 25 {
				id, err := st.Append(ctx, Event{Type: Login, Subject: fmt.Sprintf("u%d", i), SessionRef: "r", Details: map[string]string{"i": fmt.Sprint(i)}})
				if err != nil {
					t.Fatal(err)
				}
				if !ValidID(id) {
					t.Fatalf("ID %q is not valid", id)
				}
				if len(ids) > 0 && !less(ids[len(ids)-1], id) {
					t.Fatalf("IDs not increasing: %s then %s", ids[len(ids)-1], id)
				}
				ids = append(ids, id)
			}
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > 10 {
					t.Fatal("paging does not end")
				}
				p, err := st.Page(ctx, after, 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(p) == 0 {
					break
				}
				for _, e := range p {
					if e.Subject != "u"+e.Details["i"] || e.Type != Login {
						t.Errorf("event %+v mangled", e)
					}
					got = append(got, e.ID)
				}
				after = p[len(p)-1].ID
			}
			if strings.Join(got, ",") != strings.Join(ids, ",") {
				t.Errorf("paged %v, appended %v", got, ids)
			}
			for _, bad := range []string{"x", "1-", "-1", "01-1", "1-1-1", "1 -1", "+1-1", "99999999999999999999-0"} {
				if _, err := st.Page(ctx, bad, 10); !errors.Is(err, ErrBadID) {
					t.Errorf("Page(after %q) = %v, want ErrBadID", bad, err)
				}
			}
		})
	}
}

func less(a, b string) bool {
	am, as, _ := cutID(a)
	bm, bs, _ := cutID(b)
	return am < bm || am == bm && as < bs
}

func TestStoresAreCapped(t *testing.T) {
	ctx := context.Background()
	for name, st := range stores(t, 10) {
		t.Run(name, func(t *testing.T) {
			for range 500 {
				if _, err := st.Append(ctx, Event{Type: Logout}); err != nil {
					t.Fatal(err)
				}
			}
			p, err := st.Page(ctx, "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			// MAXLEN ~ trims whole stream nodes (100 entries by default):
			// near the cap, never the whole history.
			if len(p) < 10 || len(p) > 200 {
				t.Errorf("%d events kept, want about 10", len(p))
			}
		})
	}
}

type failingStore struct{}

func (failingStore) Append(context.Context, Event) (string, error) {
	return "", errors.New("connection refused")
}
func (failingStore) Page(context.Context, string, int) ([]Event, error) { return nil, nil }

// blockingStore holds every Append until release is closed.
type blockingStore struct {
	Store
	release chan struct{}
}

func (b blockingStore) Append(ctx context.Context, e Event) (string, error) {
	<-b.release
	return b.Store.Append(ctx, e)
}

func TestLog(t *testing.T) {
	counted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"type"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	st := NewMemoryStore(100)
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.FixedZone("x", 3600))
	l := NewLog(Options{Store: st, Replica: "sg-0", Counted: counted, Dropped: dropped, Now: func() time.Time { return now }})
	l.Record(Event{Type: Login, Subject: "alice", SessionRef: "ref1"})
	l.Record(Event{Type: BindingMismatch, SessionRef: "ref1", Details: map[string]string{"reason": "x"}})
	l.Close()
	p, err := st.Page(context.Background(), "", 10)
	if err != nil || len(p) != 2 {
		t.Fatalf("stored %v (%v), want 2 events", p, err)
	}
	if p[0].Replica != "sg-0" || !p[0].Time.Equal(now) || p[0].Time.Location() != time.UTC || p[0].Details == nil || p[1].Details["reason"] != "x" {
		t.Errorf("events not completed: %+v", p)
	}
	for typ, want := range map[Type]float64{Login: 1, BindingMismatch: 1, Logout: 0, Revoke: 0} {
		if got := testutil.ToFloat64(counted.WithLabelValues(string(typ))); got != want {
			t.Errorf("counted %s = %v, want %v", typ, got, want)
		}
	}
	l.Record(Event{Type: Logout})
	if got := testutil.ToFloat64(dropped); got != 1 {
		t.Errorf("an event after Close: dropped = %v, want 1", got)
	}
}

// Record never blocks: with the store stuck and the queue full, events are
// dropped and counted, and the log says so without a session ID.
func TestLogNeverBlocks(t *testing.T) {
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	logs := &logtest.Buffer{}
	release := make(chan struct{})
	st := NewMemoryStore(100)
	l := NewLog(Options{Store: blockingStore{st, release}, Queue: 2, Dropped: dropped, Log: slog.New(slog.NewTextHandler(logs, nil))})
	done := make(chan struct{})
	go func() {
		for range 10 {
			l.Record(Event{Type: Revoke, SessionRef: "r"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked")
	}
	close(release)
	l.Close()
	p, _ := st.Page(context.Background(), "", 100)
	if got := testutil.ToFloat64(dropped); got < 7 || int(got)+len(p) != 10 {
		t.Errorf("dropped %v, stored %d: want at most 3 stored and the rest counted", got, len(p))
	}
	if !strings.Contains(logs.String(), "event queue full") {
		t.Errorf("log: %s", logs)
	}
}

func TestLogStoreFailureIsCounted(t *testing.T) {
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	l := NewLog(Options{Store: failingStore{}, Dropped: dropped, Log: slog.New(slog.DiscardHandler)})
	l.Record(Event{Type: Login})
	l.Close()
	if got := testutil.ToFloat64(dropped); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
}
