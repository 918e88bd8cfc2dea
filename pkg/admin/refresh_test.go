package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

var testRefresh = session.RefreshPolicy{AccessIdle: 15 * time.Minute, AccessAbsolute: time.Hour,
	TTL: 30 * 24 * time.Hour, Idle: 7 * 24 * time.Hour, Grace: 10 * time.Second}

func withRefresh(o *Options) { p := testRefresh; o.Refresh = &p }

// A login with "refresh": true gets the access session with the refresh
// lifetimes, a refresh token, the family's end and its ref; the listing
// shows the family; a family_ref revokes the family.
func TestRefreshCreateListRevoke(t *testing.T) {
	ctx := context.Background()
	store := session.NewMemoryStore(nil)
	log := events.NewMemoryStore(100)
	srv, c := newServer(t, store, withRefresh, func(o *Options) { o.Events, o.EventStore = syncRecorder{log}, log })

	before := time.Now()
	resp, err := c.CreateSession(ctx, CreateRequest{Subject: "rita", Roles: []string{"dev"}, Refresh: true,
		Device: &Device{Name: "phone"}})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !session.ValidID(resp.SessionID) || resp.SessionRef != session.RefOf(resp.SessionID):
		t.Fatalf("access session: %+v", resp)
	case !session.ValidRefreshToken(resp.RefreshToken) || !session.ValidFamilyRef(resp.FamilyRef) || resp.RefreshExpiresAt == nil:
		t.Fatalf("refresh fields: %+v", resp)
	case resp.ExpiresAt.Before(before.Add(time.Hour-time.Second)) || resp.ExpiresAt.After(time.Now().Add(time.Hour)):
		t.Fatalf("expires_at %v, want an hour from now (refresh.access_absolute_timeout)", resp.ExpiresAt)
	case resp.RefreshExpiresAt.Before(before.Add(testRefresh.TTL-time.Second)) || resp.RefreshExpiresAt.After(time.Now().Add(testRefresh.TTL)):
		t.Fatalf("refresh_expires_at %v, want refresh.ttl from now", resp.RefreshExpiresAt)
	case !strings.Contains(resp.SetCookie, "Max-Age=3600"):
		t.Fatalf("set_cookie %q: want the access session's lifetime", resp.SetCookie)
	}
	e, err := store.Touch(ctx, resp.SessionRef)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := e.Session(); s == nil || s.IdleTimeout != 15*time.Minute || s.FamilyRef != resp.FamilyRef {
		t.Fatalf("stored access session = %+v", s)
	}

	// After a refresh the listing still shows one row: the family's
	// current access session.
	next, err := store.Refresh(ctx, resp.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListSessions(ctx, "rita")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].SessionRef != next.Ref || list[0].FamilyRef != resp.FamilyRef {
		t.Fatalf("list = %+v, want the successor %s of family %s", list, next.Ref, resp.FamilyRef)
	}

	if err := c.RevokeSession(ctx, resp.FamilyRef); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Refresh(ctx, next.RefreshToken); !errors.Is(err, session.ErrRefreshInvalid) {
		t.Fatalf("refresh after revoking the family: %v", err)
	}
	if _, err := store.Touch(ctx, next.Ref); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("access session after revoking the family: %v", err)
	}
	var apiErr *APIError
	if err := c.RevokeSession(ctx, resp.FamilyRef); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("second revoke: %v, want 404", err)
	}
	for _, bad := range []string{"fam_0123", "fam_" + strings.Repeat("A", 32), "FAM_" + resp.FamilyRef[4:], resp.FamilyRef + "0"} {
		if code, _ := call(t, srv, http.MethodDelete, "/v1/sessions/"+bad, "", testToken); code != http.StatusBadRequest {
			t.Errorf("DELETE %s = %d, want 400", bad, code)
		}
	}

	page, err := log.Page(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var login, revoke bool
	for _, ev := range page {
		login = login || ev.Type == events.Login && ev.Details["family_ref"] == resp.FamilyRef && ev.SessionRef == resp.SessionRef
		revoke = revoke || ev.Type == events.Revoke && ev.Details["family_ref"] == resp.FamilyRef
	}
	if !login || !revoke {
		t.Fatalf("events = %+v, want a login and a revoke naming the family", page)
	}
}

// Refresh is refused unless configured, and with timeouts it would ignore.
func TestRefreshRequestRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate []func(*Options)
		body   string
	}{
		"not enabled":      {nil, `{"subject":"u","refresh":true}`},
		"idle_timeout":     {[]func(*Options){withRefresh}, `{"subject":"u","refresh":true,"idle_timeout":"1m"}`},
		"absolute_timeout": {[]func(*Options){withRefresh}, `{"subject":"u","refresh":true,"absolute_timeout":"1m"}`},
		"not a boolean":    {[]func(*Options){withRefresh}, `{"subject":"u","refresh":"true"}`},
		"duplicate":        {[]func(*Options){withRefresh}, `{"subject":"u","refresh":false,"refresh":true}`},
		"case variant":     {[]func(*Options){withRefresh}, `{"subject":"u","Refresh":true}`},
	} {
		t.Run(name, func(t *testing.T) {
			store := session.NewMemoryStore(nil)
			srv, _ := newServer(t, store, tc.mutate...)
			code, body := call(t, srv, http.MethodPost, "/v1/sessions", tc.body, testToken)
			if code != http.StatusBadRequest {
				t.Fatalf("status = %d (%v), want 400", code, body)
			}
			if ss, _ := store.List(context.Background(), "u"); len(ss) != 0 {
				t.Fatalf("a refused request stored %d sessions", len(ss))
			}
		})
	}
}

// Without "refresh" nothing changes: no refresh fields, no family.
func TestCreateWithoutRefreshHasNoFamily(t *testing.T) {
	_, c := newServer(t, session.NewMemoryStore(nil), withRefresh)
	resp, err := c.CreateSession(context.Background(), CreateRequest{Subject: "plain"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.RefreshToken != "" || resp.RefreshExpiresAt != nil || resp.FamilyRef != "" {
		t.Fatalf("refresh fields without refresh: %+v", resp)
	}
	list, err := c.ListSessions(context.Background(), "plain")
	if err != nil || len(list) != 1 || list[0].FamilyRef != "" {
		t.Fatalf("list = %+v, %v", list, err)
	}
}
