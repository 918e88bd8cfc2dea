package session

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// revocationFollower is what both stores offer the revocation feed.
type revocationFollower interface {
	FollowRevocations(ctx context.Context, limit int, snapshot func([]Revocation), live func(Revocation)) error
	SetRevocationWindow(time.Duration)
	RevocationsPublished() uint64
}

// follow starts a follower and returns its snapshot and a channel of live
// entries; it stops with the test.
func follow(t *testing.T, st revocationFollower) (map[string]time.Time, <-chan Revocation) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	snap := make(chan []Revocation, 1)
	live := make(chan Revocation, 1024)
	done := make(chan error, 1)
	go func() {
		done <- st.FollowRevocations(ctx, 100_000, func(in []Revocation) { snap <- in }, func(r Revocation) { live <- r })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("follow ended with %v, want context.Canceled", err)
		}
	})
	select {
	case in := <-snap:
		m := make(map[string]time.Time, len(in))
		for _, r := range in {
			m[r.Ref] = r.Until
		}
		return m, live
	case err := <-done:
		t.Fatalf("follow: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot within 10s")
	}
	return nil, nil
}

// awaitLive collects live entries until every ref in want has been seen;
// entries of other cases sharing the store are ignored.
func awaitLive(t *testing.T, live <-chan Revocation, want ...string) map[string]time.Time {
	t.Helper()
	got := map[string]time.Time{}
	pending := map[string]bool{}
	for _, r := range want {
		pending[r] = true
	}
	timeout := time.After(10 * time.Second)
	for len(pending) > 0 {
		select {
		case r := <-live:
			if pending[r.Ref] || got[r.Ref] != (time.Time{}) {
				got[r.Ref] = r.Until
				delete(pending, r.Ref)
			}
		case <-timeout:
			t.Fatalf("live entries missing: %v", pending)
		}
	}
	return got
}

// testRevocationFeed is the conformance case for the revocation feed:
// Delete, DeleteUser and eviction each publish what they ended, with the
// time until which its tokens may live; deleting nothing, and refusing a
// session at the cap, publish nothing.
func testRevocationFeed(t *testing.T, f storeFixture) {
	st, ok := f.store.(revocationFollower)
	if !ok {
		t.Fatalf("%T does not publish revocations", f.store)
	}
	const window = 90 * time.Second
	st.SetRevocationWindow(window)
	ctx := context.Background()
	_, live := follow(t, st)
	published := st.RevocationsPublished()

	subject := "revfeed-" + mustID(t)[:8]
	short := newSession(t, subject, time.Minute, 20*time.Second) // ends before the window
	long := newSession(t, subject, time.Minute, time.Hour)
	third := newSession(t, subject, time.Minute, time.Hour)
	// Distinct creation times: the stores order equal ones by ref.
	short.CreatedAt = short.CreatedAt.Add(-2 * time.Millisecond)
	long.CreatedAt = long.CreatedAt.Add(-time.Millisecond)
	mustCreate(t, f.store, short, Limit{})
	mustCreate(t, f.store, long, Limit{})
	start := time.Now()
	// The cap evicts the oldest (short).
	evicted, err := f.store.Create(ctx, third, Limit{MaxPerUser: 2})
	if err != nil || len(evicted) != 1 || evicted[0] != short.Ref {
		t.Fatalf("evicted %v, %v; want [short]", evicted, err)
	}
	if err := f.store.Delete(ctx, long.Ref); err != nil {
		t.Fatal(err)
	}
	if n, err := f.store.DeleteUser(ctx, subject); err != nil || n != 1 {
		t.Fatalf("delete user = %d, %v; want 1", n, err)
	}
	end := time.Now()
	// Nothing to revoke: no entry.
	ghost := RefOf(mustID(t))
	if err := f.store.Delete(ctx, ghost); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete unknown = %v", err)
	}
	// Refused at the cap: never handed out, no entry.
	rejected := newSession(t, subject, time.Minute, time.Hour)
	mustCreate(t, f.store, newSession(t, subject, time.Minute, time.Hour), Limit{})
	if _, err := f.store.Create(ctx, rejected, Limit{MaxPerUser: 1, Reject: true}); !errors.Is(err, ErrLimit) {
		t.Fatalf("create over the cap = %v, want ErrLimit", err)
	}

	got := awaitLive(t, live, short.Ref, long.Ref, third.Ref)
	const slack = 2 * time.Second // Redis's clock and ours, and ms rounding
	if u := got[short.Ref]; u.Before(short.ExpiresAt.Add(-slack)) || u.After(short.ExpiresAt.Add(slack)) {
		t.Errorf("short: until %v, want its absolute end %v", u, short.ExpiresAt)
	}
	for _, ref := range []string{long.Ref, third.Ref} {
		if u := got[ref]; u.Before(start.Add(window-slack)) || u.After(end.Add(window+slack)) {
			t.Errorf("%s: until %v, want revocation time + %v", ref, u, window)
		}
	}
	if n := st.RevocationsPublished() - published; n < 3 {
		t.Errorf("published counter moved by %d, want at least 3", n)
	}

	// A follower that comes later gets them in its snapshot, and never
	// the sessions nobody held.
	snap, _ := follow(t, st)
	for _, ref := range []string{short.Ref, long.Ref, third.Ref} {
		if _, ok := snap[ref]; !ok {
			t.Errorf("snapshot lacks %s", ref)
		}
	}
	for _, ref := range []string{ghost, rejected.Ref} {
		if _, ok := snap[ref]; ok {
			t.Errorf("snapshot names %s, which was never a live session", ref)
		}
	}
}

func TestMemoryRevocationsExpireAndOverflow(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	clock := func() time.Time { return now }
	m := NewMemoryStore(clock)
	m.SetRevocationWindow(time.Minute)
	ctx := context.Background()
	for range 3 {
		id := mustID(t)
		s := &Session{Ref: RefOf(id), Subject: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
		mustCreate(t, m, s, Limit{})
		if err := m.Delete(ctx, s.Ref); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.FollowRevocations(cctx, 2, func([]Revocation) {}, func(Revocation) {}); !errors.Is(err, ErrRevocationsOverflow) {
		t.Errorf("3 entries with limit 2: %v, want ErrRevocationsOverflow", err)
	}
	var n int
	if err := m.FollowRevocations(cctx, 3, func(in []Revocation) { n = len(in) }, func(Revocation) {}); !errors.Is(err, context.Canceled) || n != 3 {
		t.Errorf("limit 3: %d entries, %v", n, err)
	}
	now = now.Add(time.Minute) // the window has passed: nothing in force
	n = -1
	_ = m.FollowRevocations(cctx, 1, func(in []Revocation) { n = len(in) }, func(Revocation) {})
	if n != 0 {
		t.Errorf("after the window: %d entries, want 0", n)
	}
}

func TestParseRevocationMessage(t *testing.T) {
	ref := RefOf("x")
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{ref + " 1900000000000", true},
		{ref + " 0", true},
		{ref + " 00", false},
		{ref + " 01", false},
		{ref + "  1", false},
		{ref + " -1", false},
		{ref + " +1", false},
		{ref + " 1 ", false},
		{ref + " 1234567890123456", false},
		{ref, false},
		{ref[:31] + " 1", false},
		{"ABCDEF" + ref[6:] + " 1", false},
		{"", false},
	} {
		r, ok := parseRevocationMessage(tt.in)
		if ok != tt.ok {
			t.Errorf("%q: ok = %v, want %v", tt.in, ok, tt.ok)
		}
		if ok && r.Ref != ref {
			t.Errorf("%q: ref %q", tt.in, r.Ref)
		}
	}
}

func FuzzParseRevocationMessage(f *testing.F) {
	f.Add(RefOf("x") + " 1900000000000")
	f.Add("")
	f.Add(" ")
	f.Fuzz(func(t *testing.T, in string) {
		r, ok := parseRevocationMessage(in)
		if !ok {
			return
		}
		if !ValidRef(r.Ref) || r.Until.UnixMilli() < 0 {
			t.Fatalf("accepted %q as %+v", in, r)
		}
		if back := r.Ref + " " + msString(r.Until); back != in {
			t.Fatalf("%q reads as %q: not the one spelling", in, back)
		}
	})
}

// lostReply makes the first command named cmd run in Redis and then fail
// at the client, as a reply lost on the wire does.
type lostReply struct {
	cmd  string
	done atomic.Bool
}

func (h *lostReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, c redis.Cmder) error {
		err := next(ctx, c)
		if c.Name() == h.cmd && h.done.CompareAndSwap(false, true) {
			return errors.New("i/o timeout (reply lost)")
		}
		return err
	}
}
func (h *lostReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if c.Name() == h.cmd && h.done.CompareAndSwap(false, true) {
				return errors.New("i/o timeout (reply lost)")
			}
		}
		return err
	}
}

// A revocation whose delete ran in Redis but whose reply was lost is
// still published: the caller sees an error, its retry finds nothing to
// delete, and nothing else would ever record it. Holds for every delete
// command the store sends.
func TestRevocationSurvivesALostDeleteReply(t *testing.T) {
	srv := redistest.Start(t)
	for _, cmd := range []string{"del", "getdel"} {
		t.Run(cmd, func(t *testing.T) {
			rdb, err := NewRedisClient(srv.URL(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			st := NewRedisStore(rdb)
			t.Cleanup(func() { st.Close() })
			ctx := context.Background()
			one := newSession(t, "lost-"+cmd, time.Minute, time.Hour)
			mustCreate(t, st, one, Limit{})
			rdb.AddHook(&lostReply{cmd: cmd})
			err = st.Delete(ctx, one.Ref)
			if err != nil {
				if err := st.Delete(ctx, one.Ref); err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatalf("retried delete: %v", err)
				}
			}
			users := newSession(t, "lost-user-"+cmd, time.Minute, time.Hour)
			mustCreate(t, st, users, Limit{})
			rdb.AddHook(&lostReply{cmd: cmd})
			if _, err := st.DeleteUser(ctx, users.Subject); err != nil {
				if _, err := st.DeleteUser(ctx, users.Subject); err != nil {
					t.Fatalf("retried delete user: %v", err)
				}
			}
			snap, _ := follow(t, st)
			for _, ref := range []string{one.Ref, users.Ref} {
				if _, ok := snap[ref]; !ok {
					t.Errorf("a session deleted with its reply lost was never published (%s)", ref)
				}
				if _, err := st.Touch(ctx, ref); !errors.Is(err, ErrNotFound) {
					t.Errorf("session still alive: %v", err)
				}
			}
		})
	}
}

// testRevocationFeedFamilies: revoking a family by its ref, and a reused
// refresh token ending one, publish the family's current access session;
// a rotation (an access session replaced, not revoked) publishes nothing.
func testRevocationFeedFamilies(t *testing.T, f storeFixture) {
	st, ok := f.store.(revocationFollower)
	if !ok {
		t.Fatalf("%T does not publish revocations", f.store)
	}
	st.SetRevocationWindow(90 * time.Second)
	ctx := context.Background()
	_, live := follow(t, st)

	revoked, _, err := f.store.CreateFamily(ctx, login("revfeed-fam"), Limit{}, testPolicy(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.RevokeFamily(ctx, revoked.FamilyRef); err != nil {
		t.Fatal(err)
	}

	reused, _, err := f.store.CreateFamily(ctx, login("revfeed-reuse"), Limit{}, testPolicy(0))
	if err != nil {
		t.Fatal(err)
	}
	next, err := f.store.Refresh(ctx, reused.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Refresh(ctx, reused.RefreshToken); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("replayed token: %v, want ErrRefreshReused", err)
	}
	got := awaitLive(t, live, revoked.Ref, next.Ref)
	if _, ok := got[reused.Ref]; ok {
		t.Errorf("the access session a rotation replaced was published as revoked")
	}
}
