package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestRedisConcurrentTouches covers the batched touch path (Touch with
// other touches in flight goes through the AutoPipeliner): many concurrent
// touches each get their own session back, and with Redis stalled each
// returns a store error at its own deadline, never a session and never
// ErrNotFound (which would turn an outage into a logout).
func TestRedisConcurrentTouches(t *testing.T) {
	srv := redistest.Start(t)
	rdb, err := NewRedisClient(srv.URL(), 5*time.Second) // socket timeout deliberately long
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	st := NewRedisStore(rdb)
	if err := st.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	const callers = 48
	refs := make([]string, callers)
	for i := range refs {
		s := newSession(t, fmt.Sprintf("batch-%d", i), time.Minute, time.Hour)
		mustCreate(t, st, s, Limit{})
		refs[i] = s.Ref
	}
	for _, tc := range []struct {
		name    string
		stalled bool
	}{
		{"redis up", false},
		{"redis stalled", true},
		{"redis up again", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stalled {
				srv.Pause()
				defer srv.Resume()
			}
			// With Redis up, a generous deadline: 48 callers under -race on
			// a shared machine must not fail for being slow; stalled, the
			// production 100 ms, which is what is checked.
			deadline := 2 * time.Second
			if tc.stalled {
				deadline = 100 * time.Millisecond
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			errs := make([]error, callers)
			took := make([]time.Duration, callers)
			for i := range callers {
				wg.Go(func() {
					<-start
					for range 20 {
						ctx, cancel := context.WithTimeout(context.Background(), deadline)
						t0 := time.Now()
						e, err := st.Touch(ctx, refs[i])
						d := time.Since(t0)
						cancel()
						took[i] = max(took[i], d)
						if err == nil && e.Ref != refs[i] {
							err = fmt.Errorf("touch of %s answered %s", refs[i], e.Ref)
						}
						if err != nil {
							errs[i] = err
							return
						}
					}
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				switch {
				case tc.stalled && (err == nil || errors.Is(err, ErrNotFound)):
					t.Fatalf("caller %d on stalled redis: err = %v, want a store error", i, err)
				case !tc.stalled && err != nil:
					t.Fatalf("caller %d: %v", i, err)
				}
				if tc.stalled && took[i] > 400*time.Millisecond {
					t.Fatalf("caller %d on stalled redis took %v, want about its 100ms deadline", i, took[i])
				}
			}
		})
	}
}
