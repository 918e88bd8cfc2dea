package session

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func init() { conformanceCases = append(conformanceCases, refreshCases...) }

// testPolicy is a refresh policy with lifetimes far from any test's timing,
// but for the grace, which tests that wait it out set themselves.
func testPolicy(grace time.Duration) RefreshPolicy {
	return RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour, Grace: grace}
}

func login(subject string) *Session {
	return &Session{Subject: subject, Roles: []string{"user"}, CreatedAt: time.Now().Truncate(time.Millisecond)}
}

func mustFamily(t *testing.T, st Store, subject string, p RefreshPolicy) Refreshed {
	t.Helper()
	r, _, err := st.CreateFamily(context.Background(), login(subject), Limit{}, p)
	if err != nil {
		t.Fatalf("create family: %v", err)
	}
	return r
}

func mustRefresh(t *testing.T, st Store, token string) Refreshed {
	t.Helper()
	r, err := st.Refresh(context.Background(), token)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	return r
}

// wantLive fails unless every ref resolves; wantGone unless none does.
func wantLive(t *testing.T, st Store, refs ...string) {
	t.Helper()
	for _, ref := range refs {
		if _, err := st.Touch(context.Background(), ref); err != nil {
			t.Fatalf("session %s: %v, want live", ref, err)
		}
	}
}

func wantGone(t *testing.T, st Store, refs ...string) {
	t.Helper()
	for _, ref := range refs {
		if _, err := st.Touch(context.Background(), ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session %s: err = %v, want ErrNotFound", ref, err)
		}
	}
}

func wantRefreshErr(t *testing.T, st Store, token string, want error) {
	t.Helper()
	if _, err := st.Refresh(context.Background(), token); !errors.Is(err, want) {
		t.Fatalf("refresh: err = %v, want %v", err, want)
	}
}

var refreshCases = []struct {
	name string
	run  func(t *testing.T, f storeFixture)
}{
	{"refresh: a family starts with one access session and one token", func(t *testing.T, f storeFixture) {
		ctx := context.Background()
		s := login("rf-create")
		s.Tenant = "acme"
		p := testPolicy(time.Second)
		r, _, err := f.store.CreateFamily(ctx, s, Limit{}, p)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case !ValidID(r.ID) || RefOf(r.ID) != r.Ref || s.Ref != r.Ref:
			t.Fatalf("access session: %+v", r)
		case !ValidRefreshToken(r.RefreshToken) || !ValidFamilyRef(r.FamilyRef) || r.Subject != "rf-create":
			t.Fatalf("refresh: %+v", r)
		case !r.RefreshExpiresAt.Equal(s.CreatedAt.Add(p.TTL)) || !r.ExpiresAt.Equal(s.CreatedAt.Add(p.AccessAbsolute)):
			t.Fatalf("expiries: %+v", r)
		}
		e, err := f.store.Touch(ctx, r.Ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.Session()
		if err != nil {
			t.Fatal(err)
		}
		if got.FamilyRef != r.FamilyRef || got.Tenant != "acme" || got.IdleTimeout != p.AccessIdle {
			t.Fatalf("access session = %+v", got)
		}
		page, err := f.store.ListPage(ctx, "rf-create", 0, 10)
		if err != nil || len(page.Sessions) != 1 || page.Sessions[0].FamilyRef != r.FamilyRef {
			t.Fatalf("list = %+v, %v", page, err)
		}
	}},
	{"refresh: rotation ends the old access session and retires the token", func(t *testing.T, f storeFixture) {
		st := f.store
		r0 := mustFamily(t, st, "rf-rotate", testPolicy(0))
		r1 := mustRefresh(t, st, r0.RefreshToken)
		if r1.ID == r0.ID || r1.RefreshToken == r0.RefreshToken || r1.FamilyRef != r0.FamilyRef || r1.Subject != "rf-rotate" {
			t.Fatalf("rotation: %+v after %+v", r1, r0)
		}
		if !r1.RefreshExpiresAt.Equal(r0.RefreshExpiresAt) {
			t.Fatalf("family end moved: %v → %v", r0.RefreshExpiresAt, r1.RefreshExpiresAt)
		}
		wantGone(t, st, r0.Ref)
		wantLive(t, st, r1.Ref)
		e, err := st.Touch(context.Background(), r1.Ref)
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.Session()
		if err != nil || s.Subject != "rf-rotate" || !slices.Equal(s.Roles, []string{"user"}) || s.FamilyRef != r0.FamilyRef {
			t.Fatalf("successor = %+v, %v", s, err)
		}
		r2 := mustRefresh(t, st, r1.RefreshToken) // the new token works once
		wantGone(t, st, r1.Ref)
		wantLive(t, st, r2.Ref)
		page, err := st.ListPage(context.Background(), "rf-rotate", 0, 10)
		if err != nil || len(page.Sessions) != 1 || page.Sessions[0].Ref != r2.Ref {
			t.Fatalf("list after rotations = %+v, %v", page, err)
		}
	}},
	{"refresh: concurrent refreshes within the grace get the same pair", func(t *testing.T, f storeFixture) {
		st := f.store
		r0 := mustFamily(t, st, "rf-grace", testPolicy(10*time.Second))
		const n = 8
		var wg sync.WaitGroup
		got := make([]Refreshed, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = st.Refresh(context.Background(), r0.RefreshToken)
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("refresh %d: %v", i, errs[i])
			}
			if got[i] != got[0] {
				t.Fatalf("refresh %d = %+v, refresh 0 = %+v", i, got[i], got[0])
			}
		}
		wantGone(t, st, r0.Ref)
		wantLive(t, st, got[0].Ref)
		page, err := st.ListPage(context.Background(), "rf-grace", 0, 10)
		if err != nil || len(page.Sessions) != 1 || page.Sessions[0].Ref != got[0].Ref {
			t.Fatalf("one live successor: list = %+v, %v", page, err)
		}
		// A retry later in the grace still gets that pair, and the pair works.
		if again := mustRefresh(t, st, r0.RefreshToken); again != got[0] {
			t.Fatalf("retry in grace = %+v, want %+v", again, got[0])
		}
		r2 := mustRefresh(t, st, got[0].RefreshToken)
		wantLive(t, st, r2.Ref)
	}},
	{"refresh: a retired token after the grace revokes the family", func(t *testing.T, f storeFixture) {
		st := f.store
		grace := 300 * time.Millisecond
		r0 := mustFamily(t, st, "rf-reuse", testPolicy(grace))
		r1 := mustRefresh(t, st, r0.RefreshToken)
		r2 := mustRefresh(t, st, r1.RefreshToken)
		time.Sleep(grace + 200*time.Millisecond)
		got, err := st.Refresh(context.Background(), r0.RefreshToken)
		if !errors.Is(err, ErrRefreshReused) || got != (Refreshed{FamilyRef: r0.FamilyRef, Subject: "rf-reuse"}) {
			t.Fatalf("reuse: %+v, %v; want the family and subject with ErrRefreshReused", got, err)
		}
		wantGone(t, st, r0.Ref, r1.Ref, r2.Ref)
		for _, tok := range []string{r2.RefreshToken, r1.RefreshToken, r0.RefreshToken} {
			wantRefreshErr(t, st, tok, ErrRefreshInvalid)
		}
		page, err := st.ListPage(context.Background(), "rf-reuse", 0, 10)
		if err != nil || len(page.Sessions) != 0 {
			t.Fatalf("list after reuse = %+v, %v", page, err)
		}
		if err := st.RevokeFamily(context.Background(), r0.FamilyRef); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke a revoked family: %v", err)
		}
	}},
	{"refresh: without a grace the second use is reuse", func(t *testing.T, f storeFixture) {
		st := f.store
		r0 := mustFamily(t, st, "rf-nograce", testPolicy(0))
		r1 := mustRefresh(t, st, r0.RefreshToken)
		wantRefreshErr(t, st, r0.RefreshToken, ErrRefreshReused)
		wantGone(t, st, r1.Ref)
		wantRefreshErr(t, st, r1.RefreshToken, ErrRefreshInvalid)
	}},
	{"refresh: the family's absolute end is never extended", func(t *testing.T, f storeFixture) {
		st := f.store
		// Wide margins: under -race a Cluster store spends up to a few
		// hundred ms picking an ID in the family's slot.
		p := RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 3 * time.Second, Idle: time.Hour}
		r0 := mustFamily(t, st, "rf-ttl", p)
		if !r0.ExpiresAt.Equal(r0.RefreshExpiresAt) {
			t.Fatalf("access end %v not capped by the family end %v", r0.ExpiresAt, r0.RefreshExpiresAt)
		}
		time.Sleep(300 * time.Millisecond)
		r1 := mustRefresh(t, st, r0.RefreshToken)
		if !r1.RefreshExpiresAt.Equal(r0.RefreshExpiresAt) || r1.ExpiresAt.After(r1.RefreshExpiresAt) {
			t.Fatalf("after refresh: %+v", r1)
		}
		time.Sleep(time.Until(r0.RefreshExpiresAt) + 100*time.Millisecond)
		wantRefreshErr(t, st, r1.RefreshToken, ErrRefreshInvalid)
		wantGone(t, st, r1.Ref)
	}},
	{"refresh: an unused token expires after the idle timeout", func(t *testing.T, f storeFixture) {
		st := f.store
		// Wide margins: with every topology's cases running at once under
		// -race on a shared 2-core host, a refresh has been seen to take
		// over a second.
		p := RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: time.Hour, Idle: 5 * time.Second}
		r := mustFamily(t, st, "rf-idle", p)
		for range 4 { // 4 × 1.5 s outlives one idle window only if refreshing slides it
			time.Sleep(1500 * time.Millisecond)
			r = mustRefresh(t, st, r.RefreshToken)
		}
		time.Sleep(5500 * time.Millisecond)
		wantRefreshErr(t, st, r.RefreshToken, ErrRefreshInvalid)
	}},
	{"refresh: revoking by family ref ends the family", func(t *testing.T, f storeFixture) {
		ctx := context.Background()
		st := f.store
		r0 := mustFamily(t, st, "rf-revoke", testPolicy(10*time.Second))
		r1 := mustRefresh(t, st, r0.RefreshToken)
		if err := st.RevokeFamily(ctx, r0.FamilyRef); err != nil {
			t.Fatal(err)
		}
		wantGone(t, st, r1.Ref)
		wantRefreshErr(t, st, r1.RefreshToken, ErrRefreshInvalid)
		wantRefreshErr(t, st, r0.RefreshToken, ErrRefreshInvalid) // in grace, but the family is gone
		fam, _ := NewFamilyRef()
		for _, ref := range []string{r0.FamilyRef, fam} {
			if err := st.RevokeFamily(ctx, ref); !errors.Is(err, ErrNotFound) {
				t.Fatalf("revoke %s: err = %v, want ErrNotFound", ref, err)
			}
		}
	}},
	{"refresh: revoke-user, logout and eviction end families", func(t *testing.T, f storeFixture) {
		ctx := context.Background()
		st := f.store
		// Revoke-user, including a family whose access session has lapsed.
		short := RefreshPolicy{AccessIdle: 300 * time.Millisecond, AccessAbsolute: time.Hour, TTL: time.Hour, Idle: time.Hour}
		a := mustFamily(t, st, "rf-end-user", testPolicy(0))
		b := mustFamily(t, st, "rf-end-user", short)
		mustCreate(t, st, newSession(t, "rf-end-user", time.Minute, time.Hour), Limit{})
		time.Sleep(600 * time.Millisecond)
		wantGone(t, st, b.Ref)
		n, err := st.DeleteUser(ctx, "rf-end-user")
		if err != nil || n != 3 {
			t.Fatalf("delete user = %d, %v; want 3", n, err)
		}
		wantGone(t, st, a.Ref)
		wantRefreshErr(t, st, a.RefreshToken, ErrRefreshInvalid)
		wantRefreshErr(t, st, b.RefreshToken, ErrRefreshInvalid)

		// Logout: deleting the current access session.
		c0 := mustFamily(t, st, "rf-end-logout", testPolicy(time.Second))
		c1 := mustRefresh(t, st, c0.RefreshToken)
		if err := st.Delete(ctx, c1.Ref); err != nil {
			t.Fatal(err)
		}
		wantRefreshErr(t, st, c1.RefreshToken, ErrRefreshInvalid)
		wantRefreshErr(t, st, c0.RefreshToken, ErrRefreshInvalid)
		if err := st.RevokeFamily(ctx, c0.FamilyRef); !errors.Is(err, ErrNotFound) {
			t.Fatalf("family after logout: %v", err)
		}

		// Eviction by max_per_user.
		d := mustFamily(t, st, "rf-end-evict", testPolicy(0))
		s := newSession(t, "rf-end-evict", time.Minute, time.Hour)
		evicted, err := st.Create(ctx, s, Limit{MaxPerUser: 1})
		if err != nil || !slices.Equal(evicted, []string{d.Ref}) {
			t.Fatalf("evicted = %v, %v; want [%s]", evicted, err, d.Ref)
		}
		wantRefreshErr(t, st, d.RefreshToken, ErrRefreshInvalid)
		// And a family evicting the oldest session.
		e, evicted, err := st.CreateFamily(ctx, login("rf-end-evict"), Limit{MaxPerUser: 1}, testPolicy(0))
		if err != nil || !slices.Equal(evicted, []string{s.Ref}) {
			t.Fatalf("family evicted = %v, %v; want [%s]", evicted, err, s.Ref)
		}
		wantLive(t, st, e.Ref)
		mustRefresh(t, st, e.RefreshToken)
	}},
	{"refresh: permission updates reach later access sessions", func(t *testing.T, f storeFixture) {
		ctx := context.Background()
		st := f.store
		short := RefreshPolicy{AccessIdle: 300 * time.Millisecond, AccessAbsolute: time.Hour, TTL: time.Hour, Idle: time.Hour}
		r0 := mustFamily(t, st, "rf-update", short)
		time.Sleep(600 * time.Millisecond) // the access session lapses; only the family holds the roles
		roles := []string{"auditor"}
		if _, err := st.UpdateUser(ctx, "rf-update", Update{Roles: &roles}); err != nil {
			t.Fatal(err)
		}
		r1 := mustRefresh(t, st, r0.RefreshToken)
		e, err := st.Touch(ctx, r1.Ref)
		if err != nil {
			t.Fatal(err)
		}
		s, err := e.Session()
		if err != nil || !slices.Equal(s.Roles, roles) {
			t.Fatalf("successor roles = %v, %v; want %v", s.Roles, err, roles)
		}
	}},
	{"refresh: malformed tokens and session IDs are invalid", func(t *testing.T, f storeFixture) {
		st := f.store
		r := mustFamily(t, st, "rf-malformed", testPolicy(0))
		id := r.RefreshToken[len(RefreshTokenPrefix):]
		for name, tok := range map[string]string{
			"empty":              "",
			"prefix only":        RefreshTokenPrefix,
			"access session ID":  r.ID,
			"token body alone":   id,
			"session ID as body": RefreshTokenPrefix + r.ID,
			"upper prefix":       strings.ToUpper(RefreshTokenPrefix) + id,
			"oversize":           r.RefreshToken + strings.Repeat("A", 1<<16),
			"one longer":         r.RefreshToken + "A",
			"one shorter":        r.RefreshToken[:len(r.RefreshToken)-1],
			"non-canonical":      r.RefreshToken[:len(r.RefreshToken)-1] + "B",
			"padding":            r.RefreshToken[:len(r.RefreshToken)-1] + "=",
			"space":              " " + r.RefreshToken,
			"family ref":         r.FamilyRef,
		} {
			if _, err := st.Refresh(context.Background(), tok); !errors.Is(err, ErrRefreshInvalid) {
				t.Errorf("%s: err = %v, want ErrRefreshInvalid", name, err)
			}
		}
		// None of that touched the family.
		mustRefresh(t, st, r.RefreshToken)
	}},
	{"refresh: Families lists a subject's families, a lapsed access session's too, not ended ones", func(t *testing.T, f storeFixture) {
		st, ctx := f.store, context.Background()
		p := testPolicy(0)
		p.AccessIdle = 200 * time.Millisecond
		idle := mustFamily(t, st, "rf-families", p)
		live := mustFamily(t, st, "rf-families", testPolicy(0))
		ended := mustFamily(t, st, "rf-families", testPolicy(0))
		other := mustFamily(t, st, "rf-families-other", testPolicy(0))
		if err := st.RevokeFamily(ctx, ended.FamilyRef); err != nil {
			t.Fatal(err)
		}
		time.Sleep(p.AccessIdle + 150*time.Millisecond)
		wantGone(t, st, idle.Ref)
		fams, err := st.Families(ctx, "rf-families")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(fams)
		want := []string{idle.FamilyRef, live.FamilyRef}
		slices.Sort(want)
		if !slices.Equal(fams, want) {
			t.Fatalf("Families = %v, want %v (not %s, ended, nor %s, another subject's)", fams, want, ended.FamilyRef, other.FamilyRef)
		}
		if fams, err := st.Families(ctx, "rf-nobody"); err != nil || len(fams) != 0 {
			t.Fatalf("Families of a subject without any = %v, %v", fams, err)
		}
	}},
}
