package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// The tests in this file stop one multi-step Redis operation between two of
// its steps (RedisStore.hooks) and run another one whole in the gap, to hold
// the store to its security invariants under the interleavings that once
// broke them. Standalone Redis: the interleaving, not the topology, is what
// they test.

// TestRedisRevokeUserDuringFamilyCreateKeepsFamilyReachable: a revoke-user
// that runs after a login indexed its refresh family but before it wrote the
// family must not unindex the family it could not end. The login may
// survive (it overlapped the revoke), but a later revoke-user must reach its
// family even once the access session has lapsed, so the refresh token dies
// with it.
func TestRedisRevokeUserDuringFamilyCreateKeepsFamilyReachable(t *testing.T) {
	r := redisFixture(t).store.(*RedisStore)
	ctx := context.Background()
	const subject = "interleave-family"
	r.hooks.familyIndexed = func() {
		r.hooks.familyIndexed = nil
		if _, err := r.DeleteUser(ctx, subject); err != nil {
			t.Errorf("DeleteUser during the login: %v", err)
		}
	}
	p := RefreshPolicy{AccessIdle: 300 * time.Millisecond, AccessAbsolute: time.Hour, TTL: time.Hour, Idle: time.Hour}
	fam := mustFamily(t, r, subject, p)
	if _, err := r.rdb.ZScore(ctx, userFamilyKey(subject), fam.FamilyRef).Result(); err != nil {
		t.Errorf("the family of a login that overlapped a revoke-user is not indexed: %v", err)
	}
	// The access session lapses at its idle timeout (watched without a
	// Touch, which would slide it); the family lives on.
	if !redistest.Eventually(ctx, 5*time.Second, func() bool {
		n, err := r.rdb.Exists(ctx, sessionKey(fam.Ref)).Result()
		return err == nil && n == 0
	}) {
		t.Fatal("the access session did not lapse")
	}
	if _, err := r.DeleteUser(ctx, subject); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if out, err := r.Refresh(ctx, fam.RefreshToken); !errors.Is(err, ErrRefreshInvalid) {
		t.Errorf("refresh after revoke-user: %+v, %v; want ErrRefreshInvalid", out.Ref, err)
	}
}
