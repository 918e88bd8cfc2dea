package session

import (
	"context"
	"errors"
	"slices"
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

// TestRedisUpdateUserDuringRefreshUpdatesNewAccessSession: an update-user
// that runs after a refresh rotated to a new access session (made from the
// family's old template) but before the refresh indexed it must still
// update that session: it existed before the update was called.
func TestRedisUpdateUserDuringRefreshUpdatesNewAccessSession(t *testing.T) {
	r := redisFixture(t).store.(*RedisStore)
	ctx := context.Background()
	const subject = "interleave-update"
	fam := mustFamily(t, r, subject, testPolicy(0))
	none := []string{}
	r.hooks.refreshRotated = func() {
		r.hooks.refreshRotated = nil
		if _, err := r.UpdateUser(ctx, subject, Update{Roles: &none}); err != nil {
			t.Errorf("UpdateUser during the refresh: %v", err)
		}
	}
	next := mustRefresh(t, r, fam.RefreshToken)
	e, err := r.Touch(ctx, next.Ref)
	if err != nil {
		t.Fatalf("Touch of the refreshed session: %v", err)
	}
	s, err := e.Session()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Roles) != 0 {
		t.Errorf("refreshed session keeps roles %v after an update that removed them", s.Roles)
	}
	// And the next refresh takes the updated template.
	after := mustRefresh(t, r, next.RefreshToken)
	e, err = r.Touch(ctx, after.Ref)
	if err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if s, err = e.Session(); err != nil || !slices.Equal(s.Roles, none) {
		t.Errorf("next refresh: roles %v, %v; want none", s.Roles, err)
	}
}

// TestRedisRevokeCredentialDuringAddLeavesNoCredential: a RevokeCredential of
// a credential an AddCredential has listed but not yet written (an admin
// sees it listed and revokes it) deletes the key before the add writes it;
// the add's re-read still finds it listed, because the revoke unlists it only
// after. The revoke returned success, so the credential must not
// authenticate, and no key may stay that no record lists.
func TestRedisRevokeCredentialDuringAddLeavesNoCredential(t *testing.T) {
	r := redisFixture(t).store.(*RedisStore)
	ctx := context.Background()
	s, cred := newService(t, "interleave-revoke")
	mustCreateService(t, r, s, cred)
	added, _ := NewCredential()
	keyGone, release := make(chan struct{}), make(chan struct{})
	revoked := make(chan error, 1)
	r.hooks.credentialKeyDeleted = func() {
		close(keyGone)
		<-release
	}
	r.hooks.credentialListed = func() {
		go func() { revoked <- r.RevokeCredential(ctx, s.Name, CredentialRefOf(added)) }()
		<-keyGone
	}
	addErr := r.AddCredential(ctx, s.Name, CredentialRefOf(added))
	close(release)
	if err := <-revoked; err != nil {
		t.Fatalf("RevokeCredential: %v", err)
	}
	r.hooks.credentialListed, r.hooks.credentialKeyDeleted = nil, nil
	t.Logf("AddCredential racing the revoke: %v", addErr)
	wantResolve(t, r, added, "")
	wantResolve(t, r, cred, s.Name)
	got, err := r.GetService(ctx, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got.Credentials {
		if c.Ref == CredentialRefOf(added) {
			t.Errorf("the revoked credential is still listed")
		}
	}
}

// TestRedisEvictionDuringRefreshEndsFamily: a login that evicts the oldest
// session at max_per_user, racing a refresh of that session's family that
// rotates it to a new access session after the eviction chose it, must
// still end the family: otherwise a device that keeps refreshing survives
// every single-device login, past the cap.
func TestRedisEvictionDuringRefreshEndsFamily(t *testing.T) {
	r := redisFixture(t).store.(*RedisStore)
	ctx := context.Background()
	const subject = "interleave-evict"
	fam := mustFamily(t, r, subject, testPolicy(0))
	var rotated Refreshed
	r.hooks.evictionChosen = func() {
		r.hooks.evictionChosen = nil
		rotated = mustRefresh(t, r, fam.RefreshToken)
	}
	s := newSession(t, subject, time.Minute, time.Hour)
	evicted, err := r.Create(ctx, s, Limit{MaxPerUser: 1})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !slices.Equal(evicted, []string{fam.Ref}) {
		t.Errorf("evicted = %v, want the family's session %s", evicted, fam.Ref)
	}
	if rotated.Ref == "" {
		t.Fatal("the refresh did not run between the eviction's steps")
	}
	wantLive(t, r, s.Ref)
	wantGone(t, r, fam.Ref, rotated.Ref)
	if out, err := r.Refresh(ctx, rotated.RefreshToken); !errors.Is(err, ErrRefreshInvalid) {
		t.Errorf("refresh after eviction: %s, %v; want ErrRefreshInvalid", out.Ref, err)
	}
}
