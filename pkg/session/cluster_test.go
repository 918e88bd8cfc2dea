package session

import (
	"context"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestRedisClusterSubjectAcrossSlots pins down what the Cluster design
// comment in redis.go relies on: one subject's session keys and its index
// really do live on different masters, and create with max_per_user,
// revoke-user and update-user still hold, with no cross-slot command (a
// cross-slot MULTI, EVAL or DEL would fail with CROSSSLOT here). The
// conformance suite runs every case on a Cluster too; this test proves the
// spread it relies on is there.
func TestRedisClusterSubjectAcrossSlots(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t)
	store := redisClientFixture(t, RedisOptions{ClusterAddrs: c.Addrs()[:1], Timeout: time.Second}).store
	const subject, limit, logins = "spread", 6, 12

	var refs []string
	for range logins {
		s := newSession(t, subject, time.Minute, time.Hour)
		if _, err := store.Create(ctx, s, Limit{MaxPerUser: limit}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, s.Ref)
	}

	masters := map[string]bool{}
	for _, key := range append(keysOf(refs), userKey(subject)) {
		m, _, err := c.MasterOf(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the subject's %d keys all live on one master; the test proves nothing", logins+1)
	}

	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"max_per_user kept the newest", func(t *testing.T) {
			ss, err := store.List(ctx, subject)
			if err != nil {
				t.Fatal(err)
			}
			got := refsOf(ss)
			want := refs[logins-limit:]
			if len(got) != limit {
				t.Fatalf("List = %v, want the %d newest %v", got, limit, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("List = %v, want %v", got, want)
				}
			}
			for _, ref := range refs[:logins-limit] {
				if _, err := store.Touch(ctx, ref); err != ErrNotFound {
					t.Errorf("evicted session %s: Touch = %v, want ErrNotFound", ref, err)
				}
			}
		}},
		{"update-user reaches every slot", func(t *testing.T) {
			roles := []string{"auditor"}
			n, err := store.UpdateUser(ctx, subject, Update{Roles: &roles})
			if err != nil || n != limit {
				t.Fatalf("UpdateUser = %d, %v; want %d", n, err, limit)
			}
			for _, ref := range refs[logins-limit:] {
				e, err := store.Touch(ctx, ref)
				if err != nil {
					t.Fatal(err)
				}
				s, err := e.Session()
				if err != nil || len(s.Roles) != 1 || s.Roles[0] != "auditor" {
					t.Errorf("session %s after UpdateUser: %+v %v", ref, s, err)
				}
			}
		}},
		{"revoke-user reaches every slot", func(t *testing.T) {
			n, err := store.DeleteUser(ctx, subject)
			if err != nil || n != limit {
				t.Fatalf("DeleteUser = %d, %v; want %d", n, err, limit)
			}
			for _, ref := range refs {
				if _, err := store.Touch(ctx, ref); err != ErrNotFound {
					t.Errorf("session %s after DeleteUser: Touch = %v, want ErrNotFound", ref, err)
				}
			}
			if ss, err := store.List(ctx, subject); err != nil || len(ss) != 0 {
				t.Errorf("List after DeleteUser = %v, %v", refsOf(ss), err)
			}
		}},
	} {
		// In order: each step works on what the previous one left.
		if !t.Run(tc.name, tc.run) {
			return
		}
	}
}
